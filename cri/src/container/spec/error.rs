//! Why a container's OCI spec could not be built, and the gRPC code kubelet
//! should see for it: a malformed request is `InvalidArgument`; a request
//! this node or image cannot satisfy (a user the image does not have, a
//! feature the host lacks) is `FailedPrecondition`.

use crate::error_kind::{ErrorKind, Kinded};

/// A spec-building failure.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Neither the request nor the image names a program to run.
    #[error("no command specified")]
    NoCommand,
    /// The working directory is not an absolute path.
    #[error("working directory {0:?} is not an absolute path")]
    RelativeWorkingDir(String),
    /// A user or group value is malformed (negative, not a number where one
    /// is needed, too many `:`).
    #[error("invalid user {user:?}: {reason}")]
    InvalidUser {
        /// The user string or value as given.
        user: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `run_as_group` without `run_as_user` or `run_as_username` (the CRI
    /// says the runtime MUST error).
    #[error("run_as_group {0} is specified without run_as_user or run_as_username")]
    GroupWithoutUser(i64),
    /// A user name the image's /etc/passwd does not have (or no passwd).
    #[error("user {0:?} not found in the image's /etc/passwd")]
    UnknownUser(String),
    /// A group name the image's /etc/group does not have (or no group file).
    #[error("group {0:?} not found in the image's /etc/group")]
    UnknownGroup(String),
    /// A CRI mount is malformed.
    #[error("mount {path:?}: {reason}")]
    InvalidMount {
        /// The mount's container path.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A CRI mount of an OCI image (KEP-4639 image volumes) that the
    /// caller did not mount first: a bug of ours, never the request's.
    #[error("mount {0:?}: the image volume was not mounted before the spec was built")]
    ImageMountNotMounted(String),
    /// A device is malformed.
    #[error("device {path:?}: {reason}")]
    InvalidDevice {
        /// The device's host path.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A resource value is out of range.
    #[error("resources: {0}")]
    InvalidResources(String),
    /// A capability name no kernel knows.
    #[error("unknown capability {0:?}")]
    UnknownCapability(String),
    /// A seccomp request or localhost profile is malformed.
    #[error("seccomp: {0}")]
    InvalidSeccomp(String),
    /// A localhost seccomp profile the caller did not load.
    #[error("seccomp profile {0:?} was not loaded")]
    SeccompProfileMissing(String),
    /// An AppArmor profile was asked for on a host without AppArmor.
    #[error("apparmor is not supported on this node (profile {0:?})")]
    ApparmorUnsupported(String),
    /// An AppArmor request is malformed.
    #[error("apparmor: {0}")]
    InvalidApparmor(String),
    /// The AppArmor profile the container needs is not loaded.
    #[error("apparmor: {0}")]
    ApparmorNotLoaded(String),
    /// The namespace options are malformed or unsupported.
    #[error("namespaces: {0}")]
    InvalidNamespaces(String),
    /// The PID namespace target container has no running process.
    #[error("target container {0:?} of the pid namespace is not running")]
    TargetNotRunning(String),
    /// The pod's infra process (whose PID namespace the container joins) is
    /// not running.
    #[error("pod sandbox {0:?} has no running infra process")]
    SandboxNotRunning(String),
    /// A privileged container in a pod that did not ask for privileges.
    #[error("no privileged container allowed in sandbox")]
    PrivilegedNotAllowed,
    /// The image's config object is not what the image spec says.
    #[error("image config: {0}")]
    BadImageConfig(#[source] serde_json::Error),
    /// The built-in seccomp profile did not parse (a bug).
    #[error("default seccomp profile: {0}")]
    DefaultSeccomp(#[source] serde_json::Error),
}

impl Kinded for SpecError {
    fn kind(&self) -> ErrorKind {
        use SpecError::*;
        match self {
            NoCommand
            | RelativeWorkingDir(_)
            | InvalidUser { .. }
            | GroupWithoutUser(_)
            | InvalidMount { .. }
            | InvalidDevice { .. }
            | InvalidResources(_)
            | UnknownCapability(_)
            | InvalidSeccomp(_)
            | InvalidApparmor(_)
            | InvalidNamespaces(_)
            | PrivilegedNotAllowed => ErrorKind::InvalidArgument,
            UnknownUser(_)
            | UnknownGroup(_)
            | SeccompProfileMissing(_)
            | ApparmorUnsupported(_)
            | ApparmorNotLoaded(_)
            | TargetNotRunning(_)
            | SandboxNotRunning(_)
            | BadImageConfig(_) => ErrorKind::FailedPrecondition,
            DefaultSeccomp(_) | ImageMountNotMounted(_) => ErrorKind::Internal,
        }
    }
}
