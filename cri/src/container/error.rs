//! Why a container operation failed, and what kind of failure that is
//! ([`crate::error_kind`]; the gRPC edge makes it a code).

use std::path::PathBuf;

use crate::error_kind::{ErrorKind, Kinded};
use crate::image::ImageError;
use crate::shim_client::ShimError;
use crate::store::StoreError;

/// A container operation's failure.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The request is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// No such container (or pod, or image).
    #[error("{0} not found")]
    NotFound(String),
    /// The name is taken.
    #[error("container name {name:?} is already reserved for {id}")]
    AlreadyExists {
        /// The name.
        name: String,
        /// Who holds it.
        id: String,
    },
    /// The container or its pod is in the wrong state for this.
    #[error("{0}")]
    FailedPrecondition(String),
    /// An exec ran past its timeout (kubelet reads this code as a probe
    /// timeout).
    #[error("{0}")]
    DeadlineExceeded(String),
    /// The OCI spec could not be built.
    #[error("container spec: {0}")]
    Spec(#[from] super::spec::SpecError),
    /// The image layer store failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The root filesystem could not be mounted.
    #[error("rootfs: {0}")]
    Rootfs(#[from] crate::image::rootfs::RootfsError),
    /// The shim failed.
    #[error(transparent)]
    Shim(#[from] ShimError),
    /// An idmapped mount (of a pod in its own user namespace) failed.
    #[error(transparent)]
    Idmap(#[from] crate::idmap::IdmapError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
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
}

impl ContainerError {
    /// A file operation error.
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ContainerError::Io {
            what,
            path: path.into(),
            source,
        }
    }

    /// A shim's answer about container `id`, with kubelet's codes for the
    /// usual cases: a gone shim or a stopped process is a precondition.
    pub fn from_shim(id: &str, e: ShimError) -> Self {
        use containerd_shim_protos::ttrpc::Code;
        if e.is_gone() {
            return ContainerError::FailedPrecondition(format!(
                "container {id} is not running (its shim is gone)"
            ));
        }
        match &e {
            ShimError::Call { code, message, .. } => match *code {
                Code::FAILED_PRECONDITION | Code::NOT_FOUND => {
                    ContainerError::FailedPrecondition(message.clone())
                }
                Code::INVALID_ARGUMENT => ContainerError::InvalidArgument(message.clone()),
                _ => e.into(),
            },
            _ => e.into(),
        }
    }
}

impl Kinded for ContainerError {
    fn kind(&self) -> ErrorKind {
        match self {
            ContainerError::InvalidArgument(_) => ErrorKind::InvalidArgument,
            ContainerError::NotFound(_) => ErrorKind::NotFound,
            ContainerError::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            ContainerError::FailedPrecondition(_) => ErrorKind::FailedPrecondition,
            ContainerError::DeadlineExceeded(_) => ErrorKind::DeadlineExceeded,
            ContainerError::Spec(e) => e.kind(),
            ContainerError::Image(e) => e.kind(),
            ContainerError::Shim(ShimError::Timeout { .. }) => ErrorKind::DeadlineExceeded,
            _ => ErrorKind::Internal,
        }
    }
}
