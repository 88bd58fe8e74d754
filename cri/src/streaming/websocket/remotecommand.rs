//! Exec and Attach over WebSocket: the remote-command channels (stdin 0,
//! stdout 1, stderr 2, error 3, resize 4) as messages on one connection,
//! as Kubernetes serves them (kubelet's
//! `cri/streaming/remotecommand/websocket.go`, and for v5 the API
//! server's `util/proxy/websocket.go`). The process side is
//! [`crate::streaming::remotecommand::run`], shared with SPDY.
//!
//! Right after the upgrade the server sends one empty message on the
//! lowest output channel the request has (stdout, else stderr, else
//! error) to tell the client the connection is up. The v4 and v5
//! protocols end with a metav1.Status on the error channel, the older
//! ones with a text message on failure only; then the connection closes
//! normally. Only v5 lets the client end its stdin without leaving (the
//! close signal): with the others stdin ends with the connection.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;

use crate::container::Containers;
use crate::streaming::channel::{Input, Output};
use crate::streaming::remotecommand::{self, Job, StatusStyle, Stdio};

use super::framing::Codec;
use super::mux::ChannelConn;

/// Stdin.
pub const STDIN: u8 = 0;
/// Stdout.
pub const STDOUT: u8 = 1;
/// Stderr.
pub const STDERR: u8 = 2;
/// How the command ended.
pub const ERROR: u8 = 3;
/// Terminal sizes.
pub const RESIZE: u8 = 4;
/// How many channels there are.
const CHANNELS: u8 = 5;

/// v5: v4 plus the close signal.
pub const V5: &str = "v5.channel.k8s.io";
/// v4: a Status on the error channel.
pub const V4: &str = "v4.channel.k8s.io";
/// v4 in base64 text messages.
pub const V4_BASE64: &str = "v4.base64.channel.k8s.io";
/// The original channel protocol.
pub const V1: &str = "channel.k8s.io";
/// The original channel protocol in base64 text messages.
pub const V1_BASE64: &str = "base64.channel.k8s.io";

/// The subprotocols served, for [`super::negotiate`]; `""` is a client
/// that names none, served as `channel.k8s.io`.
pub const PROTOCOLS: [&str; 6] = [V5, V4, V4_BASE64, V1, V1_BASE64, ""];

/// How a negotiated subprotocol frames and ends a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flavour {
    /// The message framing.
    pub codec: Codec,
    /// Whether the client may close single channels (v5).
    pub close_signal: bool,
    /// How the outcome is written.
    pub status: StatusStyle,
}

/// What `protocol` (one of [`PROTOCOLS`]) means.
pub fn flavour(protocol: &str) -> Flavour {
    Flavour {
        codec: if protocol.contains("base64.") {
            Codec::Base64
        } else {
            Codec::Binary
        },
        close_signal: protocol == V5,
        status: if matches!(protocol, V5 | V4 | V4_BASE64) {
            StatusStyle::Status
        } else {
            StatusStyle::Text
        },
    }
}

/// The output channel that carries the "connection is up" message.
fn first_output(stdout: bool, stderr: bool) -> u8 {
    if stdout {
        STDOUT
    } else if stderr {
        STDERR
    } else {
        ERROR
    }
}

/// Serves one Exec or Attach session on an upgraded WebSocket `ws` that
/// negotiated `protocol`, then closes it.
pub async fn serve<S>(ws: WebSocketStream<S>, protocol: &'static str, cs: Arc<Containers>, job: Job)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let f = flavour(protocol);
    let io = *job.io();
    let mut readable = Vec::new();
    if io.stdin {
        readable.push(STDIN);
    }
    if io.tty {
        // Sizes only mean something to a terminal; otherwise they are
        // dropped on arrival.
        readable.push(RESIZE);
    }
    let (conn, mut readers) = ChannelConn::open(ws, f.codec, f.close_signal, CHANNELS, &readable);
    let up = conn
        .writer(first_output(io.stdout, io.stderr))
        .send(&[])
        .await;
    if up.is_ok() {
        let output = |wanted: bool, ch: u8| wanted.then(|| Output::WebSocket(conn.writer(ch)));
        let stdio = Stdio {
            error: output(true, ERROR),
            stdin: readers.remove(&STDIN).map(Input::WebSocket),
            stdout: output(io.stdout, STDOUT),
            stderr: output(io.stderr, STDERR),
            resize: readers.remove(&RESIZE).map(Input::WebSocket),
        };
        remotecommand::run(&cs, &job, stdio, f.status).await;
    }
    conn.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streaming::websocket::negotiate;

    #[test]
    fn each_protocol_frames_and_reports_as_kubernetes_does() {
        let v5 = flavour(V5);
        assert_eq!(v5.codec, Codec::Binary);
        assert!(v5.close_signal);
        assert_eq!(v5.status, StatusStyle::Status);
        let v4b = flavour(V4_BASE64);
        assert_eq!(v4b.codec, Codec::Base64);
        assert!(!v4b.close_signal);
        assert_eq!(v4b.status, StatusStyle::Status);
        assert_eq!(flavour(V1_BASE64).codec, Codec::Base64);
        assert_eq!(flavour(V1).status, StatusStyle::Text);
        assert_eq!(flavour("").status, StatusStyle::Text);
        assert_eq!(flavour("").codec, Codec::Binary);
    }

    #[test]
    fn crictls_v5_only_offer_is_served() {
        assert_eq!(negotiate(&[V5.into()], &PROTOCOLS), Some(V5));
        assert_eq!(
            negotiate(&["v3.channel.k8s.io".into(), V4.into()], &PROTOCOLS),
            Some(V4)
        );
        assert_eq!(negotiate(&[], &PROTOCOLS), Some(""));
        assert_eq!(negotiate(&["v2.channel.k8s.io".into()], &PROTOCOLS), None);
    }

    #[test]
    fn the_ready_message_goes_to_the_lowest_output() {
        assert_eq!(first_output(true, true), STDOUT);
        assert_eq!(first_output(false, true), STDERR);
        assert_eq!(first_output(false, false), ERROR);
    }
}
