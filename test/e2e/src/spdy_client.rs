//! A small SPDY/3.1 client for the e2e tests, playing the part of
//! `kubectl exec` / `kubectl attach` / `kubectl port-forward` (moby/spdystream
//! under k8s.io/client-go): the HTTP upgrade with protocol negotiation, then
//! a client session that opens streams at any time and reads and writes
//! each on its own ([`Session`], [`Stream`]); on top of it a remote-command
//! session (one stream per channel, stdin sent and half-closed, output and
//! the error channel read until the server ends them), port forwarding
//! with several connections in one session ([`PortForward`]), and the same
//! streams over any byte stream, such as a WebSocket tunnel
//! ([`run_streams`]). Built on the daemon's own frame and header codecs,
//! which are unit-tested against fixtures made by an independent zlib.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::{Bytes, BytesMut};
use carapace_cri::streaming::spdy::frame::{self, Frame, RstStatus, SETTINGS_INITIAL_WINDOW_SIZE};
use carapace_cri::streaming::spdy::headers::{HeaderCompressor, HeaderDecompressor};
use carapace_cri::streaming::spdy::{Headers, DEFAULT_WINDOW};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};

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

/// Dials `url` through `dialer` and asks to upgrade the connection to
/// SPDY/3.1 offering `protocols`: (connection, HTTP status, the protocol
/// the server chose).
async fn dial(
    dialer: &Dialer,
    url: &str,
    protocols: &[&str],
) -> anyhow::Result<(Box<dyn Io>, u16, String)> {
    let (mut conn, host, path) = dialer.connect(url).await?;
    let (status, protocol) = upgrade(&mut conn, &host, &path, protocols).await?;
    Ok((conn, status, protocol))
}

// ---- frames ---------------------------------------------------------------

/// Encodes a SYN_STREAM opening `stream_id` with `headers` onto `wire`.
/// `comp` is the connection's one compression context, so streams must go
/// out in the order they were encoded.
fn encode_syn<'a>(
    comp: &mut HeaderCompressor,
    stream_id: u32,
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    wire: &mut BytesMut,
) -> anyhow::Result<()> {
    let mut h = Headers::new();
    for (k, v) in headers {
        h.insert(k, v);
    }
    frame::encode(
        &Frame::SynStream {
            stream_id,
            associated_to: 0,
            priority: 0,
            slot: 0,
            fin: false,
            unidirectional: false,
            header_block: comp.compress(&h)?,
        },
        wire,
    )?;
    Ok(())
}

/// Encodes a DATA frame (`fin`: the last on its stream) onto `wire`.
fn encode_data(stream_id: u32, fin: bool, data: Bytes, wire: &mut BytesMut) -> anyhow::Result<()> {
    frame::encode(
        &Frame::Data {
            stream_id,
            fin,
            data,
        },
        wire,
    )?;
    Ok(())
}

/// Reads SPDY frames off a connection.
#[derive(Default)]
struct FrameReader {
    buf: BytesMut,
}

impl FrameReader {
    /// The next frame, or None once the server has closed the connection.
    /// Cancel-safe: nothing read is lost if the future is dropped.
    async fn next<R: AsyncRead + Unpin>(&mut self, rd: &mut R) -> anyhow::Result<Option<Frame>> {
        loop {
            if let Some(f) = frame::decode(&mut self.buf, frame::MAX_PAYLOAD_LEN)? {
                return Ok(Some(f));
            }
            self.buf.reserve(128 << 10);
            if rd.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }
}

// ---- the client session ---------------------------------------------------

/// How a client session treats SPDY/3.1 flow control.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Flow {
    /// As moby/spdystream under kubectl, kubelet and crictl: never waits
    /// for the server's flow-control windows and never grants any back.
    #[default]
    LikeSpdystream,
    /// As SPDY/3.1 prescribes: sends only within the server's stream and
    /// session windows (64 KiB each until the server grants more with
    /// WINDOW_UPDATE) and grants back what it has read; a server that
    /// never grants window stalls every stream after its first 64 KiB.
    Windowed,
}

