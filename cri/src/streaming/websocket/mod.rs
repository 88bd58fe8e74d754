//! WebSocket (RFC 6455) as Kubernetes streaming uses it, beside SPDY:
//! newer clients (client-go's WebSocket executor, `crictl --transport
//! websocket`, kubectl through an API server) upgrade with
//! `Upgrade: websocket` and name what they speak in
//! `Sec-WebSocket-Protocol`.
//!
//! * Exec and Attach: the remote-command channel protocols
//!   ([`remotecommand`]): `v5.channel.k8s.io`, `v4.channel.k8s.io`,
//!   `v4.base64.channel.k8s.io`, `channel.k8s.io`,
//!   `base64.channel.k8s.io` (or none: `channel.k8s.io` without saying
//!   so), each message tagged with its channel ([`framing`], [`mux`]).
//! * PortForward: SPDY tunnelled through the WebSocket
//!   (`SPDY/3.1+portforward.k8s.io`, [`tunnel`]) as client-go's
//!   tunnelling dialer does it, or kubelet's older channel protocol with
//!   the ports in the URL's `port` query ([`portforward`]).
//!
//! This module holds the handshake: recognising the request, choosing the
//! subprotocol, and the `Sec-WebSocket-Accept` answer.

pub mod framing;
pub mod mux;
pub mod portforward;
pub mod remotecommand;
pub mod tunnel;

use hyper::header::{HeaderMap, HeaderValue};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// The token clients offer in `Upgrade:` to switch to WebSocket.
pub const UPGRADE_PROTOCOL: &str = "websocket";

/// The only WebSocket version there is (RFC 6455).
pub const VERSION: &str = "13";

/// The request header that lists the subprotocols the client speaks (and
/// the response header naming the one chosen).
pub const PROTOCOL_HEADER: &str = "Sec-WebSocket-Protocol";

/// What makes a WebSocket upgrade request unanswerable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandshakeError {
    /// No `Sec-WebSocket-Key`, so no accept key can be made.
    #[error("missing Sec-WebSocket-Key")]
    MissingKey,
    /// A version other than 13.
    #[error("unsupported Sec-WebSocket-Version {0:?} (want 13)")]
    Version(String),
}

/// The comma-separated tokens of every `name` header.
fn tokens<'a>(headers: &'a HeaderMap, name: &str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Whether the request asks to switch to WebSocket: `Upgrade: websocket`
/// with `Connection: upgrade`, as Kubernetes' `IsWebSocketRequest`.
pub fn is_websocket_request(headers: &HeaderMap) -> bool {
    tokens(headers, "upgrade").any(|t| t.eq_ignore_ascii_case(UPGRADE_PROTOCOL))
        && tokens(headers, "connection").any(|t| t.eq_ignore_ascii_case("upgrade"))
}

/// The subprotocols the client offers, in its order of preference.
pub fn offered(headers: &HeaderMap) -> Vec<String> {
    tokens(headers, PROTOCOL_HEADER)
        .map(str::to_string)
        .collect()
}

/// The first of the client's `offered` subprotocols that is `served`, as
/// Kubernetes' wsstream handshake chooses. A client that offers none gets
/// `""` (meaning the protocol's oldest form) when `served` has it.
pub fn negotiate(offered: &[String], served: &[&'static str]) -> Option<&'static str> {
    if offered.is_empty() {
        return served.iter().find(|s| s.is_empty()).copied();
    }
    offered
        .iter()
        .find_map(|o| served.iter().find(|s| !s.is_empty() && *s == o).copied())
}

/// The `Sec-WebSocket-Accept` value for the request's key, after checking
/// the version.
pub fn accept_key(headers: &HeaderMap) -> Result<HeaderValue, HandshakeError> {
    if let Some(v) = headers.get("Sec-WebSocket-Version") {
        let v = v.to_str().unwrap_or("").trim();
        if v != VERSION {
            return Err(HandshakeError::Version(v.to_string()));
        }
    }
    let key = headers
        .get("Sec-WebSocket-Key")
        .ok_or(HandshakeError::MissingKey)?;
    HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
        .map_err(|_| HandshakeError::MissingKey)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn a_websocket_request_needs_both_upgrade_headers() {
        assert!(is_websocket_request(&headers(&[
            ("Upgrade", "WebSocket"),
            ("Connection", "keep-alive, Upgrade"),
        ])));
        assert!(!is_websocket_request(&headers(&[("Upgrade", "websocket")])));
        assert!(!is_websocket_request(&headers(&[
            ("Upgrade", "SPDY/3.1"),
            ("Connection", "Upgrade"),
        ])));
    }

    #[test]
    fn the_clients_first_served_subprotocol_wins() {
        let served = ["", "v4.channel.k8s.io", "channel.k8s.io"];
        let h = headers(&[
            (PROTOCOL_HEADER, "v5.channel.k8s.io, channel.k8s.io"),
            (PROTOCOL_HEADER, "v4.channel.k8s.io"),
        ]);
        let offers = offered(&h);
        assert_eq!(offers.len(), 3);
        assert_eq!(negotiate(&offers, &served), Some("channel.k8s.io"));
        assert_eq!(negotiate(&[], &served), Some(""));
        assert_eq!(negotiate(&[], &["v5.channel.k8s.io"]), None);
        assert_eq!(negotiate(&["v9".into()], &served), None);
        // "" is what a silent client gets, never a match for an offer.
        assert_eq!(negotiate(&["".into()], &served), None);
    }

    #[test]
    fn the_accept_key_is_rfc_6455s() {
        // The example handshake in RFC 6455 section 1.3.
        let h = headers(&[
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
        ]);
        assert_eq!(
            accept_key(&h).expect("key"),
            HeaderValue::from_static("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
        assert_eq!(
            accept_key(&headers(&[("Sec-WebSocket-Version", "13")])),
            Err(HandshakeError::MissingKey)
        );
        assert_eq!(
            accept_key(&headers(&[
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("Sec-WebSocket-Version", "8"),
            ])),
            Err(HandshakeError::Version("8".into()))
        );
    }
}
