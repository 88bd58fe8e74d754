//! Kubernetes' channel framing inside WebSocket messages
//! (`k8s.io/apimachinery/pkg/util/httpstream/wsstream`): every message
//! starts with the number of the channel it belongs to. With the binary
//! protocols (`channel.k8s.io`, `v4.channel.k8s.io`, `v5.channel.k8s.io`)
//! that is one byte and the payload follows raw; with the base64 ones
//! (`base64.channel.k8s.io`, `v4.base64.channel.k8s.io`) it is the
//! channel's ASCII digit and the payload follows base64-encoded, in text
//! messages. v5 adds one control message: channel 255 followed by one
//! byte, the channel the client has finished sending on.
//!
//! Pure functions only: the connection that uses them is
//! [`super::mux`].

use base64::Engine;
use bytes::Bytes;
use tokio_tungstenite::tungstenite::Message;

/// The reserved channel number whose message half-closes another channel
/// (v5 only).
pub const STREAM_CLOSE: u8 = 255;

/// How the channel number and payload are written in a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// One channel byte, raw payload, binary messages.
    Binary,
    /// One ASCII digit, base64 payload, text messages.
    Base64,
}

/// A client message that cannot be honoured.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FramingError {
    /// A v5 close signal must carry exactly the one channel it closes; a
    /// client that gets this wrong is not understood any more (Kubernetes
    /// ends the connection).
    #[error("close signal with {0} bytes after the signal byte (want 1)")]
    BadCloseSignal(usize),
    /// A base64-protocol payload that is not base64 (the message is
    /// dropped, as Kubernetes does).
    #[error("channel {channel}: payload is not base64: {reason}")]
    BadBase64 {
        /// The channel the message was for.
        channel: u8,
        /// What the decoder said.
        reason: String,
    },
}

/// What one message from the client means.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound {
    /// Data for a channel.
    Data {
        /// The channel.
        channel: u8,
        /// The payload, decoded.
        data: Bytes,
    },
    /// The client is done sending on `channel` (v5's close signal).
    Close {
        /// The channel the client closed.
        channel: u8,
    },
    /// An empty message: carries nothing (Kubernetes skips them).
    Empty,
}

/// The message that carries `data` on `channel`.
pub fn encode(codec: Codec, channel: u8, data: &[u8]) -> Message {
    match codec {
        Codec::Binary => {
            let mut m = Vec::with_capacity(data.len() + 1);
            m.push(channel);
            m.extend_from_slice(data);
            Message::Binary(m.into())
        }
        Codec::Base64 => {
            let digit = char::from(b'0'.wrapping_add(channel));
            let text = format!(
                "{digit}{}",
                base64::engine::general_purpose::STANDARD.encode(data)
            );
            Message::Text(text.into())
        }
    }
}

/// The message that tells the peer this end is done sending on
/// `channel` (v5).
pub fn encode_close(channel: u8) -> Message {
    Message::Binary(vec![STREAM_CLOSE, channel].into())
}

/// Reads one data message's `payload` (text or binary alike, as
/// Kubernetes' server reads them). `close_signal` is whether the
/// protocol has v5's close signal; without it, channel 255 is just a
/// channel nobody serves.
pub fn decode(codec: Codec, close_signal: bool, payload: Bytes) -> Result<Inbound, FramingError> {
    let Some(&first) = payload.first() else {
        return Ok(Inbound::Empty);
    };
    if close_signal && first == STREAM_CLOSE {
        return match payload.len() {
            2 => Ok(Inbound::Close {
                channel: payload[1],
            }),
            n => Err(FramingError::BadCloseSignal(n - 1)),
        };
    }
    let rest = payload.slice(1..);
    match codec {
        Codec::Binary => Ok(Inbound::Data {
            channel: first,
            data: rest,
        }),
        Codec::Base64 => {
            let channel = first.wrapping_sub(b'0');
            base64::engine::general_purpose::STANDARD
                .decode(&rest)
                .map(|d| Inbound::Data {
                    channel,
                    data: d.into(),
                })
                .map_err(|e| FramingError::BadBase64 {
                    channel,
                    reason: e.to_string(),
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(m: Message) -> Bytes {
        match m {
            Message::Binary(b) => b,
            Message::Text(t) => Bytes::copy_from_slice(t.as_bytes()),
            other => panic!("not a data message: {other:?}"),
        }
    }

    #[test]
    fn binary_messages_lead_with_the_channel_byte() {
        let m = encode(Codec::Binary, 1, b"foo\n");
        assert!(m.is_binary());
        assert_eq!(payload(m).as_ref(), b"\x01foo\n");
        assert_eq!(
            decode(Codec::Binary, false, Bytes::from_static(b"\x00foo\n")),
            Ok(Inbound::Data {
                channel: 0,
                data: Bytes::from_static(b"foo\n")
            })
        );
    }

    #[test]
    fn base64_messages_are_text_with_a_channel_digit() {
        // The example session in wsstream's documentation.
        let m = encode(Codec::Base64, 1, b"\n");
        assert!(m.is_text());
        assert_eq!(payload(m).as_ref(), b"1Cg==");
        assert_eq!(
            decode(Codec::Base64, false, Bytes::from_static(b"0Zm9vCg==")),
            Ok(Inbound::Data {
                channel: 0,
                data: Bytes::from_static(b"foo\n")
            })
        );
        assert!(matches!(
            decode(Codec::Base64, false, Bytes::from_static(b"0not base64!")),
            Err(FramingError::BadBase64 { channel: 0, .. })
        ));
    }

    #[test]
    fn an_empty_payload_still_names_its_channel() {
        // The "connection is up" message Kubernetes sends first.
        assert_eq!(payload(encode(Codec::Binary, 1, b"")).as_ref(), b"\x01");
        assert_eq!(payload(encode(Codec::Base64, 3, b"")).as_ref(), b"3");
        assert_eq!(
            decode(Codec::Binary, true, Bytes::new()),
            Ok(Inbound::Empty)
        );
    }

    #[test]
    fn the_close_signal_exists_only_in_v5() {
        assert_eq!(payload(encode_close(0)).as_ref(), b"\xff\x00");
        assert_eq!(
            decode(Codec::Binary, true, payload(encode_close(0))),
            Ok(Inbound::Close { channel: 0 })
        );
        assert_eq!(
            decode(Codec::Binary, true, Bytes::from_static(b"\xff\x00\x01")),
            Err(FramingError::BadCloseSignal(2))
        );
        assert_eq!(
            decode(Codec::Binary, true, Bytes::from_static(b"\xff")),
            Err(FramingError::BadCloseSignal(0))
        );
        // Before v5, 255 is an ordinary (unserved) channel.
        assert_eq!(
            decode(Codec::Binary, false, Bytes::from_static(b"\xff\x00")),
            Ok(Inbound::Data {
                channel: 255,
                data: Bytes::from_static(b"\x00")
            })
        );
    }
}
