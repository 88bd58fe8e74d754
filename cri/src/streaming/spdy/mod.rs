//! SPDY/3.1 as Kubernetes streaming uses it ("SPDY Protocol - Draft 3.1";
//! the peer in practice is moby/spdystream under kubectl, kubelet and
//! crictl).
//!
//! After the HTTP/1.1 upgrade, the connection carries SPDY frames
//! ([`frame`]) whose header blocks are zlib-compressed with a fixed
//! dictionary and one compression context per direction ([`headers`]).
//! The client opens one stream per channel (stdin, stdout, stderr, error,
//! resize; or data and error per forwarded port) and this end accepts
//! them through a [`Session`], which also answers PINGs, keeps flow-control
//! accounts and ends every stream on GOAWAY or disconnect.
//!
//! Not here: the HTTP upgrade itself and what the streams mean, which
//! belong to the streaming server built on top.

mod dictionary;
mod error;
mod flow;
pub mod frame;
pub mod headers;
mod session;
mod shared;
mod stream;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod session_tests;

pub use error::SpdyError;
pub use flow::DEFAULT_WINDOW;
pub use frame::{Frame, GoAwayStatus, RstStatus, StreamId};
pub use headers::Headers;
pub use session::{Session, SessionConfig};
pub use stream::{SpdyStream, StreamReader, StreamWriter};

/// The protocol token clients offer in `Upgrade:` (and the server echoes
/// in its 101 response) to switch an HTTP/1.1 connection to this protocol.
pub const UPGRADE_PROTOCOL: &str = "SPDY/3.1";
