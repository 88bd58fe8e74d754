//! The server side of a SPDY/3.1 session over an upgraded connection: a
//! task that reads frames and dispatches them, and one that writes what
//! the streams and the dispatcher queue, in order.
//!
//! Kubernetes clients open every stream themselves, so this end only
//! accepts: each SYN_STREAM is answered with an empty SYN_REPLY and handed
//! to [`Session::accept`]. PINGs are echoed, SETTINGS and WINDOW_UPDATE
//! feed flow control, and GOAWAY or the end of the transport ends every
//! stream. A frame that breaks the protocol ends the session with GOAWAY
//! `PROTOCOL_ERROR`.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::frame::{self, Frame, GoAwayStatus, RstStatus, StreamId, SETTINGS_INITIAL_WINDOW_SIZE};
use super::headers::{HeaderCompressor, HeaderDecompressor, Headers};
use super::shared::{Inbound, Outbound, Shared, INBOUND_BUFFER};
use super::stream::{SpdyStream, StreamReader, StreamWriter};
use super::SpdyError;

/// Streams opened by the client but not yet accepted, before the session
/// stops reading (and so stops the client) until the caller catches up.
const ACCEPT_BACKLOG: usize = 16;
/// How many bytes the writer gathers from the queue into one write.
const WRITE_BATCH: usize = 64 * 1024;
/// How much the reader asks the transport for at a time.
const READ_CHUNK: usize = 16 * 1024;

/// How a session treats its peer.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Make stream writers wait for the peer's flow-control window (64 KiB
    /// per stream and per session until the peer grants more), as SPDY/3.1
    /// requires.
    ///
    /// Off by default because the clients this session exists for do not
    /// implement SPDY/3.1 flow control: moby/spdystream, under kubectl,
    /// kubelet and crictl, never sends WINDOW_UPDATE and ignores the ones
    /// it receives. Enforcing windows against it would stall every stream
    /// after its first 64 KiB (`kubectl cp` or a large `exec` output would
    /// hang). With it off, windows are still tracked and the transport's
    /// own backpressure still bounds memory. The window this end advertises
    /// is granted back as its consumers read either way.
    pub enforce_peer_window: bool,
    /// The largest frame payload accepted from the peer; a larger one ends
    /// the session. Defaults to what the 24-bit length field allows,
    /// because spdystream writes each `Write` call as one DATA frame.
    pub max_frame_payload: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            enforce_peer_window: false,
            max_frame_payload: frame::MAX_PAYLOAD_LEN,
        }
    }
}

/// A running SPDY/3.1 server session.
///
/// Dropping it stops accepting streams (later ones are refused) but keeps
/// the session running for the streams already handed out, until the
/// client goes away or [`close`](Self::close) is called first.
#[derive(Debug)]
pub struct Session {
    incoming: mpsc::Receiver<SpdyStream>,
    shared: Arc<Shared>,
    driver: JoinHandle<Result<(), SpdyError>>,
}

impl Session {
    /// Starts serving SPDY/3.1 on an already upgraded `transport`.
    ///
    /// Spawns the session's task, so it must be called within a tokio
    /// runtime.
    pub fn start<T>(transport: T, config: SessionConfig) -> Result<Self, SpdyError>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let compressor = HeaderCompressor::new()?;
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::new(out_tx, config.enforce_peer_window));
        let (accept_tx, incoming) = mpsc::channel(ACCEPT_BACKLOG);
        let (read_half, write_half) = tokio::io::split(transport);
        let dispatcher = Dispatcher {
            shared: shared.clone(),
            headers: HeaderDecompressor::new(),
            accept: accept_tx,
            last_stream_id: 0,
        };
        let driver = tokio::spawn(drive(
            read_half,
            write_half,
            out_rx,
            compressor,
            dispatcher,
            config.max_frame_payload,
        ));
        Ok(Self {
            incoming,
            shared,
            driver,
        })
    }

    /// The next stream the client opened; `None` once the session is over.
    pub async fn accept(&mut self) -> Option<SpdyStream> {
        self.incoming.recv().await
    }

    /// Ends the session from this end: sends GOAWAY, flushes what the
    /// streams have queued, and closes the transport. Streams still open
    /// end with [`SpdyError::SessionClosed`].
    pub fn close(&self) {
        self.shared.request_close();
    }

    /// Waits for the session to end; `Ok` for a normal end (GOAWAY or the
    /// transport closing between frames, or [`close`](Self::close)), the
    /// reason otherwise.
    pub async fn wait(self) -> Result<(), SpdyError> {
        drop(self.incoming);
        self.driver.await.unwrap_or(Err(SpdyError::SessionClosed))
    }
}

