//! The runtime's error type. Every variant names what failed and on which
//! path or ID, so the one line runc-style callers print is enough to act on.

use std::path::PathBuf;

/// Everything that can go wrong in the runtime library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The container ID is not acceptable as a directory name.
    #[error("invalid container id {0:?}: must match [A-Za-z0-9_+.-]+ and not be . or ..")]
    InvalidId(String),
    /// No state directory exists for this ID.
    #[error("container {0} does not exist")]
    NotFound(String),
    /// `create` was given an ID that is already in use.
    #[error("container with id {0} already exists")]
    AlreadyExists(String),
    /// The operation is not allowed in the container's current status.
    #[error("container {id} is {status}: {what}")]
    WrongState {
        /// The container.
        id: String,
        /// Its status right now.
        status: String,
        /// What was refused, phrased for the user.
        what: String,
    },
    /// config.json is missing, unreadable or not valid JSON of the OCI spec.
    #[error("invalid config {path}: {reason}")]
    InvalidConfig {
        /// The config file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The spec asks for something this runtime or this kernel cannot do.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A value supplied on the command line is not valid.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A system call failed; `what` says which and on what.
    #[error("{what}: {source}")]
    Sys {
        /// The action, with the path or ID in question.
        what: String,
        /// The errno.
        source: nix::Error,
    },
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// The action, with the path in question.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A cgroup operation failed.
    #[error(transparent)]
    Cgroup(#[from] carapace_cgroups::Error),
    /// The seccomp profile could not be compiled or loaded.
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    /// An OCI hook failed or timed out.
    #[error("{0}")]
    Hook(String),
    /// CRIU failed to checkpoint or restore; the message quotes its log.
    #[error("{0}")]
    Criu(String),
    /// The container's init process reported an error while setting up.
    #[error("{0}")]
    Init(String),
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach a description to errno-style results.
pub trait Context<T> {
    /// Wrap the error with `what` (e.g. "mount proc at /run/x/rootfs/proc").
    fn ctx<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, nix::Error> {
    fn ctx<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|source| Error::Sys {
            what: what().into(),
            source,
        })
    }
}

impl<T> Context<T> for std::result::Result<T, std::io::Error> {
    fn ctx<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|source| Error::Io {
            what: what().into(),
            source,
        })
    }
}
