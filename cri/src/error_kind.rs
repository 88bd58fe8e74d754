//! What kind of failure an error is, as a client can act on it. Domain
//! errors (pods, containers, images, specs, stats) say which kind they are
//! and nothing about gRPC; the edge ([`crate::grpc`]) turns a kind into a
//! status code in one place, and the admin endpoint into a ttrpc code in
//! another, so the two can never disagree about the same error.

/// The kinds of failure the daemon's clients tell apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or asks for something impossible.
    InvalidArgument,
    /// What the request names does not exist.
    NotFound,
    /// A name the request would take is taken.
    AlreadyExists,
    /// The system is not in a state where the request can be done (a pod
    /// not ready, a container not running, a node without CNI).
    FailedPrecondition,
    /// A registry refused the credentials.
    Unauthenticated,
    /// Something the daemon depends on (a registry, a pod's stats) cannot
    /// answer now; retrying may work.
    Unavailable,
    /// The request would take more than a configured limit allows (a
    /// layer unpacking past the image store's limits).
    ResourceExhausted,
    /// The request ran out of time.
    DeadlineExceeded,
    /// The daemon or the node failed.
    Internal,
}

/// An error that knows its kind.
pub trait Kinded: std::fmt::Display {
    /// The kind of this failure.
    fn kind(&self) -> ErrorKind;
}