/// The size of the DATA frames a stream's writes are cut into: what
/// spdystream makes of `io.Copy`'s 32 KiB reads under kubectl.
const WRITE_CHUNK: usize = 32 << 10;

/// What the session hands a stream's reader.
enum Inbound {
    Data(Bytes),
    /// The server half-closed or reset the stream.
    End,
}

/// A stream's sending side.
struct Outgoing {
    /// The server's window for it (only counted under [`Flow::Windowed`]).
    window: i64,
    /// The server reset it.
    reset: Option<RstStatus>,
}

/// What the session and its streams share.
struct Shared {
    flow: Flow,
    state: Mutex<State>,
    /// Encoded frames for the connection, in order.
    out: mpsc::UnboundedSender<Bytes>,
    /// Woken when a window grows or the session ends.
    window_changed: Notify,
}

struct State {
    /// The connection's one header compression context.
    comp: HeaderCompressor,
    next_id: u32,
    /// Readers of the streams the server may still send on.
    inbound: HashMap<u32, mpsc::UnboundedSender<Inbound>>,
    /// Streams this end may still send on.
    outgoing: HashMap<u32, Outgoing>,
    /// The server's session window.
    session_window: i64,
    /// The server's initial stream window.
    initial_window: i64,
    /// Why nothing more can be written, once that is so.
    write_error: Option<String>,
    /// How the session ended: None while it runs.
    over: Option<Result<(), String>>,
}

