//! Why a sandbox operation failed, and which gRPC code that is for kubelet.

use std::path::PathBuf;

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
    /// The gRPC code kubelet should see.
    pub fn code(&self) -> tonic::Code {
        match self {
            SandboxError::InvalidArgument(_) => tonic::Code::InvalidArgument,
            SandboxError::NotFound(_) => tonic::Code::NotFound,
            SandboxError::AlreadyExists { .. } => tonic::Code::AlreadyExists,
            SandboxError::FailedPrecondition(_) => tonic::Code::FailedPrecondition,
            _ => tonic::Code::Internal,
        }
    }

    /// A file operation error.
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SandboxError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

impl From<SandboxError> for tonic::Status {
    fn from(e: SandboxError) -> Self {
        tonic::Status::new(e.code(), e.to_string())
    }
}
