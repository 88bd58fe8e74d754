//! A small SPDY/3.1 remote-command client for the e2e tests, playing the
//! part of `kubectl exec` / `crictl exec` (moby/spdystream under
//! k8s.io/client-go): the HTTP upgrade with protocol negotiation, one
//! stream per channel, stdin sent and half-closed, output and the error
//! channel read until the server ends them; the same streams also run over
//! any byte stream, such as a WebSocket tunnel. Built on the daemon's own
//! frame and header codecs, which are unit-tested against fixtures made
//! by an independent zlib.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use carapace_cri::streaming::spdy::frame::{self, Frame};
use carapace_cri::streaming::spdy::headers::{HeaderCompressor, HeaderDecompressor};
use carapace_cri::streaming::spdy::Headers;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// What one exec session returned.
#[derive(Debug, Default)]
pub struct ExecOutcome {
    /// The HTTP status of the upgrade (101 when it streamed).
    pub http_status: u16,
    /// The protocol the server chose.
    pub protocol: String,
    /// Bytes per channel (`stdout`, `stderr`, `error`).
    pub channels: HashMap<String, Vec<u8>>,
}

impl ExecOutcome {
    /// One channel's bytes as text.
    pub fn text(&self, channel: &str) -> String {
        String::from_utf8_lossy(self.channels.get(channel).map(Vec::as_slice).unwrap_or(&[]))
            .into_owned()
    }
}

/// One stream the client opens: its headers, what it sends, and whether
/// it half-closes after that.
pub struct Open {
    /// Headers (`streamType`, `port`, `requestID`).
    pub headers: Vec<(String, String)>,
    /// Bytes sent right after opening.
    pub send: Vec<u8>,
    /// Half-close after sending.
    pub fin: bool,
    /// Read until the server ends this stream.
    pub wait: bool,
}

/// What a session returned: HTTP status, chosen protocol, bytes per
/// opened stream (in the order opened).
#[derive(Debug, Default)]
pub struct Outcome {
    /// The HTTP status of the upgrade (101 when it streamed).
    pub http_status: u16,
    /// The protocol the server chose.
    pub protocol: String,
    /// What the server sent on each stream.
    pub received: Vec<Vec<u8>>,
}

/// Upgrades at `url` offering `protocols`, opens `streams`, sends their
/// bytes, and reads until every stream marked `wait` has ended.
pub async fn session(url: &str, protocols: &[&str], streams: &[Open]) -> anyhow::Result<Outcome> {
    let rest = url.strip_prefix("http://").context("http URL")?;
    let (host, path) = rest.split_once('/').context("URL path")?;
    let mut conn = TcpStream::connect(host).await.context("connect")?;
    let mut req = format!(
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nContent-Length: 0\r\n"
    );
    for p in protocols {
        req.push_str(&format!("X-Stream-Protocol-Version: {p}\r\n"));
    }
    req.push_str("\r\n");
    conn.write_all(req.as_bytes()).await?;
    // The response head, byte by byte up to the blank line (SPDY follows).
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(conn.read_u8().await.context("response head")?);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut out = Outcome {
        http_status: head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("status line")?,
        protocol: head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("X-Stream-Protocol-Version")
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_default(),
        received: vec![Vec::new(); streams.len()],
    };
    if out.http_status != 101 {
        return Ok(out);
    }
    out.received = run_streams(&mut conn, streams).await?;
    Ok(out)
}

