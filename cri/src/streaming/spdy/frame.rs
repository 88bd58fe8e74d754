//! SPDY/3.1 framing ("SPDY Protocol - Draft 3.1", section 2.2 and 2.6):
//! every frame has an 8-byte header — a control bit, then either a version
//! and type (control frames) or a stream ID (data frames), then 8 bits of
//! flags and a 24-bit payload length.
//!
//! This layer is stateless: header blocks stay compressed here (their zlib
//! context belongs to the session, see `headers`), so frames can be split,
//! parsed and re-encoded without knowing what came before.

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::SpdyError;

/// The only protocol version spoken, carried in every control frame.
pub const VERSION: u16 = 3;
/// Length of the common frame header.
pub const HEADER_LEN: usize = 8;
/// The largest payload the 24-bit length field can express.
pub const MAX_PAYLOAD_LEN: usize = 0x00ff_ffff;

/// A stream identifier: 31 bits; odd for streams the client opens.
pub type StreamId = u32;

const CONTROL_BIT: u8 = 0x80;
const ID_MASK: u32 = 0x7fff_ffff;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

/// `FLAG_FIN` on DATA, SYN_STREAM, SYN_REPLY and HEADERS: the sender
/// half-closes the stream with this frame.
pub const FLAG_FIN: u8 = 0x01;
/// `FLAG_UNIDIRECTIONAL` on SYN_STREAM: the recipient may not send on it.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// `FLAG_SETTINGS_CLEAR_SETTINGS` on SETTINGS.
pub const FLAG_CLEAR_SETTINGS: u8 = 0x01;

/// The status code of a `RST_STREAM` frame (section 2.6.3). A newtype
/// rather than an enum so codes this end does not know still round-trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RstStatus(pub u32);

impl RstStatus {
    /// The peer violated the protocol on this stream.
    pub const PROTOCOL_ERROR: Self = Self(1);
    /// A frame arrived for a stream that is not open.
    pub const INVALID_STREAM: Self = Self(2);
    /// The stream was refused before any processing.
    pub const REFUSED_STREAM: Self = Self(3);
    /// The recipient does not speak the stream's SPDY version.
    pub const UNSUPPORTED_VERSION: Self = Self(4);
    /// The stream is no longer needed.
    pub const CANCEL: Self = Self(5);
    /// A generic error not attributable to the protocol.
    pub const INTERNAL_ERROR: Self = Self(6);
    /// The peer sent more than the flow-control window allowed.
    pub const FLOW_CONTROL_ERROR: Self = Self(7);
    /// A SYN_STREAM reused an open stream's ID.
    pub const STREAM_IN_USE: Self = Self(8);
    /// Data arrived after the sender half-closed the stream.
    pub const STREAM_ALREADY_CLOSED: Self = Self(9);
    /// A frame was too large for the recipient.
    pub const FRAME_TOO_LARGE: Self = Self(11);
}

impl fmt::Display for RstStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match *self {
            Self::PROTOCOL_ERROR => "PROTOCOL_ERROR",
            Self::INVALID_STREAM => "INVALID_STREAM",
            Self::REFUSED_STREAM => "REFUSED_STREAM",
            Self::UNSUPPORTED_VERSION => "UNSUPPORTED_VERSION",
            Self::CANCEL => "CANCEL",
            Self::INTERNAL_ERROR => "INTERNAL_ERROR",
            Self::FLOW_CONTROL_ERROR => "FLOW_CONTROL_ERROR",
            Self::STREAM_IN_USE => "STREAM_IN_USE",
            Self::STREAM_ALREADY_CLOSED => "STREAM_ALREADY_CLOSED",
            Self::FRAME_TOO_LARGE => "FRAME_TOO_LARGE",
            Self(code) => return write!(f, "status {code}"),
        };
        f.write_str(name)
    }
}

/// The status code of a `GOAWAY` frame (section 2.6.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GoAwayStatus(pub u32);

impl GoAwayStatus {
    /// A normal end of the session.
    pub const OK: Self = Self(0);
    /// The peer violated the protocol.
    pub const PROTOCOL_ERROR: Self = Self(1);
    /// This end failed for a reason of its own.
    pub const INTERNAL_ERROR: Self = Self(2);
}

/// SETTINGS ID of the initial per-stream flow-control window (section
/// 2.6.4); the only setting the session acts on.
pub const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;

