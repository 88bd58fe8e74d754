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

/// A connection to a streaming server, plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How the client reaches a streaming URL: `http://` over plain TCP,
/// `https://` over TLS trusting the certificate it was given (as kubelet
/// would be configured to trust the runtime's streaming certificate).
#[derive(Clone, Default)]
pub struct Dialer {
    tls: Option<tokio_native_tls::TlsConnector>,
}

impl Dialer {
    /// A dialer for `https://` URLs whose server presents `cert_pem` (or
    /// a certificate it signed); plain `http://` URLs still work.
    pub fn trusting(cert_pem: &[u8]) -> anyhow::Result<Self> {
        let root = tokio_native_tls::native_tls::Certificate::from_pem(cert_pem)
            .context("CA certificate")?;
        let tls = tokio_native_tls::native_tls::TlsConnector::builder()
            .add_root_certificate(root)
            .build()
            .context("TLS connector")?;
        Ok(Dialer {
            tls: Some(tls.into()),
        })
    }

    /// Connects to `url`'s host: (connection, host, path without the
    /// leading slash).
    pub async fn connect(&self, url: &str) -> anyhow::Result<(Box<dyn Io>, String, String)> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else {
            (false, url.strip_prefix("http://").context("http URL")?)
        };
        let (host, path) = rest.split_once('/').context("URL path")?;
        let tcp = TcpStream::connect(host).await.context("connect")?;
        tcp.set_nodelay(true)?;
        let conn: Box<dyn Io> = if tls {
            let connector = self
                .tls
                .as_ref()
                .context("an https URL needs a dialer that trusts its certificate")?;
            let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
            Box::new(
                connector
                    .connect(name, tcp)
                    .await
                    .context("TLS handshake")?,
            )
        } else {
            Box::new(tcp)
        };
        Ok((conn, host.to_string(), path.to_string()))
    }
}

/// Sends the HTTP upgrade to SPDY/3.1 offering `protocols` on `conn` and
/// reads the response head: (status, the protocol the server chose).
async fn upgrade(
    conn: &mut Box<dyn Io>,
    host: &str,
    path: &str,
    protocols: &[&str],
) -> anyhow::Result<(u16, String)> {
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
    let status = head
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
    Ok((status, protocol))
}

/// Upgrades at `url` offering `protocols`, opens `streams`, sends their
/// bytes, and reads until every stream marked `wait` has ended.
pub async fn session(url: &str, protocols: &[&str], streams: &[Open]) -> anyhow::Result<Outcome> {
    session_via(&Dialer::default(), url, protocols, streams).await
}

