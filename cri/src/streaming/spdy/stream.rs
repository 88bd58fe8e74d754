//! A client-opened SPDY stream as the session hands it to its user: the
//! headers the client opened it with, the data the client sends on it, and
//! a way to send data back.
//!
//! Streams are full duplex and each direction ends separately (FIN), so a
//! stream splits into a [`StreamReader`] and a [`StreamWriter`] that can
//! live in different tasks — one copying a container's stdout out while
//! another copies stdin in.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, Semaphore};

use super::flow::RecvCredit;
use super::frame::{Frame, RstStatus, StreamId};
use super::headers::Headers;
use super::shared::{Inbound, Outbound, Shared, MAX_DATA_CHUNK};
use super::SpdyError;

/// One stream the client opened with SYN_STREAM (already answered with
/// SYN_REPLY).
#[derive(Debug)]
pub struct SpdyStream {
    headers: Headers,
    reader: StreamReader,
    writer: StreamWriter,
}

impl SpdyStream {
    pub(crate) fn new(headers: Headers, reader: StreamReader, writer: StreamWriter) -> Self {
        Self {
            headers,
            reader,
            writer,
        }
    }

    /// The stream's ID (odd: client-opened).
    pub fn id(&self) -> StreamId {
        self.reader.id
    }

    /// The headers of the SYN_STREAM that opened it — for Kubernetes,
    /// `streamType` and, for port forwarding, `port` and `requestID`.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// See [`StreamReader::recv`].
    pub async fn recv(&mut self) -> Result<Option<Bytes>, SpdyError> {
        self.reader.recv().await
    }

    /// See [`StreamWriter::send`].
    pub async fn send(&mut self, data: impl Into<Bytes>) -> Result<(), SpdyError> {
        self.writer.send(data).await
    }

    /// See [`StreamWriter::finish`].
    pub fn finish(&mut self) -> Result<(), SpdyError> {
        self.writer.finish()
    }

    /// See [`StreamWriter::reset`].
    pub fn reset(&mut self, status: RstStatus) {
        self.writer.reset(status)
    }

    /// Splits the stream so each direction can be driven by its own task.
    pub fn into_parts(self) -> (Headers, StreamReader, StreamWriter) {
        (self.headers, self.reader, self.writer)
    }
}

/// How a stream's inbound side ended, remembered so later reads repeat it.
#[derive(Debug, Clone, Copy)]
enum Ended {
    Fin,
    Reset(RstStatus),
    SessionClosed,
}

/// The receiving half of a stream: what the client sends on it.
///
/// Reading is what grants the client more flow-control window, so a
/// consumer that stops reading eventually stops a well-behaved sender.
/// A client that ignores windows (spdystream) is stopped instead by the
/// session ceasing to read the connection once 256 KiB wait unread on one
/// stream — which pauses every stream — so drop a reader whose data is
/// not wanted rather than leaving it unread.
#[derive(Debug)]
pub struct StreamReader {
    id: StreamId,
    rx: mpsc::UnboundedReceiver<Inbound>,
    room: Arc<Semaphore>,
    credit: RecvCredit,
    ended: Option<Ended>,
    shared: Arc<Shared>,
}