/// One ID/value pair of a SETTINGS frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// `FLAG_SETTINGS_PERSIST_VALUE` (1) / `FLAG_SETTINGS_PERSISTED` (2).
    pub flags: u8,
    /// The 24-bit setting ID, e.g. [`SETTINGS_INITIAL_WINDOW_SIZE`].
    pub id: u32,
    /// The value.
    pub value: u32,
}

/// One SPDY/3.1 frame, with header blocks still compressed.
///
/// Unknown flag bits are dropped on parsing: nothing in SPDY/3.1 defines
/// any beyond those modelled here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Stream payload (section 2.2.2).
    Data {
        /// The stream the bytes belong to.
        stream_id: StreamId,
        /// The sender half-closes the stream after these bytes.
        fin: bool,
        /// The payload.
        data: Bytes,
    },
    /// Opens a stream (section 2.6.1).
    SynStream {
        /// The new stream's ID.
        stream_id: StreamId,
        /// The stream this one is associated with (server push), or 0.
        associated_to: StreamId,
        /// Priority 0 (highest) to 7.
        priority: u8,
        /// Credential slot (unused since SPDY/3.1; kept for round-trips).
        slot: u8,
        /// The opener sends nothing more on the stream.
        fin: bool,
        /// The recipient may not send on the stream.
        unidirectional: bool,
        /// The zlib-compressed header block.
        header_block: Bytes,
    },
    /// Accepts a stream (section 2.6.2).
    SynReply {
        /// The accepted stream.
        stream_id: StreamId,
        /// The replier sends nothing more on the stream.
        fin: bool,
        /// The zlib-compressed header block.
        header_block: Bytes,
    },
    /// Aborts a stream (section 2.6.3).
    RstStream {
        /// The aborted stream.
        stream_id: StreamId,
        /// Why.
        status: RstStatus,
    },
    /// Connection parameters (section 2.6.4).
    Settings {
        /// `FLAG_SETTINGS_CLEAR_SETTINGS`.
        clear: bool,
        /// The ID/value pairs.
        entries: Vec<Setting>,
    },
    /// Liveness check the recipient must echo (section 2.6.5).
    Ping {
        /// Odd when the client sent it first, even for the server.
        id: u32,
    },
    /// The sender will open no more streams (section 2.6.6).
    GoAway {
        /// The last stream the sender processed.
        last_good_stream_id: StreamId,
        /// Why the session ends.
        status: GoAwayStatus,
    },
    /// Extra headers for a stream (section 2.6.7).
    Headers {
        /// The stream.
        stream_id: StreamId,
        /// The sender half-closes the stream with this frame.
        fin: bool,
        /// The zlib-compressed header block.
        header_block: Bytes,
    },
    /// Grants the peer more flow-control window (section 2.6.8); stream 0
    /// means the session window (SPDY/3.1).
    WindowUpdate {
        /// The stream, or 0 for the whole session.
        stream_id: StreamId,
        /// Bytes added to the window (31 bits).
        delta: u32,
    },
    /// A control frame of a type SPDY/3.1 does not define (or no longer
    /// uses, such as CREDENTIAL); the spec says to ignore it.
    Unknown {
        /// The type field.
        frame_type: u16,
        /// The flags field.
        flags: u8,
        /// The raw payload.
        payload: Bytes,
    },
}

/// Takes one complete frame off the front of `buf`.
///
/// Returns `Ok(None)` when `buf` does not yet hold a whole frame (nothing is
/// consumed; read more and call again), and an error for a frame this end
/// cannot accept: a control frame of another version, a payload longer
/// than `max_payload` (detected from the header alone, before buffering
/// it), or a length that does not fit the frame type.
pub fn decode(buf: &mut BytesMut, max_payload: usize) -> Result<Option<Frame>, SpdyError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let is_control = buf[0] & CONTROL_BIT != 0;
    if is_control {
        let version = u16::from_be_bytes([buf[0] & !CONTROL_BIT, buf[1]]);
        if version != VERSION {
            return Err(SpdyError::UnsupportedVersion(version));
        }
    }
    let len = usize::from(buf[5]) << 16 | usize::from(buf[6]) << 8 | usize::from(buf[7]);
    if len > max_payload {
        return Err(SpdyError::FrameTooLarge {
            len,
            max: max_payload,
        });
    }
    if buf.len() < HEADER_LEN + len {
        buf.reserve(HEADER_LEN + len - buf.len());
        return Ok(None);
    }
    let mut header = buf.split_to(HEADER_LEN);
    let payload = buf.split_to(len).freeze();
    let first = header.get_u32();
    let flags = header.get_u8();
    if !is_control {
        return Ok(Some(Frame::Data {
            stream_id: first & ID_MASK,
            fin: flags & FLAG_FIN != 0,
            data: payload,
        }));
    }
    // The low 16 bits of the first word are the type.
    let frame_type = (first & 0xffff) as u16;
    decode_control(frame_type, flags, payload).map(Some)
}

