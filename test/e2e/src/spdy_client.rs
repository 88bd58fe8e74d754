//! A small SPDY/3.1 remote-command client for the e2e tests, playing the
//! part of `kubectl exec` / `crictl exec` (moby/spdystream under
//! k8s.io/client-go): the HTTP upgrade with protocol negotiation, one
//! stream per channel, stdin sent and half-closed, output and the error
//! channel read until the server ends them. Built on the daemon's own
//! frame and header codecs, which are unit-tested against fixtures made
//! by an independent zlib.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use carapace_cri::streaming::spdy::frame::{self, Frame};
use carapace_cri::streaming::spdy::headers::{HeaderCompressor, HeaderDecompressor};
use carapace_cri::streaming::spdy::Headers;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

/// Streams at `url` (from the CRI Exec call) offering `protocols`, opening
/// `channels` (e.g. error, stdin, stdout, stderr), sending `stdin` (then
/// half-closing it) and `resize` messages; reads until the server is done.
pub async fn exec(
    url: &str,
    protocols: &[&str],
    channels: &[&str],
    stdin: &[u8],
    resize: Option<(u32, u32)>,
) -> anyhow::Result<ExecOutcome> {
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
        let b = conn.read_u8().await.context("response head")?;
        head.push(b);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("status line")?;
    let protocol = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("X-Stream-Protocol-Version")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    let mut out = ExecOutcome {
        http_status: status,
        protocol,
        ..Default::default()
    };
    if status != 101 {
        return Ok(out);
    }
    let mut comp = HeaderCompressor::new()?;
    let mut decomp = HeaderDecompressor::new();
    let mut wire = BytesMut::new();
    let mut ids = HashMap::new();
    for (i, ch) in channels.iter().enumerate() {
        let id = 1 + 2 * i as u32;
        let mut h = Headers::new();
        h.insert("streamType", ch);
        frame::encode(
            &Frame::SynStream {
                stream_id: id,
                associated_to: 0,
                priority: 0,
                slot: 0,
                fin: false,
                unidirectional: false,
                header_block: comp.compress(&h)?,
            },
            &mut wire,
        )?;
        ids.insert(id, ch.to_string());
    }
    for (id, ch) in &ids {
        match ch.as_str() {
            "stdin" => {
                if !stdin.is_empty() {
                    frame::encode(
                        &Frame::Data {
                            stream_id: *id,
                            fin: false,
                            data: Bytes::copy_from_slice(stdin),
                        },
                        &mut wire,
                    )?;
                }
                frame::encode(
                    &Frame::Data {
                        stream_id: *id,
                        fin: true,
                        data: Bytes::new(),
                    },
                    &mut wire,
                )?;
            }
            "resize" => {
                if let Some((w, h)) = resize {
                    let msg = format!(r#"{{"Width":{w},"Height":{h}}}"#);
                    frame::encode(
                        &Frame::Data {
                            stream_id: *id,
                            fin: false,
                            data: Bytes::from(msg),
                        },
                        &mut wire,
                    )?;
                }
            }
            _ => {}
        }
    }
    conn.write_all(&wire).await?;
    // Read until every output channel and the error channel have ended.
    let outputs: Vec<u32> = ids
        .iter()
        .filter(|(_, ch)| matches!(ch.as_str(), "stdout" | "stderr" | "error"))
        .map(|(id, _)| *id)
        .collect();
    let mut ended = std::collections::HashSet::new();
    let mut buf = BytesMut::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !outputs.iter().all(|id| ended.contains(id)) {
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
                if let Some(ch) = ids.get(&stream_id) {
                    out.channels
                        .entry(ch.clone())
                        .or_default()
                        .extend_from_slice(&data);
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
    Ok(out)
}