impl Shared {
    fn new(flow: Flow) -> anyhow::Result<(Arc<Self>, mpsc::UnboundedReceiver<Bytes>)> {
        let (out, out_rx) = mpsc::unbounded_channel();
        let shared = Shared {
            flow,
            state: Mutex::new(State {
                comp: HeaderCompressor::new()?,
                next_id: 1,
                inbound: HashMap::new(),
                outgoing: HashMap::new(),
                session_window: i64::from(DEFAULT_WINDOW),
                initial_window: i64::from(DEFAULT_WINDOW),
                write_error: None,
                over: None,
            }),
            out,
            window_changed: Notify::new(),
        };
        Ok((Arc::new(shared), out_rx))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues one encoded frame for the connection.
    fn send(&self, wire: BytesMut) -> anyhow::Result<()> {
        self.out
            .send(wire.freeze())
            .map_err(|_| anyhow!("the session is over"))
    }

    /// Queues `f` for the connection.
    fn queue(&self, f: &Frame) -> anyhow::Result<()> {
        let mut wire = BytesMut::new();
        frame::encode(f, &mut wire)?;
        self.send(wire)
    }

    /// Opens the next stream with `headers`.
    fn open(self: &Arc<Self>, headers: &[(&str, &str)]) -> anyhow::Result<Stream> {
        let mut st = self.lock();
        if let Some(over) = &st.over {
            bail!("the session is over ({over:?})");
        }
        let id = st.next_id;
        st.next_id += 2;
        let mut wire = BytesMut::new();
        encode_syn(&mut st.comp, id, headers.iter().copied(), &mut wire)?;
        let (tx, rx) = mpsc::unbounded_channel();
        st.inbound.insert(id, tx);
        let window = st.initial_window;
        st.outgoing.insert(
            id,
            Outgoing {
                window,
                reset: None,
            },
        );
        // Queued under the lock: SYN_STREAMs leave in the order of their
        // IDs and of the compression context.
        self.send(wire)?;
        drop(st);
        Ok(Stream {
            id,
            shared: self.clone(),
            rx: tokio::sync::Mutex::new(rx),
        })
    }

    /// Takes up to `want` bytes of window for stream `id`, waiting while
    /// it is exhausted (under [`Flow::Windowed`] only).
    async fn take_window(&self, id: u32, want: usize) -> anyhow::Result<usize> {
        loop {
            // Made before looking, so a change in between still wakes it.
            let changed = self.window_changed.notified();
            {
                let mut guard = self.lock();
                let st = &mut *guard;
                if let Some(e) = &st.write_error {
                    bail!("stream {id}: cannot write: {e}");
                }
                if let Some(over) = &st.over {
                    bail!("stream {id}: the session is over ({over:?})");
                }
                let s = st
                    .outgoing
                    .get_mut(&id)
                    .with_context(|| format!("stream {id} is closed for writing"))?;
                if let Some(status) = s.reset {
                    bail!("the server reset stream {id} ({status})");
                }
                if self.flow == Flow::LikeSpdystream {
                    return Ok(want);
                }
                let n = i64::try_from(want)?.min(s.window).min(st.session_window);
                if n > 0 {
                    s.window -= n;
                    st.session_window -= n;
                    return Ok(usize::try_from(n)?);
                }
            }
            changed.await;
        }
    }

    /// Data (and perhaps the end) from the server on stream `id`.
    fn deliver(&self, id: u32, data: Bytes, fin: bool) {
        let mut st = self.lock();
        if !data.is_empty() {
            if let Some(tx) = st.inbound.get(&id) {
                // A reader that went away no longer cares.
                let _ = tx.send(Inbound::Data(data));
            }
        }
        if fin {
            if let Some(tx) = st.inbound.remove(&id) {
                let _ = tx.send(Inbound::End);
            }
        }
    }

    /// The server reset stream `id`.
    fn reset(&self, id: u32, status: RstStatus) {
        let mut st = self.lock();
        if let Some(tx) = st.inbound.remove(&id) {
            let _ = tx.send(Inbound::End);
        }
        if let Some(s) = st.outgoing.get_mut(&id) {
            s.reset = Some(status);
        }
        drop(st);
        self.window_changed.notify_waiters();
    }

    /// The server granted `delta` more window (stream 0: the session's).
    fn grow_window(&self, id: u32, delta: u32) {
        let mut st = self.lock();
        if id == 0 {
            st.session_window += i64::from(delta);
        } else if let Some(s) = st.outgoing.get_mut(&id) {
            s.window += i64::from(delta);
        }
        drop(st);
        self.window_changed.notify_waiters();
    }

    /// The server's SETTINGS `INITIAL_WINDOW_SIZE`: every stream window
    /// moves by the difference.
    fn set_initial_window(&self, size: u32) {
        let mut st = self.lock();
        let shift = i64::from(size) - st.initial_window;
        st.initial_window = i64::from(size);
        for s in st.outgoing.values_mut() {
            s.window += shift;
        }
        drop(st);
        self.window_changed.notify_waiters();
    }

    /// The session is over (`Ok`: the server closed the connection or sent
    /// GOAWAY); streams not yet ended end now.
    fn end(&self, how: anyhow::Result<()>) {
        let mut st = self.lock();
        if st.over.is_none() {
            st.over = Some(how.map_err(|e| format!("{e:#}")));
        }
        st.inbound.clear();
        drop(st);
        self.window_changed.notify_waiters();
    }
}

/// Does a session's I/O on `conn` until the server closes it, sends
/// GOAWAY or breaks the protocol: writes the queued frames, hands each
/// stream what the server sends on it, answers PINGs and keeps the
/// server's windows. Then ends every stream left.
async fn drive<T: AsyncRead + AsyncWrite>(
    conn: T,
    shared: Arc<Shared>,
    mut out: mpsc::UnboundedReceiver<Bytes>,
) {
    let (mut rd, mut wr) = tokio::io::split(conn);
    let writing = async {
        while let Some(first) = out.recv().await {
            // Whatever else is queued goes out in the same write.
            let mut batch = BytesMut::from(&first[..]);
            while batch.len() < 256 << 10 {
                let Ok(more) = out.try_recv() else { break };
                batch.extend_from_slice(&more);
            }
            let written = async {
                wr.write_all(&batch).await?;
                wr.flush().await
            };
            if let Err(e) = written.await {
                // The server may still have things to say: keep reading.
                shared.lock().write_error = Some(e.to_string());
                shared.window_changed.notify_waiters();
                break;
            }
        }
        std::future::pending::<Infallible>().await
    };
    let reading = async {
        let mut frames = FrameReader::default();
        let mut decomp = HeaderDecompressor::new();
        while let Some(f) = frames.next(&mut rd).await? {
            match f {
                Frame::Data {
                    stream_id,
                    fin,
                    data,
                } => shared.deliver(stream_id, data, fin),
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
                    // Kept in step with the server's compression context.
                    decomp.decompress(&header_block)?;
                    shared.deliver(stream_id, Bytes::new(), fin);
                }
                Frame::RstStream { stream_id, status } => shared.reset(stream_id, status),
                Frame::Ping { id } => shared.queue(&Frame::Ping { id })?,
                Frame::WindowUpdate { stream_id, delta } => shared.grow_window(stream_id, delta),
                Frame::Settings { entries, .. } => {
                    for s in entries {
                        if s.id == SETTINGS_INITIAL_WINDOW_SIZE {
                            shared.set_initial_window(s.value);
                        }
                    }
                }
                Frame::GoAway { .. } => break,
                Frame::SynStream { .. } => bail!("the server opened a stream"),
                _ => {}
            }
        }
        anyhow::Ok(())
    };
    let how = tokio::select! {
        r = reading => r,
        never = writing => match never {},
    };
    shared.end(how);
}