impl StreamReader {
    pub(crate) fn new(
        id: StreamId,
        rx: mpsc::UnboundedReceiver<Inbound>,
        room: Arc<Semaphore>,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            id,
            rx,
            room,
            credit: RecvCredit::default(),
            ended: None,
            shared,
        }
    }

    /// The next chunk the client sent; `Ok(None)` once it half-closed the
    /// stream (FIN), an error if the stream was reset or the session ended
    /// first. Once ended, every later call returns the same.
    pub async fn recv(&mut self) -> Result<Option<Bytes>, SpdyError> {
        if let Some(ended) = self.ended {
            return self.ended_result(ended);
        }
        let ended = match self.rx.recv().await {
            Some(Inbound::Data { data, budget }) => {
                self.room.add_permits(budget);
                self.credit(data.len());
                return Ok(Some(data));
            }
            Some(Inbound::Fin) => Ended::Fin,
            Some(Inbound::Reset(status)) => Ended::Reset(status),
            None => Ended::SessionClosed,
        };
        self.ended = Some(ended);
        self.room.close();
        self.ended_result(ended)
    }

    fn ended_result(&self, ended: Ended) -> Result<Option<Bytes>, SpdyError> {
        match ended {
            Ended::Fin => Ok(None),
            Ended::Reset(status) => Err(SpdyError::StreamReset {
                stream_id: self.id,
                status,
            }),
            Ended::SessionClosed => Err(SpdyError::SessionClosed),
        }
    }

    /// Grants consumed bytes back to the peer, stream and session windows.
    fn credit(&mut self, n: usize) {
        if let Some(delta) = self.credit.consumed(n) {
            self.shared.queue_frame(Frame::WindowUpdate {
                stream_id: self.id,
                delta,
            });
        }
        self.shared.credit_session(n);
    }
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        // Whatever arrives from now on is dropped by the session instead
        // of buffered for nobody.
        self.room.close();
        let mut unread = 0;
        while let Ok(item) = self.rx.try_recv() {
            if let Inbound::Data { data, .. } = item {
                unread += data.len();
            }
        }
        if unread > 0 {
            self.shared.credit_session(unread);
        }
    }
}

/// The sending half of a stream: what goes back to the client.
///
/// Dropping it without [`finish`](Self::finish) or [`reset`](Self::reset)
/// half-closes the stream, so a client never waits on a writer that is gone.
#[derive(Debug)]
pub struct StreamWriter {
    id: StreamId,
    done: bool,
    shared: Arc<Shared>,
}

impl StreamWriter {
    /// A writer for `id`; `done` when this end may not send on it at all
    /// (the client opened it unidirectional).
    pub(crate) fn new(id: StreamId, done: bool, shared: Arc<Shared>) -> Self {
        Self { id, done, shared }
    }

    /// Sends `data` in DATA frames of at most 32 KiB, each once the peer's
    /// window (if enforced) and the session's outbound buffer allow it.
    /// Returns when the last frame is queued for the transport, so data
    /// may still be lost if the session ends right after.
    pub async fn send(&mut self, data: impl Into<Bytes>) -> Result<(), SpdyError> {
        if self.done {
            return Err(SpdyError::StreamClosed(self.id));
        }
        let mut data = data.into();
        while !data.is_empty() {
            let want = data.len().min(MAX_DATA_CHUNK);
            let n = self.shared.reserve(self.id, want).await?;
            let chunk = data.split_to(n);
            self.shared.queue_data(self.id, chunk, false).await?;
        }
        Ok(())
    }

    /// Resolves once this end can no longer send on the stream: the
    /// session ended (the client left or broke the protocol), the stream
    /// was reset, or it was finished.
    pub async fn closed(&self) {
        if self.done {
            return;
        }
        self.shared.closed(self.id).await
    }

    /// Half-closes the stream: an empty DATA frame with FIN. The client
    /// may keep sending on its side.
    pub fn finish(&mut self) -> Result<(), SpdyError> {
        if self.done {
            return Err(SpdyError::StreamClosed(self.id));
        }
        self.done = true;
        let open = self.shared.check_open(self.id);
        self.shared.with_windows(|w| w.remove(self.id));
        open?;
        self.shared.queue(Outbound::Data {
            stream_id: self.id,
            fin: true,
            data: Bytes::new(),
            budget: 0,
        })
    }

    /// Aborts the stream in both directions with RST_STREAM (also after
    /// [`finish`](Self::finish), to stop the client sending).
    pub fn reset(&mut self, status: RstStatus) {
        self.done = true;
        self.shared.reset_stream(self.id, status);
        self.shared.with_windows(|w| w.remove(self.id));
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.finish();
        }
    }
}