fn decode_control(frame_type: u16, flags: u8, mut p: Bytes) -> Result<Frame, SpdyError> {
    let len = p.len();
    let bad = |frame| SpdyError::BadFrameLength { frame, len };
    let fin = flags & FLAG_FIN != 0;
    let frame = match frame_type {
        TYPE_SYN_STREAM => {
            if len < 10 {
                return Err(bad("SYN_STREAM"));
            }
            let stream_id = p.get_u32() & ID_MASK;
            let associated_to = p.get_u32() & ID_MASK;
            let priority = p.get_u8() >> 5;
            let slot = p.get_u8();
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                slot,
                fin,
                unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                header_block: p,
            }
        }
        TYPE_SYN_REPLY | TYPE_HEADERS => {
            if len < 4 {
                let name = if frame_type == TYPE_HEADERS {
                    "HEADERS"
                } else {
                    "SYN_REPLY"
                };
                return Err(bad(name));
            }
            let stream_id = p.get_u32() & ID_MASK;
            if frame_type == TYPE_HEADERS {
                Frame::Headers {
                    stream_id,
                    fin,
                    header_block: p,
                }
            } else {
                Frame::SynReply {
                    stream_id,
                    fin,
                    header_block: p,
                }
            }
        }
        TYPE_RST_STREAM => {
            if len != 8 {
                return Err(bad("RST_STREAM"));
            }
            Frame::RstStream {
                stream_id: p.get_u32() & ID_MASK,
                status: RstStatus(p.get_u32()),
            }
        }
        TYPE_SETTINGS => {
            if len < 4 {
                return Err(bad("SETTINGS"));
            }
            let count = p.get_u32() as usize;
            if count.checked_mul(8) != Some(p.len()) {
                return Err(bad("SETTINGS"));
            }
            let entries = (0..count)
                .map(|_| {
                    let word = p.get_u32();
                    Setting {
                        flags: (word >> 24) as u8,
                        id: word & 0x00ff_ffff,
                        value: p.get_u32(),
                    }
                })
                .collect();
            Frame::Settings {
                clear: flags & FLAG_CLEAR_SETTINGS != 0,
                entries,
            }
        }
        TYPE_PING => {
            if len != 4 {
                return Err(bad("PING"));
            }
            Frame::Ping { id: p.get_u32() }
        }
        TYPE_GOAWAY => {
            if len != 8 {
                return Err(bad("GOAWAY"));
            }
            Frame::GoAway {
                last_good_stream_id: p.get_u32() & ID_MASK,
                status: GoAwayStatus(p.get_u32()),
            }
        }
        TYPE_WINDOW_UPDATE => {
            if len != 8 {
                return Err(bad("WINDOW_UPDATE"));
            }
            Frame::WindowUpdate {
                stream_id: p.get_u32() & ID_MASK,
                delta: p.get_u32() & ID_MASK,
            }
        }
        _ => Frame::Unknown {
            frame_type,
            flags,
            payload: p,
        },
    };
    Ok(frame)
}