/// One stream of a client session: written and read independently of the
/// session's other streams (and of each other: both take `&self`).
pub struct Stream {
    id: u32,
    shared: Arc<Shared>,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Inbound>>,
}

impl Stream {
    /// The stream's ID.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Sends `data` in DATA frames of at most 32 KiB (waiting for window
    /// under [`Flow::Windowed`]).
    pub async fn write(&self, data: &[u8]) -> anyhow::Result<()> {
        let mut rest = data;
        while !rest.is_empty() {
            let want = rest.len().min(WRITE_CHUNK);
            let n = self.shared.take_window(self.id, want).await?;
            let mut wire = BytesMut::new();
            encode_data(
                self.id,
                false,
                Bytes::copy_from_slice(&rest[..n]),
                &mut wire,
            )?;
            self.shared.send(wire)?;
            rest = &rest[n..];
        }
        Ok(())
    }

    /// Half-closes the stream: this end sends nothing more on it.
    pub fn close_write(&self) -> anyhow::Result<()> {
        let mut st = self.shared.lock();
        let s = st
            .outgoing
            .remove(&self.id)
            .with_context(|| format!("stream {} is closed for writing", self.id))?;
        if let Some(status) = s.reset {
            bail!("the server reset stream {} ({status})", self.id);
        }
        let mut wire = BytesMut::new();
        encode_data(self.id, true, Bytes::new(), &mut wire)?;
        self.shared.send(wire)
    }

    /// The next bytes the server sent on the stream; None once it ended
    /// the stream (half-close or reset) or the connection.
    pub async fn read(&self) -> anyhow::Result<Option<Bytes>> {
        let got = self.rx.lock().await.recv().await;
        self.received(got)
    }

    /// What a reader got: data is granted back as window under
    /// [`Flow::Windowed`]; a session that failed is an error.
    fn received(&self, got: Option<Inbound>) -> anyhow::Result<Option<Bytes>> {
        match got {
            Some(Inbound::Data(data)) => {
                if self.shared.flow == Flow::Windowed {
                    let delta = u32::try_from(data.len())?;
                    for stream_id in [self.id, 0] {
                        // The session may be over: nothing to grant then.
                        let _ = self.shared.queue(&Frame::WindowUpdate { stream_id, delta });
                    }
                }
                Ok(Some(data))
            }
            Some(Inbound::End) => Ok(None),
            None => match &self.shared.lock().over {
                Some(Err(e)) => bail!("stream {}: the session failed: {e}", self.id),
                _ => Ok(None),
            },
        }
    }

    /// Everything the server sends on the stream until it ends it.
    pub async fn read_to_end(&self) -> anyhow::Result<Vec<u8>> {
        let mut all = Vec::new();
        while let Some(data) = self.read().await? {
            all.extend_from_slice(&data);
        }
        Ok(all)
    }

