//! PortForward over WebSocket, both ways Kubernetes clients ask for it:
//!
//! * Tunnelled SPDY (`SPDY/3.1+portforward.k8s.io`, client-go's
//!   `NewSPDYOverWebsocketDialer`, `crictl port-forward --transport
//!   websocket`, kubectl 1.30+ through an API server): the WebSocket
//!   carries the SPDY session's bytes, and the SPDY port-forward server
//!   ([`crate::streaming::portforward::serve`]) runs on top unchanged.
//! * kubelet's own channel protocol (no subprotocol, `v4.channel.k8s.io`
//!   or `v4.base64.channel.k8s.io`), the ports listed in the URL's `port`
//!   query: for the i-th port, channel 2i carries data both ways and
//!   channel 2i+1 errors; each starts with the port as two little-endian
//!   bytes; one connection per port, for the life of the WebSocket.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;

use crate::container::Containers;
use crate::streaming::channel::{Input, Output};
use crate::streaming::portforward::{self, Ending};
use crate::streaming::spdy::{Session, SessionConfig};

use super::framing::Codec;
use super::mux::ChannelConn;
use super::tunnel::Tunnel;

/// What prefixes a SPDY protocol tunnelled through WebSocket.
pub const TUNNELING_PREFIX: &str = "SPDY/3.1+";

/// The tunnelled port-forward subprotocol.
pub const TUNNELED_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

/// The channel protocols served for kubelet's WebSocket port forwarding
/// (`""`: a client that names none, served as binary).
pub const CHANNEL_PROTOCOLS: [&str; 3] = ["v4.channel.k8s.io", "v4.base64.channel.k8s.io", ""];

/// Whether the client asks for SPDY tunnelled through the WebSocket: a
/// subprotocol `SPDY/3.1+…k8s.io`, as the API server's
/// `IsWebSocketRequestWithTunnelingProtocol` reads it.
pub fn wants_tunnel(offered: &[String]) -> bool {
    offered
        .iter()
        .any(|p| p.starts_with(TUNNELING_PREFIX) && p.ends_with(".k8s.io"))
}

/// A `port` query parameter that does not name ports.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PortQueryError {
    /// No `port` parameter.
    #[error("query parameter \"port\" is required")]
    Missing,
    /// An empty one.
    #[error("query parameter \"port\" cannot be empty")]
    Empty,
    /// One that is not a port number from 1 to 65535.
    #[error("unable to parse {0:?} as a port")]
    Invalid(String),
}

/// The ports in `query` (`port=80&port=443` or `port=80,443`), in order,
/// as kubelet's `NewV4Options` reads them.
pub fn ports_from_query(query: Option<&str>) -> Result<Vec<u16>, PortQueryError> {
    let mut ports = Vec::new();
    let mut seen = false;
    for pair in query.unwrap_or("").split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k != "port" {
            continue;
        }
        seen = true;
        if v.is_empty() {
            return Err(PortQueryError::Empty);
        }
        // Commas may arrive percent-encoded.
        let v = v.replace("%2C", ",").replace("%2c", ",");
        for p in v.split(',') {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => ports.push(n),
                _ => return Err(PortQueryError::Invalid(p.to_string())),
            }
        }
    }
    if !seen {
        return Err(PortQueryError::Missing);
    }
    Ok(ports)
}

/// Serves port forwarding for `pod_id` with SPDY tunnelled through `ws`,
/// until the client leaves.
pub async fn serve_tunnel<S>(ws: WebSocketStream<S>, cs: Arc<Containers>, pod_id: String)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match Session::start(Tunnel::new(ws), SessionConfig::default()) {
        Ok(session) => portforward::serve(session, cs, pod_id).await,
        Err(e) => tracing::warn!(error = %e, "start tunnelled SPDY session"),
    }
}

/// Serves kubelet's channel port forwarding of `ports` in `pod_id` on
/// `ws` (negotiated `protocol`), then closes it once every port's
/// connection has ended.
pub async fn serve_channels<S>(
    ws: WebSocketStream<S>,
    protocol: &'static str,
    cs: Arc<Containers>,
    pod_id: String,
    ports: Vec<u16>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let codec = if protocol.contains("base64.") {
        Codec::Base64
    } else {
        Codec::Binary
    };
    // Two channels a port, numbered by one byte: 127 ports at most.
    let ports: Vec<u16> = ports.into_iter().take(127).collect();
    let channels = u8::try_from(ports.len() * 2).unwrap_or(u8::MAX);
    let readable: Vec<u8> = (0..channels).step_by(2).collect();
    let (conn, mut readers) = ChannelConn::open(ws, codec, false, channels, &readable);
    let netns = cs
        .sandboxes
        .get(&pod_id)
        .map(|s| s.record().netns)
        .map_err(|e| format!("error forwarding to pod {pod_id}: {e}"));
    let mut tasks = Vec::new();
    for (i, port) in (0u8..).zip(ports) {
        let (data_ch, error_ch) = (2 * i, 2 * i + 1);
        let (data, error) = (conn.writer(data_ch), conn.writer(error_ch));
        let prefix = port.to_le_bytes();
        if data.send(&prefix).await.is_err() || error.send(&prefix).await.is_err() {
            break;
        }
        let Some(from_client) = readers.remove(&data_ch) else {
            continue;
        };
        let netns = match &netns {
            Ok(ns) => ns.clone(),
            Err(msg) => {
                tracing::warn!(pod = %pod_id, error = %msg, "port-forward");
                let _ = error.send(msg.as_bytes()).await;
                continue;
            }
        };
        let pod_id = pod_id.clone();
        tasks.push(tokio::spawn(async move {
            portforward::forward(
                Output::WebSocket(error),
                Input::WebSocket(from_client),
                Output::WebSocket(data),
                &port.to_string(),
                netns,
                &pod_id,
                Ending::EitherDirection,
            )
            .await
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    conn.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunnelling_is_asked_for_with_a_prefixed_subprotocol() {
        assert!(wants_tunnel(&[TUNNELED_PROTOCOL.into()]));
        assert!(wants_tunnel(&[
            "v4.channel.k8s.io".into(),
            "SPDY/3.1+portforward.k8s.io".into()
        ]));
        assert!(!wants_tunnel(&["v4.channel.k8s.io".into()]));
        assert!(!wants_tunnel(&["SPDY/3.1+other".into()]));
        assert!(!wants_tunnel(&[]));
    }

    #[test]
    fn ports_come_from_the_query_as_kubelet_reads_them() {
        assert_eq!(ports_from_query(Some("port=80")), Ok(vec![80]));
        assert_eq!(
            ports_from_query(Some("port=80,443&x=1&port=8080")),
            Ok(vec![80, 443, 8080])
        );
        assert_eq!(ports_from_query(Some("port=80%2C81")), Ok(vec![80, 81]));
        assert_eq!(ports_from_query(None), Err(PortQueryError::Missing));
        assert_eq!(ports_from_query(Some("x=1")), Err(PortQueryError::Missing));
        assert_eq!(ports_from_query(Some("port=")), Err(PortQueryError::Empty));
        assert_eq!(
            ports_from_query(Some("port=0")),
            Err(PortQueryError::Invalid("0".into()))
        );
        assert_eq!(
            ports_from_query(Some("port=http")),
            Err(PortQueryError::Invalid("http".into()))
        );
    }
}
