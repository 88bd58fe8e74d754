//! A small WebSocket streaming client for the e2e tests, playing the part
//! of client-go's WebSocket executor (`crictl exec --transport websocket`,
//! kubectl 1.30+) and of its SPDY-over-WebSocket port-forward dialer
//! (`crictl port-forward --transport websocket`), plus kubelet's older
//! channel port forwarding. Built on tokio-tungstenite's client; the
//! channel framing here is written independently of the daemon's.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::spdy_client;

/// How long a session may take before the client gives up: a hang guard.
const GUARD: Duration = Duration::from_secs(60);

/// The stdin, stdout, stderr, error and resize channels.
pub const STDIN: u8 = 0;
/// Stdout.
pub const STDOUT: u8 = 1;
/// Stderr.
pub const STDERR: u8 = 2;
/// The error (status) channel.
pub const ERROR: u8 = 3;
/// Terminal sizes.
pub const RESIZE: u8 = 4;

/// What one WebSocket session returned.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The HTTP status of the upgrade (101 when it streamed).
    pub http_status: u16,
    /// The subprotocol the server chose ("" for none).
    pub protocol: String,
    /// Every data message in arrival order: (channel, payload decoded).
    pub messages: Vec<(u8, Vec<u8>)>,
    /// The code of the server's Close frame, if it sent one.
    pub close_code: Option<u16>,
}

impl Outcome {
    /// Everything received on `channel`, concatenated, as text.
    pub fn text(&self, channel: u8) -> String {
        let bytes: Vec<u8> = self
            .messages
            .iter()
            .filter(|(c, _)| *c == channel)
            .flat_map(|(_, d)| d.iter().copied())
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Everything received, per channel.
    pub fn by_channel(&self) -> HashMap<u8, Vec<u8>> {
        let mut m: HashMap<u8, Vec<u8>> = HashMap::new();
        for (c, d) in &self.messages {
            m.entry(*c).or_default().extend_from_slice(d);
        }
        m
    }
}

/// What the client sends in an exec or attach session.
#[derive(Debug, Default, Clone)]
pub struct Send {
    /// Sent on stdin right away (nothing when empty).
    pub stdin: Vec<u8>,
    /// Then v5's close signal for stdin.
    pub close_stdin: bool,
    /// One terminal size.
    pub resize: Option<(u32, u32)>,
}

/// Whether `protocol` frames in base64 text messages.
fn base64_framing(protocol: &str) -> bool {
    protocol.contains("base64.")
}

fn encode(base64: bool, channel: u8, data: &[u8]) -> Message {
    if base64 {
        let digit = char::from(b'0' + channel);
        let b64 = base64::engine::general_purpose::STANDARD.encode(data);
        Message::Text(format!("{digit}{b64}").into())
    } else {
        let mut m = vec![channel];
        m.extend_from_slice(data);
        Message::Binary(m.into())
    }
}

fn decode(base64: bool, msg: &Message) -> anyhow::Result<Option<(u8, Vec<u8>)>> {
    match (msg, base64) {
        (Message::Binary(b), false) => match b.split_first() {
            Some((c, rest)) => Ok(Some((*c, rest.to_vec()))),
            None => bail!("empty binary message"),
        },
        (Message::Text(t), true) => {
            let t = t.as_str();
            let Some(digit) = t.bytes().next() else {
                bail!("empty text message");
            };
            let data = base64::engine::general_purpose::STANDARD
                .decode(&t[1..])
                .context("base64 payload")?;
            Ok(Some((digit.wrapping_sub(b'0'), data)))
        }
        (Message::Binary(_), true) => bail!("binary message under a base64 protocol"),
        (Message::Text(_), false) => bail!("text message under a binary protocol"),
        _ => Ok(None),
    }
}

/// The WebSocket URL for a streaming URL the CRI handed out.
fn ws_url(url: &str) -> anyhow::Result<(String, String)> {
    let rest = url.strip_prefix("http://").context("http URL")?;
    let host = rest.split('/').next().context("URL host")?.to_string();
    Ok((host, format!("ws://{rest}")))
}

/// Upgrades at `url` offering `protocols`: (HTTP status, chosen
/// subprotocol, the WebSocket when it is 101).
pub async fn connect(
    url: &str,
    protocols: &[&str],
) -> anyhow::Result<(u16, String, Option<WebSocketStream<TcpStream>>)> {
    let (host, ws) = ws_url(url)?;
    let tcp = TcpStream::connect(&host).await.context("connect")?;
    let mut req = ws.into_client_request()?;
    if !protocols.is_empty() {
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", protocols.join(", ").parse()?);
    }
    match tokio_tungstenite::client_async(req, tcp).await {
        Ok((ws, resp)) => {
            let protocol = resp
                .headers()
                .get("Sec-WebSocket-Protocol")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            Ok((resp.status().as_u16(), protocol, Some(ws)))
        }
        Err(WsError::Http(resp)) => Ok((resp.status().as_u16(), String::new(), None)),
        Err(e) => Err(e.into()),
    }
}

/// Reads every message until the server closes, answering its Close.
async fn read_all(
    ws: &mut WebSocketStream<TcpStream>,
    base64: bool,
    out: &mut Outcome,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next())
            .await
            .context("server did not finish within a minute")?;
        let msg = match next {
            None | Some(Err(WsError::ConnectionClosed)) => return Ok(()),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(m)) => m,
        };
        if let Message::Close(f) = &msg {
            out.close_code = f.as_ref().map(|f| u16::from(f.code));
            continue;
        }
        if let Some(m) = decode(base64, &msg)? {
            out.messages.push(m);
        }
    }
}