    /// Reads into `got` until `done(got)` holds; an error if the server
    /// ends the stream first. For output that never ends by itself (an
    /// attach): the caller bounds the wait.
    pub async fn read_until(
        &self,
        got: &mut Vec<u8>,
        done: impl Fn(&[u8]) -> bool,
    ) -> anyhow::Result<()> {
        while !done(got) {
            let Some(data) = self.read().await? else {
                bail!(
                    "stream {} ended after {} bytes: {:?}",
                    self.id,
                    got.len(),
                    String::from_utf8_lossy(got)
                );
            };
            got.extend_from_slice(&data);
        }
        Ok(())
    }

    /// What has arrived so far, without waiting.
    fn take_arrived(&self) -> anyhow::Result<Vec<u8>> {
        let mut all = Vec::new();
        let Ok(mut rx) = self.rx.try_lock() else {
            return Ok(all);
        };
        while let Ok(got) = rx.try_recv() {
            if let Some(data) = self.received(Some(got))? {
                all.extend_from_slice(&data);
            }
        }
        Ok(all)
    }
}

/// A client session on a connection of its own, its I/O done by a task
/// of its own, so that streams can be opened at any time and each read
/// and written independently (kubectl port-forward's concurrent
/// connections, an attach that is read for a while). Dropping it drops
/// the connection without a goodbye (no GOAWAY), as a killed client
/// would; its streams end then.
pub struct Session {
    /// The HTTP status of the upgrade (101).
    pub http_status: u16,
    /// The protocol the server chose.
    pub protocol: String,
    shared: Arc<Shared>,
    driver: tokio::task::JoinHandle<()>,
}

impl Session {
    /// Upgrades at `url` offering `protocols`; an error unless the server
    /// switches protocols.
    pub async fn connect(url: &str, protocols: &[&str], flow: Flow) -> anyhow::Result<Session> {
        Self::connect_via(&Dialer::default(), url, protocols, flow).await
    }

    /// [`Session::connect`] through `dialer` (for `https://` URLs).
    pub async fn connect_via(
        dialer: &Dialer,
        url: &str,
        protocols: &[&str],
        flow: Flow,
    ) -> anyhow::Result<Session> {
        let (conn, http_status, protocol) = dial(dialer, url, protocols).await?;
        if http_status != 101 {
            bail!("the upgrade was answered {http_status}");
        }
        let (shared, out) = Shared::new(flow)?;
        let driver = tokio::spawn(drive(conn, shared.clone(), out));
        Ok(Session {
            http_status,
            protocol,
            shared,
            driver,
        })
    }

    /// Opens a stream with `headers`.
    pub fn open(&self, headers: &[(&str, &str)]) -> anyhow::Result<Stream> {
        self.shared.open(headers)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.driver.abort();
        self.shared
            .end(Err(anyhow!("the client dropped the session")));
    }
}

