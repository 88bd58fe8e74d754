//! Why an image operation failed, and the gRPC code for it.

use std::path::PathBuf;

use crate::error_kind::{ErrorKind, Kinded};
use crate::store::StoreError;

/// An image operation's failure.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The reference does not parse.
    #[error("invalid image reference {reference:?}: {message}")]
    InvalidReference {
        /// What was given.
        reference: String,
        /// Why it is invalid.
        message: String,
    },
    /// A digest is not `sha256:<64 hex>`.
    #[error("invalid digest {0:?}")]
    InvalidDigest(String),
    /// No image matches.
    #[error("image {0:?} not found")]
    NotFound(String),
    /// The registry refused or failed.
    #[error("pull {reference}: {message}")]
    Registry {
        /// The reference being pulled (and from where).
        reference: String,
        /// The registry's or client's error.
        message: String,
    },
    /// No manifest for this platform in an index.
    #[error("image {reference} has no manifest for {platform}")]
    NoPlatform {
        /// The reference.
        reference: String,
        /// os/arch wanted.
        platform: String,
    },
    /// The manifest or config is malformed or of a type we do not take.
    #[error("image {reference}: {message}")]
    BadManifest {
        /// The reference.
        reference: String,
        /// What is wrong.
        message: String,
    },
    /// A blob's content does not hash to its digest.
    #[error("content digest mismatch: expected {expected}, got {got}")]
    DigestMismatch {
        /// The digest asked for.
        expected: String,
        /// The digest of what arrived.
        got: String,
    },
    /// A blob's length differs from its descriptor.
    #[error("blob {digest}: expected {expected} bytes, got {got}")]
    SizeMismatch {
        /// The blob.
        digest: String,
        /// The descriptor's size.
        expected: u64,
        /// What arrived.
        got: u64,
    },
    /// The transfer broke.
    #[error("download of {digest} failed: {message}")]
    Transfer {
        /// The blob.
        digest: String,
        /// The transport's error.
        message: String,
    },
    /// A layer could not be unpacked.
    #[error("layer {digest}: {source}")]
    Unpack {
        /// The layer blob.
        digest: String,
        /// The unpacker's error.
        source: super::unpack::UnpackError,
    },
    /// An unpacked layer is not the layer the config lists.
    #[error("layer {digest} unpacks to {got}, the image config says {expected}")]
    DiffIdMismatch {
        /// The layer blob.
        digest: String,
        /// The config's diff_id.
        expected: String,
        /// What the layer hashed to.
        got: String,
    },
    /// An archive given to import is not an image archive we can read.
    #[error("image archive {path}: {message}")]
    Archive {
        /// The archive.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The metadata store failed.
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

impl ImageError {
    /// A file operation error.
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ImageError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

impl ImageError {
    /// Whether this only says the pull was stopped (because something else
    /// failed first, or its caller went away).
    pub fn is_cancelled(&self) -> bool {
        matches!(
            self,
            ImageError::Unpack {
                source: super::unpack::UnpackError::Cancelled,
                ..
            }
        )
    }
}

impl Kinded for ImageError {
    fn kind(&self) -> ErrorKind {
        match self {
            ImageError::InvalidReference { .. }
            | ImageError::InvalidDigest(_)
            | ImageError::Archive { .. } => ErrorKind::InvalidArgument,
            ImageError::NotFound(_) | ImageError::NoPlatform { .. } => ErrorKind::NotFound,
            ImageError::Registry { message, .. }
                if message.contains("401")
                    || message.contains("nauthorized")
                    || message.contains("denied") =>
            {
                ErrorKind::Unauthenticated
            }
            ImageError::Registry { .. } | ImageError::Transfer { .. } => ErrorKind::Unavailable,
            ImageError::Unpack {
                source: super::unpack::UnpackError::OverLimit { .. },
                ..
            } => ErrorKind::ResourceExhausted,
            _ => ErrorKind::Internal,
        }
    }
}

/// `e` with the errors beneath it, as one line: an HTTP client's own
/// message ("error sending request for url …") says nothing of why (an
/// untrusted certificate, a refused connection); its sources do. A source
/// whose words are already in the line is not repeated.
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let words = cause.to_string();
        if !line.contains(&words) {
            line.push_str(": ");
            line.push_str(&words);
        }
        next = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_joined_once_each() {
        #[derive(Debug, thiserror::Error)]
        #[error("inner: bad certificate")]
        struct Inner;
        #[derive(Debug, thiserror::Error)]
        #[error("middle")]
        struct Middle(#[source] Inner);
        #[derive(Debug, thiserror::Error)]
        #[error("error sending request (middle)")]
        struct Outer(#[source] Middle);
        assert_eq!(
            with_causes(&Outer(Middle(Inner))),
            "error sending request (middle): inner: bad certificate"
        );
    }
}
