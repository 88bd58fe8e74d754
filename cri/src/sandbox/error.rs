//! Why a sandbox operation failed, and what kind of failure that is
//! ([`crate::error_kind`]; the gRPC edge makes it a code).

use std::path::PathBuf;

use crate::error_kind::{ErrorKind, Kinded};
use crate::namespaces::NsError;
use crate::network::CniError;
use crate::shim_client::ShimError;
use crate::store::StoreError;

/// A sandbox operation's failure.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The request is malformed (missing metadata, bad sysctl, …).
    #[error("{0}")]
    InvalidArgument(String),
    /// No sandbox has this ID.
    #[error("pod sandbox {0:?} not found")]
    NotFound(String),
    /// A sandbox with the same name already exists.
    #[error("pod sandbox name {name:?} is already reserved for {id}")]
    AlreadyExists {
        /// The name (name_namespace_uid_attempt).
        name: String,
        /// The sandbox holding it.
        id: String,
    },
    /// The node cannot run the pod as asked (no CNI config, binary missing).
    #[error("{0}")]
    FailedPrecondition(String),
    /// Namespaces could not be made or removed.
    #[error(transparent)]
    Namespaces(#[from] NsError),
    /// A CNI plugin failed.
    #[error("pod network: {0}")]
    Network(#[from] CniError),
    /// The infra's shim failed.
    #[error("infra process: {0}")]
    Shim(#[from] ShimError),
    /// The metadata store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A cgroup operation failed.
    #[error("pod cgroup {path}: {source}")]
    Cgroup {
        /// The cgroup path.
        path: String,
        /// The cgroup library's error.
        source: carapace_cgroups::Error,
    },
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A mount operation failed.
    #[error("{what} {path}: {errno}")]
    Mount {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The kernel's answer.
        errno: nix::errno::Errno,
    },
}

impl SandboxError {
    /// A file operation error.
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SandboxError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

impl Kinded for SandboxError {
    fn kind(&self) -> ErrorKind {
        match self {
            SandboxError::InvalidArgument(_) => ErrorKind::InvalidArgument,
            SandboxError::NotFound(_) => ErrorKind::NotFound,
            SandboxError::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            SandboxError::FailedPrecondition(_) => ErrorKind::FailedPrecondition,
            SandboxError::Shim(ShimError::Timeout { .. }) => ErrorKind::DeadlineExceeded,
            _ => ErrorKind::Internal,
        }
    }
}