/// [`session`] through `dialer` (for `https://` URLs).
pub async fn session_via(
    dialer: &Dialer,
    url: &str,
    protocols: &[&str],
    streams: &[Open],
) -> anyhow::Result<Outcome> {
    let (mut conn, host, path) = dialer.connect(url).await?;
    let (http_status, protocol) = upgrade(&mut conn, &host, &path, protocols).await?;
    let mut out = Outcome {
        http_status,
        protocol,
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
    exec_via(&Dialer::default(), url, protocols, channels, stdin, resize).await
}

/// [`exec`] through `dialer` (for `https://` URLs).
pub async fn exec_via(
    dialer: &Dialer,
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
    let o = session_via(dialer, url, protocols, &opens).await?;
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

/// What one bulk transfer through a forwarded connection did.
#[derive(Debug, Default)]
pub struct Transfer {
    /// The HTTP status of the upgrade (101 when it streamed).
    pub http_status: u16,
    /// Bytes sent on the data stream.
    pub sent: u64,
    /// Bytes received on the data stream.
    pub received: u64,
    /// The error stream's text.
    pub error: String,
    /// From the first byte sent to the last expected byte received.
    pub elapsed: Duration,
}

/// The size of the DATA frames [`port_forward_transfer`] sends: what
/// spdystream makes of `io.Copy`'s 32 KiB reads under kubectl.
const TRANSFER_CHUNK: usize = 32 << 10;

/// One forwarded connection to `port` at `url` for measuring throughput,
/// as `kubectl port-forward` drives one: opens the error stream (and
/// half-closes it at once, as client-go does) and the data stream, sends
/// `send` zero bytes in 32 KiB DATA frames while counting what comes
/// back; the clock stops once `expect` bytes came back on the data
/// stream. Only then does it half-close the data stream (containerd
/// ends a forwarded connection a second after either direction ends, so
/// an early half-close would cut a download short) and read until the
/// server has ended both streams. Nothing is kept in memory, so
/// gigabytes are fine; a data stream ending short of `expect` is an
/// error.
pub async fn port_forward_transfer(
    dialer: &Dialer,
    url: &str,
    port: u16,
    send: u64,
    expect: u64,
) -> anyhow::Result<Transfer> {
    let (mut conn, host, path) = dialer.connect(url).await?;
    let (http_status, _) = upgrade(&mut conn, &host, &path, &["portforward.k8s.io"]).await?;
    let mut t = Transfer {
        http_status,
        ..Default::default()
    };
    if http_status != 101 {
        return Ok(t);
    }
    const ERROR: u32 = 1;
    const DATA: u32 = 3;
    let mut comp = HeaderCompressor::new()?;
    let mut decomp = HeaderDecompressor::new();
    let mut wire = BytesMut::new();
    for (id, kind) in [(ERROR, "error"), (DATA, "data")] {
        let mut h = Headers::new();
        h.insert("streamType", kind);
        h.insert("port", &port.to_string());
        h.insert("requestID", "0");
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
    }
    let fin = |id: u32, wire: &mut BytesMut| {
        frame::encode(
            &Frame::Data {
                stream_id: id,
                fin: true,
                data: Bytes::new(),
            },
            wire,
        )
    };
    fin(ERROR, &mut wire)?;
    conn.write_all(&wire).await?;
    let (mut rd, mut wr) = tokio::io::split(conn);
    let started = tokio::time::Instant::now();
    let (got_all, all_received) = tokio::sync::oneshot::channel::<()>();
    let writing = async {
        let mut full = BytesMut::new();
        frame::encode(
            &Frame::Data {
                stream_id: DATA,
                fin: false,
                data: Bytes::from(vec![0u8; TRANSFER_CHUNK]),
            },
            &mut full,
        )?;
        let mut left = send;
        while left >= TRANSFER_CHUNK as u64 {
            wr.write_all(&full).await?;
            left -= TRANSFER_CHUNK as u64;
        }
        let mut tail = BytesMut::new();
        if left > 0 {
            let n = usize::try_from(left)?;
            frame::encode(
                &Frame::Data {
                    stream_id: DATA,
                    fin: false,
                    data: Bytes::from(vec![0u8; n]),
                },
                &mut tail,
            )?;
            wr.write_all(&tail).await?;
            tail.clear();
        }
        wr.flush().await?;
        // Half-close once everything expected is back (or the reader
        // gave up).
        let _ = all_received.await;
        fin(DATA, &mut tail)?;
        wr.write_all(&tail).await?;
        wr.flush().await?;
        anyhow::Ok(())
    };
    let reading = async {
        let (mut received, mut error) = (0u64, Vec::new());
        let mut elapsed = None;
        let mut got_all = Some(got_all);
        let mut ended = std::collections::HashSet::new();
        let mut buf = BytesMut::with_capacity(256 << 10);
        loop {
            if received >= expect && elapsed.is_none() {
                elapsed = Some(started.elapsed());
                if let Some(tx) = got_all.take() {
                    let _ = tx.send(());
                }
            }
            if ended.contains(&ERROR) && ended.contains(&DATA) {
                break;
            }
            let Some(f) = frame::decode(&mut buf, frame::MAX_PAYLOAD_LEN)? else {
                buf.reserve(128 << 10);
                if rd.read_buf(&mut buf).await? == 0 {
                    break;
                }
                continue;
            };
            match f {
                Frame::Data {
                    stream_id,
                    fin,
                    data,
                } => {
                    match stream_id {
                        DATA => received += data.len() as u64,
                        ERROR => error.extend_from_slice(&data),
                        _ => {}
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
                Frame::GoAway { .. } => break,
                Frame::SynStream { .. } => bail!("the server opened a stream"),
                _ => {}
            }
        }
        // Dropping `got_all` unheard lets the writer half-close anyway.
        drop(got_all);
        anyhow::Ok((received, error, elapsed))
    };
    let (w, r) = tokio::time::timeout(Duration::from_secs(600), async {
        tokio::join!(writing, reading)
    })
    .await
    .context("transfer did not finish within ten minutes")?;
    let (received, error, elapsed) = r?;
    t.error = String::from_utf8_lossy(&error).into_owned();
    let Some(elapsed) = elapsed else {
        bail!(
            "the data stream ended after {received} of {expect} bytes (error stream: {:?})",
            t.error
        );
    };
    w?;
    t.elapsed = elapsed;
    t.sent = send;
    t.received = received;
    Ok(t)
}

/// Opens a remote-command session at `url` (from Exec or Attach) with
/// `channels`, sends `stdin` (without half-closing it), and reads until
/// `until` has come back on stdout; returns the connection still open,
/// for tests about a client that walks away (drop it to vanish without
/// a goodbye).
pub async fn open_until(
    url: &str,
    protocols: &[&str],
    channels: &[&str],
    stdin: &[u8],
    until: &[u8],
) -> anyhow::Result<Box<dyn Io>> {
    let (mut conn, host, path) = Dialer::default().connect(url).await?;
    let (status, _) = upgrade(&mut conn, &host, &path, protocols).await?;
    if status != 101 {
        bail!("upgrade answered {status}");
    }
    let mut comp = HeaderCompressor::new()?;
    let mut decomp = HeaderDecompressor::new();
    let mut wire = BytesMut::new();
    let id_of = |i: usize| 1 + 2 * i as u32;
    for (i, ch) in channels.iter().enumerate() {
        let mut h = Headers::new();
        h.insert("streamType", ch);
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
    let stdin_id = channels
        .iter()
        .position(|c| *c == "stdin")
        .map(id_of)
        .context("a stdin channel")?;
    let stdout_id = channels
        .iter()
        .position(|c| *c == "stdout")
        .map(id_of)
        .context("a stdout channel")?;
    frame::encode(
        &Frame::Data {
            stream_id: stdin_id,
            fin: false,
            data: Bytes::copy_from_slice(stdin),
        },
        &mut wire,
    )?;
    conn.write_all(&wire).await?;
    let mut got = Vec::new();
    let mut buf = BytesMut::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !got.windows(until.len()).any(|w| w == until) {
        let Some(f) = frame::decode(&mut buf, frame::MAX_PAYLOAD_LEN)? else {
            let mut chunk = [0u8; 16 << 10];
            let n = tokio::time::timeout_at(deadline, conn.read(&mut chunk))
                .await
                .context("no answer within a minute")??;
            if n == 0 {
                bail!(
                    "the server left before {:?} came back (got {:?})",
                    String::from_utf8_lossy(until),
                    String::from_utf8_lossy(&got)
                );
            }
            buf.extend_from_slice(&chunk[..n]);
            continue;
        };
        match f {
            Frame::Data {
                stream_id, data, ..
            } if stream_id == stdout_id => got.extend_from_slice(&data),
            Frame::SynReply { header_block, .. } => {
                decomp.decompress(&header_block)?;
            }
            _ => {}
        }
    }
    Ok(conn)
}
