//! Images: references, the registry client, the content store of blobs by
//! digest, layers unpacked once per chain ID as overlay lower dirs, image
//! records in the metadata store, and container root filesystems mounted
//! from them. No gRPC types here: the ImageService handlers translate.

pub mod content;
pub mod error;
pub mod images;
pub mod import;
pub mod progress;
pub mod pull;
pub mod records;
pub mod reference;
pub mod rootfs;
pub mod tls_roots;
pub mod unpack;
pub mod unrecorded;

pub use error::ImageError;
pub use images::{Images, Usage};
pub use records::ImageRecord;