// ---- remote command -------------------------------------------------------

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
    let (mut conn, http_status, protocol) = dial(dialer, url, protocols).await?;
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
    let (shared, out) = Shared::new(Flow::LikeSpdystream)?;
    let work = async {
        let mut opened = Vec::new();
        for s in streams {
            let headers: Vec<(&str, &str)> = s
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            opened.push(shared.open(&headers)?);
        }
        for (s, o) in streams.iter().zip(&opened) {
            o.write(&s.send).await?;
            if s.fin {
                o.close_write()?;
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut received = Vec::new();
        for (s, o) in streams.iter().zip(&opened) {
            received.push(if s.wait {
                tokio::time::timeout_at(deadline, o.read_to_end())
                    .await
                    .context("server did not finish within a minute")??
            } else {
                Vec::new()
            });
        }
        // What came meanwhile on the streams nobody waited for.
        for ((s, o), r) in streams.iter().zip(&opened).zip(&mut received) {
            if !s.wait {
                *r = o.take_arrived()?;
            }
        }
        anyhow::Ok(received)
    };
    // The session's I/O runs alongside until the work is done.
    let io = async {
        drive(conn, shared.clone(), out).await;
        std::future::pending::<Infallible>().await
    };
    tokio::select! {
        r = work => r,
        never = io => match never {},
    }
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

/// A remote-command session at `url` (from Exec or Attach) whose
/// `channels` are open, `stdin` sent (without half-closing it), once
/// `until` has come back on stdout; the session is left open, for tests
/// about a client that walks away (drop it to vanish without a goodbye).
pub async fn open_until(
    url: &str,
    protocols: &[&str],
    channels: &[&str],
    stdin: &[u8],
    until: &[u8],
) -> anyhow::Result<Session> {
    let session = Session::connect(url, protocols, Flow::LikeSpdystream).await?;
    let mut streams = HashMap::new();
    for ch in channels {
        streams.insert(*ch, session.open(&[("streamType", ch)])?);
    }
    streams
        .get("stdin")
        .context("a stdin channel")?
        .write(stdin)
        .await?;
    let stdout = streams.get("stdout").context("a stdout channel")?;
    let mut got = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(60),
        stdout.read_until(&mut got, |g| g.windows(until.len()).any(|w| w == until)),
    )
    .await
    .context("no answer within a minute")?
    .with_context(|| {
        format!(
            "the server left before {:?} came back",
            String::from_utf8_lossy(until)
        )
    })?;
    Ok(session)
}

// ---- port forwarding ------------------------------------------------------

/// The protocol of port forwarding over SPDY.
const PORT_FORWARD: &str = "portforward.k8s.io";

/// The headers of one stream of a forwarded connection.
fn forward_headers(kind: &str, port: u16, request_id: u32) -> Vec<(String, String)> {
    vec![
        ("streamType".to_string(), kind.to_string()),
        ("port".to_string(), port.to_string()),
        ("requestID".to_string(), request_id.to_string()),
    ]
}

/// One forwarded connection at `url` (from the CRI PortForward call) to
/// `port`: sends `request`, half-closes, returns (HTTP status, what came
/// back on the data stream, the error stream's text).
pub async fn port_forward(
    url: &str,
    port: u16,
    request: &[u8],
) -> anyhow::Result<(u16, Vec<u8>, String)> {
    let mut o = session(url, &[PORT_FORWARD], &port_forward_streams(port, request)).await?;
    let data = std::mem::take(&mut o.received[1]);
    let error = String::from_utf8_lossy(&o.received[0]).into_owned();
    Ok((o.http_status, data, error))
}

/// The error and data streams of one forwarded connection to `port` that
/// sends `request` and half-closes, as client-go opens them.
pub fn port_forward_streams(port: u16, request: &[u8]) -> [Open; 2] {
    [
        Open {
            headers: forward_headers("error", port, 0),
            send: Vec::new(),
            fin: true,
            wait: true,
        },
        Open {
            headers: forward_headers("data", port, 0),
            send: request.to_vec(),
            fin: true,
            wait: true,
        },
    ]
}

/// A port-forward session as `kubectl port-forward` keeps one: one
/// PortForward URL, one connection, and a pair of streams (error, data)
/// per local connection that arrives, told apart by their `requestID`.
pub struct PortForward {
    session: Session,
    next_request: u32,
}

/// One forwarded connection of a [`PortForward`] session.
pub struct Forwarded {
    /// The `requestID` of its streams.
    pub request_id: u32,
    /// Where the server reports a failure (this end half-closed it at
    /// once, as client-go does).
    pub error: Stream,
    /// The connection's bytes, both ways.
    pub data: Stream,
}

impl PortForward {
    /// Upgrades at `url` to `portforward.k8s.io`.
    pub async fn connect(url: &str, flow: Flow) -> anyhow::Result<PortForward> {
        let session = Session::connect(url, &[PORT_FORWARD], flow).await?;
        Ok(PortForward {
            session,
            next_request: 0,
        })
    }

    /// Opens one stream of `kind` ("error" or "data") for `port` and
    /// `request_id` on its own: for tests of streams that do not pair up.
    pub fn stream(&self, kind: &str, port: u16, request_id: u32) -> anyhow::Result<Stream> {
        let headers = forward_headers(kind, port, request_id);
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.session.open(&headers)
    }

    /// The error stream (half-closed at once) of the next connection.
    pub fn error_stream(&mut self, port: u16) -> anyhow::Result<(u32, Stream)> {
        let request_id = self.next_request;
        self.next_request += 1;
        let error = self.stream("error", port, request_id)?;
        error.close_write()?;
        Ok((request_id, error))
    }

    /// A new connection to `port`, opened as client-go opens one: the
    /// error stream, then the data stream, with the next request ID.
    pub fn forward(&mut self, port: u16) -> anyhow::Result<Forwarded> {
        let (request_id, error) = self.error_stream(port)?;
        let data = self.stream("data", port, request_id)?;
        Ok(Forwarded {
            request_id,
            error,
            data,
        })
    }

    /// `n` new connections to `port` whose streams arrive interleaved, as
    /// the goroutines of concurrent client-go connections may send them:
    /// every error stream first, then the data streams in reverse order.
    /// Only their `requestID`s pair them up.
    pub fn forward_interleaved(&mut self, port: u16, n: usize) -> anyhow::Result<Vec<Forwarded>> {
        let errors = (0..n)
            .map(|_| self.error_stream(port))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut data = errors
            .iter()
            .rev()
            .map(|(id, _)| self.stream("data", port, *id))
            .collect::<anyhow::Result<Vec<_>>>()?;
        data.reverse();
        Ok(errors
            .into_iter()
            .zip(data)
            .map(|((request_id, error), data)| Forwarded {
                request_id,
                error,
                data,
            })
            .collect())
    }
}

impl Forwarded {
    /// Sends `payload` and half-closes while reading what comes back:
    /// (the data stream's bytes, the error stream's text), once the server
    /// has ended both.
    pub async fn round_trip(&self, payload: &[u8]) -> anyhow::Result<(Vec<u8>, String)> {
        let send = async {
            self.data.write(payload).await?;
            self.data.close_write()
        };
        let (sent, data, error) =
            tokio::join!(send, self.data.read_to_end(), self.error.read_to_end());
        sent?;
        Ok((data?, String::from_utf8_lossy(&error?).into_owned()))
    }
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
    let (mut conn, http_status, _) = dial(dialer, url, &[PORT_FORWARD]).await?;
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
        let headers = forward_headers(kind, port, 0);
        encode_syn(
            &mut comp,
            id,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            &mut wire,
        )?;
    }
    encode_data(ERROR, true, Bytes::new(), &mut wire)?;
    conn.write_all(&wire).await?;
    let (mut rd, mut wr) = tokio::io::split(conn);
    let started = tokio::time::Instant::now();
    let (got_all, all_received) = tokio::sync::oneshot::channel::<()>();
    let writing = async {
        let mut full = BytesMut::new();
        encode_data(DATA, false, Bytes::from(vec![0u8; WRITE_CHUNK]), &mut full)?;
        let mut left = send;
        while left >= WRITE_CHUNK as u64 {
            wr.write_all(&full).await?;
            left -= WRITE_CHUNK as u64;
        }
        let mut tail = BytesMut::new();
        if left > 0 {
            let n = usize::try_from(left)?;
            encode_data(DATA, false, Bytes::from(vec![0u8; n]), &mut tail)?;
            wr.write_all(&tail).await?;
            tail.clear();
        }
        wr.flush().await?;
        // Half-close once everything expected is back (or the reader
        // gave up).
        let _ = all_received.await;
        encode_data(DATA, true, Bytes::new(), &mut tail)?;
        wr.write_all(&tail).await?;
        wr.flush().await?;
        anyhow::Ok(())
    };
    let reading = async {
        let (mut received, mut error) = (0u64, Vec::new());
        let mut elapsed = None;
        let mut got_all = Some(got_all);
        let mut ended = std::collections::HashSet::new();
        let mut frames = FrameReader::default();
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
            let Some(f) = frames.next(&mut rd).await? else {
                break;
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
