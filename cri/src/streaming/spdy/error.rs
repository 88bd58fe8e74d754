//! What can go wrong speaking SPDY/3.1: malformed input from the peer,
//! header blocks that do not inflate, a transport that fails, and a stream
//! or session that has ended under its user.

use super::frame::{RstStatus, StreamId};

/// Why a SPDY frame, header block, stream or session operation failed.
///
/// The variants for malformed input say what was malformed, because the
/// session logs them when it ends a connection with `GOAWAY`.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    /// A control frame carries a SPDY version other than 3; the session
    /// cannot interpret anything after it.
    #[error("unsupported SPDY version {0} (only 3 is spoken)")]
    UnsupportedVersion(u16),
    /// A frame declares a payload larger than this end accepts (or than
    /// the 24-bit length field can express, when encoding).
    #[error("SPDY frame payload of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// The declared (or attempted) payload length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// A control frame's length does not fit its type's fixed layout.
    #[error("SPDY {frame} frame has invalid length {len}")]
    BadFrameLength {
        /// The frame type, as the spec names it.
        frame: &'static str,
        /// The declared payload length.
        len: usize,
    },
    /// The peer broke a rule of the protocol that ends the session.
    #[error("SPDY protocol error: {0}")]
    Protocol(String),
    /// A header block could not be deflated (our own compressor failed).
    #[error("compress SPDY header block: {0}")]
    HeaderCompress(#[source] flate2::CompressError),
    /// A header block could not be inflated with the SPDY dictionary; the
    /// shared compression context is lost, so the session must end.
    #[error("inflate SPDY header block: {0}")]
    HeaderInflate(#[source] flate2::DecompressError),
    /// A header block inflated but its contents are not a valid SPDY/3
    /// name/value list.
    #[error("malformed SPDY header block: {0}")]
    MalformedHeaders(&'static str),
    /// A header block inflates to more than this end accepts.
    #[error("SPDY header block inflates past the limit of {max} bytes")]
    HeadersTooLarge {
        /// The limit in force.
        max: usize,
    },
    /// A header to be sent is not representable (empty name, or a name
    /// or value too long for the 32-bit length fields).
    #[error("SPDY header {name:?} cannot be encoded: {reason}")]
    BadHeader {
        /// The header name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Reading from or writing to the transport failed.
    #[error("SPDY transport: {0}")]
    Io(#[from] std::io::Error),
    /// The transport closed in the middle of a frame.
    #[error("SPDY transport closed in the middle of a frame")]
    TruncatedFrame,
    /// The peer (or this end) reset the stream with `RST_STREAM`.
    #[error("SPDY stream {stream_id} was reset: {status}")]
    StreamReset {
        /// The stream.
        stream_id: StreamId,
        /// The status code from the `RST_STREAM` frame.
        status: RstStatus,
    },
    /// Data was sent after this end half-closed the stream.
    #[error("SPDY stream {0} is already closed for sending")]
    StreamClosed(StreamId),
    /// The session is over (GOAWAY, transport closed, or a fatal error),
    /// so the stream can carry nothing more.
    #[error("SPDY session is closed")]
    SessionClosed,
}