/// Opens `streams` on an established SPDY connection `conn` (after an
/// HTTP upgrade, or tunnelled), sends their bytes, and reads until every
/// stream marked `wait` has ended; what the server sent on each.
pub async fn run_streams<T>(conn: &mut T, streams: &[Open]) -> anyhow::Result<Vec<Vec<u8>>>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let mut received = vec![Vec::new(); streams.len()];
    let mut comp = HeaderCompressor::new()?;
    let mut decomp = HeaderDecompressor::new();
    let mut wire = BytesMut::new();
    let id_of = |i: usize| 1 + 2 * i as u32;
    for (i, s) in streams.iter().enumerate() {
        let mut h = Headers::new();
        for (k, v) in &s.headers {
            h.insert(k, v);
        }
        frame::encode(
            &Frame::SynStream {
                stream_id: id_of(i),
                associated_to: 0,
                priority: 0,
                slot: 0,
                fin: false,
                unidirectional: false,
                header_block: comp.compress(&h)?,
            },
            &mut wire,
        )?;
    }
    for (i, s) in streams.iter().enumerate() {
        if !s.send.is_empty() {
            frame::encode(
                &Frame::Data {
                    stream_id: id_of(i),
                    fin: false,
                    data: Bytes::copy_from_slice(&s.send),
                },
                &mut wire,
            )?;
        }
        if s.fin {
            frame::encode(
                &Frame::Data {
                    stream_id: id_of(i),
                    fin: true,
                    data: Bytes::new(),
                },
                &mut wire,
            )?;
        }
    }
    conn.write_all(&wire).await?;
    let waited: Vec<u32> = (0..streams.len())
        .filter(|i| streams[*i].wait)
        .map(id_of)
        .collect();
    let index = |id: u32| {
        (id as usize)
            .checked_sub(1)
            .map(|x| x / 2)
            .filter(|i| *i < streams.len())
    };
    let mut ended = std::collections::HashSet::new();
    let mut buf = BytesMut::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !waited.iter().all(|id| ended.contains(id)) {
        let f = loop {
            if let Some(f) = frame::decode(&mut buf, frame::MAX_PAYLOAD_LEN)? {
                break Some(f);
            }
            let mut chunk = [0u8; 16 << 10];
            let n = tokio::time::timeout_at(deadline, conn.read(&mut chunk))
                .await
                .context("server did not finish within a minute")??;
            if n == 0 {
                break None;
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let Some(f) = f else { break };
        match f {
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                if let Some(i) = index(stream_id) {
                    received[i].extend_from_slice(&data);
                }
                if fin {
                    ended.insert(stream_id);
                }
            }
            Frame::SynReply {
                stream_id,
                fin,
                header_block,
            } => {
                decomp.decompress(&header_block)?;
                if fin {
                    ended.insert(stream_id);
                }
            }
            Frame::RstStream { stream_id, .. } => {
                ended.insert(stream_id);
            }
            Frame::Ping { id } => {
                let mut w = BytesMut::new();
                frame::encode(&Frame::Ping { id }, &mut w)?;
                conn.write_all(&w).await?;
            }
            Frame::GoAway { .. } => break,
            Frame::SynStream { .. } => bail!("the server opened a stream"),
            _ => {}
        }
    }
    Ok(received)
}

/// A remote-command session at `url` (from the CRI Exec or Attach call):
/// opens `channels` (error, stdin, stdout, stderr, resize), sends `stdin`
/// then half-closes it, sends one `resize`, reads until the output and
/// error channels end.
pub async fn exec(
    url: &str,
    protocols: &[&str],
    channels: &[&str],
    stdin: &[u8],
    resize: Option<(u32, u32)>,
) -> anyhow::Result<ExecOutcome> {
    let opens: Vec<Open> = channels
        .iter()
        .map(|ch| Open {
            headers: vec![("streamType".into(), ch.to_string())],
            send: match *ch {
                "stdin" => stdin.to_vec(),
                "resize" => resize
                    .map(|(w, h)| format!(r#"{{"Width":{w},"Height":{h}}}"#).into_bytes())
                    .unwrap_or_default(),
                _ => Vec::new(),
            },
            fin: *ch == "stdin",
            wait: matches!(*ch, "stdout" | "stderr" | "error"),
        })
        .collect();
    let o = session(url, protocols, &opens).await?;
    Ok(ExecOutcome {
        http_status: o.http_status,
        protocol: o.protocol,
        channels: channels
            .iter()
            .map(|c| c.to_string())
            .zip(o.received)
            .collect(),
    })
}

/// One forwarded connection at `url` (from the CRI PortForward call) to
/// `port`: sends `request`, half-closes, returns (HTTP status, what came
/// back on the data stream, the error stream's text).
pub async fn port_forward(
    url: &str,
    port: u16,
    request: &[u8],
) -> anyhow::Result<(u16, Vec<u8>, String)> {
    let mut o = session(
        url,
        &["portforward.k8s.io"],
        &port_forward_streams(port, request),
    )
    .await?;
    let data = std::mem::take(&mut o.received[1]);
    let error = String::from_utf8_lossy(&o.received[0]).into_owned();
    Ok((o.http_status, data, error))
}

/// The error and data streams of one forwarded connection to `port` that
/// sends `request` and half-closes, as client-go opens them.
pub fn port_forward_streams(port: u16, request: &[u8]) -> [Open; 2] {
    let header = |kind: &str| {
        vec![
            ("streamType".to_string(), kind.to_string()),
            ("port".to_string(), port.to_string()),
            ("requestID".to_string(), "0".to_string()),
        ]
    };
    [
        Open {
            headers: header("error"),
            send: Vec::new(),
            fin: true,
            wait: true,
        },
        Open {
            headers: header("data"),
            send: request.to_vec(),
            fin: true,
            wait: true,
        },
    ]
}