/// Appends `frame`'s wire form to `out`.
///
/// Fails only when the payload would not fit the 24-bit length field;
/// `out` is left unchanged then.
pub fn encode(frame: &Frame, out: &mut BytesMut) -> Result<(), SpdyError> {
    let flag = |set: bool, bit: u8| if set { bit } else { 0 };
    match frame {
        Frame::Data {
            stream_id,
            fin,
            data,
        } => {
            let len = payload_len(data.len())?;
            out.reserve(HEADER_LEN + data.len());
            out.put_u32(stream_id & ID_MASK);
            put_flags_len(out, flag(*fin, FLAG_FIN), len);
            out.put_slice(data);
        }
        Frame::SynStream {
            stream_id,
            associated_to,
            priority,
            slot,
            fin,
            unidirectional,
            header_block,
        } => {
            let len = payload_len(10 + header_block.len())?;
            let flags = flag(*fin, FLAG_FIN) | flag(*unidirectional, FLAG_UNIDIRECTIONAL);
            put_control(out, TYPE_SYN_STREAM, flags, len);
            out.put_u32(stream_id & ID_MASK);
            out.put_u32(associated_to & ID_MASK);
            out.put_u8((priority & 0x07) << 5);
            out.put_u8(*slot);
            out.put_slice(header_block);
        }
        Frame::SynReply {
            stream_id,
            fin,
            header_block,
        }
        | Frame::Headers {
            stream_id,
            fin,
            header_block,
        } => {
            let len = payload_len(4 + header_block.len())?;
            let frame_type = if matches!(frame, Frame::Headers { .. }) {
                TYPE_HEADERS
            } else {
                TYPE_SYN_REPLY
            };
            put_control(out, frame_type, flag(*fin, FLAG_FIN), len);
            out.put_u32(stream_id & ID_MASK);
            out.put_slice(header_block);
        }
        Frame::RstStream { stream_id, status } => {
            put_control(out, TYPE_RST_STREAM, 0, 8);
            out.put_u32(stream_id & ID_MASK);
            out.put_u32(status.0);
        }
        Frame::Settings { clear, entries } => {
            let len = entries
                .len()
                .checked_mul(8)
                .and_then(|n| n.checked_add(4))
                .unwrap_or(usize::MAX);
            let len = payload_len(len)?;
            put_control(out, TYPE_SETTINGS, flag(*clear, FLAG_CLEAR_SETTINGS), len);
            out.put_u32((len - 4) / 8);
            for e in entries {
                out.put_u32(u32::from(e.flags) << 24 | (e.id & 0x00ff_ffff));
                out.put_u32(e.value);
            }
        }
        Frame::Ping { id } => {
            put_control(out, TYPE_PING, 0, 4);
            out.put_u32(*id);
        }
        Frame::GoAway {
            last_good_stream_id,
            status,
        } => {
            put_control(out, TYPE_GOAWAY, 0, 8);
            out.put_u32(last_good_stream_id & ID_MASK);
            out.put_u32(status.0);
        }
        Frame::WindowUpdate { stream_id, delta } => {
            put_control(out, TYPE_WINDOW_UPDATE, 0, 8);
            out.put_u32(stream_id & ID_MASK);
            out.put_u32(delta & ID_MASK);
        }
        Frame::Unknown {
            frame_type,
            flags,
            payload,
        } => {
            let len = payload_len(payload.len())?;
            put_control(out, *frame_type, *flags, len);
            out.put_slice(payload);
        }
    }
    Ok(())
}

fn too_large(len: usize) -> SpdyError {
    SpdyError::FrameTooLarge {
        len,
        max: MAX_PAYLOAD_LEN,
    }
}

/// Checks a payload length against the 24-bit field.
fn payload_len(len: usize) -> Result<u32, SpdyError> {
    if len > MAX_PAYLOAD_LEN {
        return Err(too_large(len));
    }
    u32::try_from(len).map_err(|_| too_large(len))
}

fn put_control(out: &mut BytesMut, frame_type: u16, flags: u8, len: u32) {
    out.reserve(HEADER_LEN + len as usize);
    out.put_u16(VERSION | u16::from(CONTROL_BIT) << 8);
    out.put_u16(frame_type);
    put_flags_len(out, flags, len);
}

