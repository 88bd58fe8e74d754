//! Errors of the shim, mapped once to ttrpc statuses at the Task API edge.

use std::path::PathBuf;

use containerd_shim_protos::ttrpc::{self, Code};

/// Everything that can go wrong inside the shim.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request names a process the shim does not have.
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed (bad stdio URI, bad spec, …).
    #[error("{0}")]
    InvalidArgument(String),
    /// The process is in the wrong state for the request.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The process or exec already exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// What the shim does not do (yet): answered honestly.
    #[error("{0}")]
    Unimplemented(String),
    /// The OCI runtime failed; `message` is its own error text.
    #[error("{command}: {message}")]
    Runtime {
        /// Runtime binary and verb.
        command: String,
        /// The runtime's error message.
        message: String,
    },
    /// The runtime binary could not be started at all.
    #[error("start {binary}: {source}")]
    Spawn {
        /// The binary tried.
        binary: PathBuf,
        /// Why exec failed.
        source: std::io::Error,
    },
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Reading the container's cgroup failed.
    #[error("container cgroup: {0}")]
    Cgroup(#[from] carapace_cgroups::Error),
    /// The exit monitor of `containerd-shim` failed.
    #[error("exit monitor: {0}")]
    Monitor(containerd_shim::Error),
}

/// Shorthand used throughout the shim.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An `Io` error with context.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    fn code(&self) -> Code {
        match self {
            Error::NotFound(_) => Code::NOT_FOUND,
            Error::InvalidArgument(_) => Code::INVALID_ARGUMENT,
            Error::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
            Error::AlreadyExists(_) => Code::ALREADY_EXISTS,
            Error::Unimplemented(_) => Code::UNIMPLEMENTED,
            Error::Runtime { .. }
            | Error::Spawn { .. }
            | Error::Io { .. }
            | Error::Cgroup(_)
            | Error::Monitor(_) => Code::INTERNAL,
        }
    }
}

impl From<Error> for ttrpc::Error {
    fn from(e: Error) -> ttrpc::Error {
        ttrpc::Error::RpcStatus(ttrpc::get_status(e.code(), e.to_string()))
    }
}