/// An exec or attach session at `url` (from the CRI Exec or Attach call)
/// offering `protocols`: sends what `send` says, then reads until the
/// server closes the connection.
pub async fn exec(url: &str, protocols: &[&str], send: &Send) -> anyhow::Result<Outcome> {
    let (http_status, protocol, ws) = connect(url, protocols).await?;
    let mut out = Outcome {
        http_status,
        protocol,
        ..Default::default()
    };
    let Some(mut ws) = ws else {
        return Ok(out);
    };
    let b64 = base64_framing(&out.protocol);
    if !send.stdin.is_empty() {
        ws.send(encode(b64, STDIN, &send.stdin)).await?;
    }
    if send.close_stdin {
        ws.send(Message::Binary(Bytes::from_static(&[255, STDIN])))
            .await?;
    }
    if let Some((w, h)) = send.resize {
        let size = format!(r#"{{"Width":{w},"Height":{h}}}"#);
        ws.send(encode(b64, RESIZE, size.as_bytes())).await?;
    }
    read_all(&mut ws, b64, &mut out).await?;
    Ok(out)
}

/// Opens an exec or attach session at `url` offering `protocols`, sends
/// `stdin`, and reads until `until` has come back on stdout; returns the
/// WebSocket still open, for tests about a client that walks away (drop
/// it to vanish without a Close).
pub async fn open_until(
    url: &str,
    protocols: &[&str],
    stdin: &[u8],
    until: &[u8],
) -> anyhow::Result<WebSocketStream<TcpStream>> {
    let (status, protocol, ws) = connect(url, protocols).await?;
    let Some(mut ws) = ws else {
        bail!("upgrade answered {status}");
    };
    let b64 = base64_framing(&protocol);
    ws.send(encode(b64, STDIN, stdin)).await?;
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + GUARD;
    while !got.windows(until.len()).any(|w| w == until) {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .context("no answer within a minute")?
            .context("the server left")??;
        if let Some((STDOUT, data)) = decode(b64, &msg)? {
            got.extend_from_slice(&data);
        }
    }
    Ok(ws)
}

/// One forwarded connection to `port` at `url` (from the CRI PortForward
/// call) over SPDY tunnelled through a WebSocket, as client-go's
/// tunnelling dialer does it: sends `request`, half-closes, returns (HTTP
/// status, subprotocol, what came back on the data stream, the error
/// stream's text).
pub async fn port_forward_tunnel(
    url: &str,
    port: u16,
    request: &[u8],
) -> anyhow::Result<(u16, String, Vec<u8>, String)> {
    let (status, protocol, ws) = connect(url, &["SPDY/3.1+portforward.k8s.io"]).await?;
    let Some(ws) = ws else {
        return Ok((status, protocol, Vec::new(), String::new()));
    };
    // The SPDY client on one end of a pipe; the other end's bytes travel
    // as binary messages.
    let (mut spdy_end, ws_end) = tokio::io::duplex(1 << 16);
    let pump = tokio::spawn(pump_tunnel(ws, ws_end));
    let received = tokio::time::timeout(
        GUARD,
        spdy_client::run_streams(
            &mut spdy_end,
            &spdy_client::port_forward_streams(port, request),
        ),
    )
    .await
    .context("tunnelled session did not finish within a minute")??;
    drop(spdy_end);
    pump.await.context("tunnel pump")??;
    let [error, data]: [Vec<u8>; 2] = received
        .try_into()
        .map_err(|_| anyhow::anyhow!("two streams"))?;
    Ok((
        status,
        protocol,
        data,
        String::from_utf8_lossy(&error).into_owned(),
    ))
}

/// Copies between the WebSocket and `end` until `end` closes, then
/// closes the WebSocket normally.
async fn pump_tunnel(
    ws: WebSocketStream<TcpStream>,
    end: tokio::io::DuplexStream,
) -> anyhow::Result<()> {
    let (mut sink, mut stream) = ws.split();
    let (mut rd, mut wr) = tokio::io::split(end);
    let down = tokio::spawn(async move {
        while let Some(Ok(m)) = stream.next().await {
            match m {
                Message::Binary(b) if wr.write_all(&b).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let n = rd.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        sink.send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
            .await?;
    }
    sink.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    })))
    .await?;
    down.abort();
    Ok(())
}

/// kubelet's WebSocket port forwarding at `url` (which must carry the
/// `port` query) offering `protocols`: sends `request` on the first
/// port's data channel and reads until the server closes.
pub async fn port_forward_channels(
    url: &str,
    protocols: &[&str],
    request: &[u8],
) -> anyhow::Result<Outcome> {
    let (http_status, protocol, ws) = connect(url, protocols).await?;
    let mut out = Outcome {
        http_status,
        protocol,
        ..Default::default()
    };
    let Some(mut ws) = ws else {
        return Ok(out);
    };
    let b64 = base64_framing(&out.protocol);
    ws.send(encode(b64, 0, request)).await?;
    read_all(&mut ws, b64, &mut out).await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_round_trips() {
        for b64 in [false, true] {
            let m = encode(b64, 2, b"hi\n");
            assert_eq!(
                decode(b64, &m).expect("decode"),
                Some((2, b"hi\n".to_vec()))
            );
        }
        assert!(decode(false, &Message::Text("1aGk=".into())).is_err());
    }
}