fn put_flags_len(out: &mut BytesMut, flags: u8, len: u32) {
    out.put_u32(u32::from(flags) << 24 | (len & 0x00ff_ffff));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_frame_type() -> Vec<Frame> {
        vec![
            Frame::Data {
                stream_id: 3,
                fin: false,
                data: Bytes::from_static(b"hello"),
            },
            Frame::Data {
                stream_id: 5,
                fin: true,
                data: Bytes::new(),
            },
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 7,
                slot: 0,
                fin: false,
                unidirectional: false,
                header_block: Bytes::from_static(b"\x78\xf9compressed"),
            },
            Frame::SynStream {
                stream_id: 0x7fff_ffff,
                associated_to: 9,
                priority: 2,
                slot: 4,
                fin: true,
                unidirectional: true,
                header_block: Bytes::new(),
            },
            Frame::SynReply {
                stream_id: 7,
                fin: true,
                header_block: Bytes::from_static(b"block"),
            },
            Frame::RstStream {
                stream_id: 9,
                status: RstStatus::CANCEL,
            },
            Frame::Settings {
                clear: true,
                entries: vec![
                    Setting {
                        flags: 1,
                        id: SETTINGS_INITIAL_WINDOW_SIZE,
                        value: 1 << 20,
                    },
                    Setting {
                        flags: 0,
                        id: 4,
                        value: 100,
                    },
                ],
            },
            Frame::Settings {
                clear: false,
                entries: vec![],
            },
            Frame::Ping { id: 1 },
            Frame::GoAway {
                last_good_stream_id: 11,
                status: GoAwayStatus::PROTOCOL_ERROR,
            },
            Frame::Headers {
                stream_id: 13,
                fin: false,
                header_block: Bytes::from_static(b"more"),
            },
            Frame::WindowUpdate {
                stream_id: 0,
                delta: 0x7fff_ffff,
            },
            Frame::Unknown {
                frame_type: 10,
                flags: 0x42,
                payload: Bytes::from_static(b"credential"),
            },
        ]
    }

    fn encoded(frame: &Frame) -> BytesMut {
        let mut out = BytesMut::new();
        encode(frame, &mut out).expect("encode");
        out
    }

    #[test]
    fn every_frame_type_round_trips() {
        for frame in every_frame_type() {
            let mut wire = encoded(&frame);
            let parsed = decode(&mut wire, MAX_PAYLOAD_LEN).expect("decode");
            assert_eq!(parsed.as_ref(), Some(&frame));
            assert!(wire.is_empty(), "{frame:?} left bytes behind");
        }
    }

    #[test]
    fn parsing_resumes_at_every_split_point() {
        let frames = every_frame_type();
        let mut all = BytesMut::new();
        for f in &frames {
            encode(f, &mut all).expect("encode");
        }
        for split in 0..=all.len() {
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for part in [&all[..split], &all[split..]] {
                buf.extend_from_slice(part);
                while let Some(f) = decode(&mut buf, MAX_PAYLOAD_LEN).expect("decode") {
                    got.push(f);
                }
            }
            assert_eq!(got, frames, "split at {split}");
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn byte_by_byte_feeding_yields_each_frame_once_complete() {
        let frame = Frame::GoAway {
            last_good_stream_id: 5,
            status: GoAwayStatus::OK,
        };
        let wire = encoded(&frame);
        let mut buf = BytesMut::new();
        for (i, b) in wire.iter().enumerate() {
            buf.put_u8(*b);
            let got = decode(&mut buf, MAX_PAYLOAD_LEN).expect("decode");
            if i + 1 < wire.len() {
                assert_eq!(got, None, "frame reported after {} bytes", i + 1);
                assert_eq!(buf.len(), i + 1, "bytes consumed early");
            } else {
                assert_eq!(got, Some(frame.clone()));
            }
        }
    }

    #[test]
    fn known_bytes_parse_as_spec_layout() {
        // PING id 1 and DATA on stream 3 with FIN, written out by hand
        // from the layouts in sections 2.2.1, 2.2.2 and 2.6.5.
        let mut buf = BytesMut::from(
            &[
                0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x01, //
                0x00, 0x00, 0x00, 0x03, 0x01, 0x00, 0x00, 0x02, b'h', b'i',
            ][..],
        );
        assert_eq!(
            decode(&mut buf, MAX_PAYLOAD_LEN).expect("ping"),
            Some(Frame::Ping { id: 1 })
        );
        assert_eq!(
            decode(&mut buf, MAX_PAYLOAD_LEN).expect("data"),
            Some(Frame::Data {
                stream_id: 3,
                fin: true,
                data: Bytes::from_static(b"hi"),
            })
        );
    }

    #[test]
    fn control_frame_of_another_version_is_rejected() {
        let mut wire = encoded(&Frame::Ping { id: 1 });
        wire[1] = 2;
        assert!(matches!(
            decode(&mut wire, MAX_PAYLOAD_LEN),
            Err(SpdyError::UnsupportedVersion(2))
        ));
        // Detected from the header alone, before the payload arrives.
        let mut header_only = BytesMut::from(&[0x80, 0x04, 0x00, 0x01, 0, 0, 0, 10][..]);
        assert!(matches!(
            decode(&mut header_only, MAX_PAYLOAD_LEN),
            Err(SpdyError::UnsupportedVersion(4))
        ));
    }

    #[test]
    fn payload_over_the_limit_is_rejected_from_the_header() {
        let mut header_only = BytesMut::from(&[0x00, 0, 0, 1, 0, 0x01, 0x00, 0x01][..]);
        assert!(matches!(
            decode(&mut header_only, 65536),
            Err(SpdyError::FrameTooLarge {
                len: 65537,
                max: 65536
            })
        ));
        let mut wire = encoded(&Frame::Data {
            stream_id: 1,
            fin: false,
            data: Bytes::from(vec![0; 65536]),
        });
        assert!(decode(&mut wire, 65536).expect("at the limit").is_some());
    }

    #[test]
    fn encoding_a_payload_past_24_bits_fails() {
        let frame = Frame::Data {
            stream_id: 1,
            fin: false,
            data: Bytes::from(vec![0; MAX_PAYLOAD_LEN + 1]),
        };
        let mut out = BytesMut::new();
        assert!(matches!(
            encode(&frame, &mut out),
            Err(SpdyError::FrameTooLarge { .. })
        ));
        assert!(out.is_empty());
    }

    /// A control frame of `frame_type` whose payload is `len` zero bytes.
    fn control_with_len(frame_type: u16, len: u8) -> BytesMut {
        let mut b = BytesMut::new();
        put_control(&mut b, frame_type, 0, u32::from(len));
        b.put_bytes(0, usize::from(len));
        b
    }

    #[test]
    fn lengths_that_do_not_fit_the_frame_type_are_rejected() {
        let cases = [
            (TYPE_SYN_STREAM, 9, "SYN_STREAM"),
            (TYPE_SYN_REPLY, 3, "SYN_REPLY"),
            (TYPE_HEADERS, 0, "HEADERS"),
            (TYPE_RST_STREAM, 7, "RST_STREAM"),
            (TYPE_RST_STREAM, 12, "RST_STREAM"),
            (TYPE_SETTINGS, 3, "SETTINGS"),
            (TYPE_PING, 3, "PING"),
            (TYPE_PING, 8, "PING"),
            (TYPE_GOAWAY, 4, "GOAWAY"),
            (TYPE_GOAWAY, 12, "GOAWAY"),
            (TYPE_WINDOW_UPDATE, 4, "WINDOW_UPDATE"),
            (TYPE_WINDOW_UPDATE, 9, "WINDOW_UPDATE"),
        ];
        for (frame_type, len, name) in cases {
            let mut wire = control_with_len(frame_type, len);
            match decode(&mut wire, MAX_PAYLOAD_LEN) {
                Err(SpdyError::BadFrameLength { frame, len: l }) => {
                    assert_eq!((frame, l), (name, usize::from(len)));
                }
                other => panic!("{name} with length {len}: {other:?}"),
            }
        }
    }

    #[test]
    fn settings_count_must_match_the_length() {
        let mut wire = encoded(&Frame::Settings {
            clear: false,
            entries: vec![Setting {
                flags: 0,
                id: SETTINGS_INITIAL_WINDOW_SIZE,
                value: 1,
            }],
        });
        wire[11] = 2; // claims two entries, carries one
        assert!(matches!(
            decode(&mut wire, MAX_PAYLOAD_LEN),
            Err(SpdyError::BadFrameLength {
                frame: "SETTINGS",
                ..
            })
        ));
    }

    #[test]
    fn reserved_bits_are_ignored() {
        // The high bit of stream IDs and window deltas is reserved.
        let mut wire = encoded(&Frame::WindowUpdate {
            stream_id: 1,
            delta: 5,
        });
        wire[8] |= 0x80;
        wire[12] |= 0x80;
        assert_eq!(
            decode(&mut wire, MAX_PAYLOAD_LEN).expect("decode"),
            Some(Frame::WindowUpdate {
                stream_id: 1,
                delta: 5
            })
        );
    }

    #[test]
    fn rst_status_names_known_codes() {
        assert_eq!(RstStatus::CANCEL.to_string(), "CANCEL");
        assert_eq!(RstStatus(42).to_string(), "status 42");
    }
}