/// Runs both halves until the session ends, then ends every stream.
async fn drive<R, W>(
    read_half: R,
    write_half: W,
    out_rx: mpsc::UnboundedReceiver<Outbound>,
    compressor: HeaderCompressor,
    dispatcher: Dispatcher,
    max_payload: usize,
) -> Result<(), SpdyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let shared = dispatcher.shared.clone();
    let reading = dispatcher.run(read_half, max_payload);
    let writing = async {
        let result = write_loop(write_half, out_rx, compressor, &shared).await;
        if result.is_err() {
            // Nothing more can reach the peer: stop reading too.
            shared.end();
            shared.shutdown.notify_one();
        }
        result
    };
    let (read_result, write_result) = tokio::join!(reading, writing);
    if let Err(e) = &read_result {
        tracing::debug!(error = %e, "SPDY session ended");
    }
    read_result.and(write_result)
}

/// Writes queued frames until told to close, batching what is ready.
async fn write_loop<W: AsyncWrite + Unpin>(
    mut io: W,
    mut rx: mpsc::UnboundedReceiver<Outbound>,
    mut compressor: HeaderCompressor,
    shared: &Shared,
) -> Result<(), SpdyError> {
    let mut buf = BytesMut::with_capacity(WRITE_BATCH);
    let mut closing = false;
    while !closing {
        let Some(first) = rx.recv().await else { break };
        let mut next = Some(first);
        let mut budget = 0;
        while let Some(item) = next.take() {
            match item {
                Outbound::Close => closing = true,
                Outbound::Frame(f) => frame::encode(&f, &mut buf)?,
                Outbound::Reply { stream_id, headers } => {
                    let header_block = compressor.compress(&headers)?;
                    let reply = Frame::SynReply {
                        stream_id,
                        fin: false,
                        header_block,
                    };
                    frame::encode(&reply, &mut buf)?;
                }
                Outbound::Data {
                    stream_id,
                    fin,
                    data,
                    budget: b,
                } => {
                    budget += b;
                    frame::encode(
                        &Frame::Data {
                            stream_id,
                            fin,
                            data,
                        },
                        &mut buf,
                    )?;
                }
            }
            if !closing && buf.len() < WRITE_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !buf.is_empty() {
            io.write_all(&buf).await?;
            io.flush().await?;
            buf.clear();
        }
        shared.release_budget(budget);
    }
    io.shutdown().await?;
    Ok(())
}

/// Whether the session goes on after a frame.
enum Next {
    Continue,
    End,
}

/// The reading half: parses frames and acts on them.
struct Dispatcher {
    shared: Arc<Shared>,
    headers: HeaderDecompressor,
    accept: mpsc::Sender<SpdyStream>,
    /// The highest stream ID the client has opened.
    last_stream_id: StreamId,
}

impl Dispatcher {
    /// Reads and dispatches frames until GOAWAY, the end of the transport,
    /// a local close or an error; sends GOAWAY where the peer should hear
    /// why.
    async fn run<R: AsyncRead + Unpin>(
        mut self,
        mut io: R,
        max_payload: usize,
    ) -> Result<(), SpdyError> {
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        let shared = self.shared.clone();
        let result = loop {
            let step = async {
                while let Some(frame) = frame::decode(&mut buf, max_payload)? {
                    if let Next::End = self.dispatch(frame).await? {
                        return Ok(Next::End);
                    }
                }
                buf.reserve(READ_CHUNK);
                if io.read_buf(&mut buf).await? == 0 {
                    if buf.is_empty() {
                        return Ok(Next::End);
                    }
                    return Err(SpdyError::TruncatedFrame);
                }
                Ok(Next::Continue)
            };
            tokio::select! {
                biased;
                () = shared.shutdown.notified() => break Ok(()),
                step = step => match step {
                    Ok(Next::Continue) => {}
                    Ok(Next::End) => break Ok(()),
                    Err(e) => break Err(e),
                },
            }
        };
        let status = match &result {
            Ok(()) if self.shared.close_requested() => Some(GoAwayStatus::OK),
            Ok(()) | Err(SpdyError::Io(_)) | Err(SpdyError::TruncatedFrame) => None,
            Err(_) => Some(GoAwayStatus::PROTOCOL_ERROR),
        };
        if let Some(status) = status {
            self.shared.queue_frame(Frame::GoAway {
                last_good_stream_id: self.last_stream_id,
                status,
            });
        }
        // Streams end before `accept` reports the end (when `self` and
        // its sender drop), so a caller that sees `None` finds them ended.
        self.shared.end();
        // After anything already queued, including the GOAWAY.
        let _ = self.shared.queue(Outbound::Close);
        result
    }

    async fn dispatch(&mut self, frame: Frame) -> Result<Next, SpdyError> {
        match frame {
            Frame::SynStream {
                stream_id,
                fin,
                unidirectional,
                header_block,
                ..
            } => {
                // Inflate even a block about to be refused: the zlib
                // context must see every block.
                let headers = self.headers.decompress(&header_block)?;
                self.open(stream_id, headers, fin, unidirectional).await?;
            }
            Frame::SynReply {
                stream_id,
                header_block,
                ..
            } => {
                self.headers.decompress(&header_block)?;
                // This end opens no streams, so there is nothing to reply to.
                self.shared
                    .reset_stream(stream_id, RstStatus::INVALID_STREAM);
            }
            Frame::Headers {
                stream_id,
                fin,
                header_block,
            } => {
                self.headers.decompress(&header_block)?;
                if fin {
                    self.remote_fin(stream_id);
                }
            }
            Frame::Data {
                stream_id,
                fin,
                data,
            } => self.data(stream_id, fin, data).await?,
            Frame::RstStream { stream_id, status } => {
                if let Some(entry) = self.shared.take_inbound(stream_id) {
                    let _ = entry.tx.send(Inbound::Reset(status));
                }
                self.shared.with_windows(|w| w.reset(stream_id, status));
            }
            Frame::Settings { entries, .. } => {
                for setting in entries {
                    if setting.id == SETTINGS_INITIAL_WINDOW_SIZE {
                        self.shared.with_windows(|w| w.set_initial(setting.value));
                    }
                }
            }
            Frame::Ping { id } => {
                // Odd IDs are the client's own pings; even ones would be
                // answers to ours, and this end sends none.
                if id % 2 == 1 {
                    self.shared.queue_frame(Frame::Ping { id });
                }
            }
            Frame::GoAway { .. } => return Ok(Next::End),
            Frame::WindowUpdate { stream_id, delta } => {
                let applied = self.shared.with_windows(|w| w.update(stream_id, delta));
                if applied.is_err() {
                    if stream_id == 0 {
                        return Err(SpdyError::Protocol(
                            "WINDOW_UPDATE overflows the session window".into(),
                        ));
                    }
                    self.shared
                        .reset_stream(stream_id, RstStatus::FLOW_CONTROL_ERROR);
                }
            }
            Frame::Unknown { frame_type, .. } => {
                tracing::debug!(frame_type, "ignoring unknown SPDY control frame");
            }
        }
        Ok(Next::Continue)
    }

    /// Accepts (or refuses) a stream the client opened.
    async fn open(
        &mut self,
        stream_id: StreamId,
        headers: Headers,
        fin: bool,
        unidirectional: bool,
    ) -> Result<(), SpdyError> {
        if stream_id % 2 == 0 {
            return Err(SpdyError::Protocol(format!(
                "client opened stream {stream_id}, which is not odd"
            )));
        }
        if stream_id <= self.last_stream_id {
            return Err(SpdyError::Protocol(format!(
                "client opened stream {stream_id} after stream {}",
                self.last_stream_id
            )));
        }
        self.last_stream_id = stream_id;
        if self.accept.is_closed() {
            self.shared
                .reset_stream(stream_id, RstStatus::REFUSED_STREAM);
            return Ok(());
        }
        let Some((rx, room)) = self.shared.register_inbound(stream_id) else {
            return Ok(());
        };
        if fin {
            self.remote_fin(stream_id);
        }
        if !unidirectional {
            self.shared.with_windows(|w| w.open(stream_id));
            self.shared.queue(Outbound::Reply {
                stream_id,
                headers: Headers::new(),
            })?;
        }
        let stream = SpdyStream::new(
            headers,
            StreamReader::new(stream_id, rx, room, self.shared.clone()),
            StreamWriter::new(stream_id, unidirectional, self.shared.clone()),
        );
        if let Err(mpsc::error::SendError(mut refused)) = self.accept.send(stream).await {
            refused.reset(RstStatus::REFUSED_STREAM);
        }
        Ok(())
    }

    /// The client half-closed a stream.
    fn remote_fin(&self, stream_id: StreamId) {
        if let Some(entry) = self.shared.take_inbound(stream_id) {
            let _ = entry.tx.send(Inbound::Fin);
        }
    }

    /// Delivers stream data to its reader, waiting while the reader's
    /// buffer is full.
    async fn data(
        &mut self,
        stream_id: StreamId,
        fin: bool,
        data: bytes::Bytes,
    ) -> Result<(), SpdyError> {
        if stream_id == 0 {
            return Err(SpdyError::Protocol("DATA frame on stream 0".into()));
        }
        let len = data.len();
        let Some(entry) = self.shared.inbound(stream_id) else {
            // Counted against the session window all the same.
            self.shared.credit_session(len);
            let status = if stream_id % 2 == 1 && stream_id <= self.last_stream_id {
                RstStatus::STREAM_ALREADY_CLOSED
            } else {
                RstStatus::INVALID_STREAM
            };
            self.shared.reset_stream(stream_id, status);
            return Ok(());
        };
        if len > 0 {
            let budget = len.min(INBOUND_BUFFER);
            let permits = u32::try_from(budget).unwrap_or(u32::MAX);
            let delivered = match entry.room.acquire_many(permits).await {
                Ok(permit) => {
                    permit.forget();
                    entry.tx.send(Inbound::Data { data, budget }).is_ok()
                }
                // The reader is gone or ended.
                Err(_) => false,
            };
            if !delivered {
                self.shared.credit_session(len);
            }
        }
        if fin {
            self.remote_fin(stream_id);
        }
        Ok(())
    }
}
