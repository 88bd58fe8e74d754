//! What a session's driver and its streams share: the queue of frames to
//! the writer task, the peer's flow-control windows, and the queues of
//! inbound data for each stream.
//!
//! Everything a stream sends goes through one ordered queue, so a stream's
//! SYN_REPLY precedes its data, its data precedes its FIN, and header
//! blocks reach the compressor in wire order. That queue is unbounded so
//! that control frames and FINs (also from `Drop`) never wait; what bounds
//! it is a byte budget the data senders must acquire first, which the
//! writer hands back once the bytes are on the transport.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tokio::sync::{mpsc, Notify, Semaphore};

use super::flow::{Grant, RecvCredit, SendWindows};
use super::frame::{Frame, RstStatus, StreamId};
use super::headers::Headers;
use super::SpdyError;

/// The largest DATA frame this end sends; bigger writes are split.
pub(crate) const MAX_DATA_CHUNK: usize = 32 * 1024;
/// Outbound DATA bytes that may wait for the transport before senders
/// wait too.
const OUT_BUDGET: usize = 8 * MAX_DATA_CHUNK;
/// Inbound bytes a stream may hold unread before the session stops
/// reading the transport. Larger than the window this end advertises, so
/// a peer that respects it never hits this; one that ignores windows (as
/// spdystream does) gets TCP backpressure instead of unbounded buffering.
pub(crate) const INBOUND_BUFFER: usize = 4 * super::flow::DEFAULT_WINDOW as usize;

/// Work for the writer task, in wire order.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// A frame without a header block.
    Frame(Frame),
    /// A SYN_REPLY, whose headers the writer compresses in wire order.
    Reply {
        stream_id: StreamId,
        headers: Headers,
    },
    /// Stream data holding `budget` bytes of the outbound budget.
    Data {
        stream_id: StreamId,
        fin: bool,
        data: Bytes,
        budget: usize,
    },
    /// Flush what is queued, shut the transport's write side and stop.
    Close,
}

/// What a stream's reader receives.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// Bytes holding `budget` units of the stream's inbound buffer.
    Data { data: Bytes, budget: usize },
    /// The peer half-closed the stream.
    Fin,
    /// The stream was reset (by the peer or by this end).
    Reset(RstStatus),
}

/// Where the reader task delivers a stream's data.
#[derive(Debug, Clone)]
pub(crate) struct InboundEntry {
    pub(crate) tx: mpsc::UnboundedSender<Inbound>,
    /// Free room in the stream's inbound buffer; closed once the consumer
    /// is gone, so data for it is dropped instead of waited on.
    pub(crate) room: Arc<Semaphore>,
}

#[derive(Debug, Default)]
struct InboundStreams {
    open: HashMap<StreamId, InboundEntry>,
    closed: bool,
}

/// The state shared by a session's driver and all its streams.
#[derive(Debug)]
pub(crate) struct Shared {
    out: mpsc::UnboundedSender<Outbound>,
    out_budget: Semaphore,
    windows: Mutex<SendWindows>,
    windows_changed: Notify,
    inbound: Mutex<InboundStreams>,
    session_credit: Mutex<RecvCredit>,
    /// Wakes the reader task to end the session.
    pub(crate) shutdown: Notify,
    close_requested: AtomicBool,
}

/// A grant as the sender sees it: bytes to send, `None` to wait, or why
/// it cannot send at all.
fn granted(id: StreamId, grant: Grant) -> Result<Option<usize>, SpdyError> {
    match grant {
        Grant::Send(n) => Ok(Some(n)),
        Grant::Wait => Ok(None),
        Grant::Reset(status) => Err(SpdyError::StreamReset {
            stream_id: id,
            status,
        }),
        Grant::NotOpen => Err(SpdyError::StreamClosed(id)),
        Grant::Closed => Err(SpdyError::SessionClosed),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn new(out: mpsc::UnboundedSender<Outbound>, enforce_peer_window: bool) -> Self {
        Self {
            out,
            out_budget: Semaphore::new(OUT_BUDGET),
            windows: Mutex::new(SendWindows::new(enforce_peer_window)),
            windows_changed: Notify::new(),
            inbound: Mutex::new(InboundStreams::default()),
            session_credit: Mutex::new(RecvCredit::default()),
            shutdown: Notify::new(),
            close_requested: AtomicBool::new(false),
        }
    }

    /// Queues work for the writer; fails once the writer has stopped.
    pub(crate) fn queue(&self, item: Outbound) -> Result<(), SpdyError> {
        self.out.send(item).map_err(|_| SpdyError::SessionClosed)
    }

    /// Queues a control frame, ignoring a stopped writer (the session is
    /// ending and the frame would have no reader).
    pub(crate) fn queue_frame(&self, frame: Frame) {
        let _ = self.queue(Outbound::Frame(frame));
    }

    /// Returns bytes the writer has put on the transport to the budget.
    pub(crate) fn release_budget(&self, bytes: usize) {
        self.out_budget.add_permits(bytes);
    }

    /// Changes the peer's windows and wakes the senders waiting on them.
    pub(crate) fn with_windows<R>(&self, change: impl FnOnce(&mut SendWindows) -> R) -> R {
        let result = change(&mut lock(&self.windows));
        self.windows_changed.notify_waiters();
        result
    }

    /// Waits until the peer's windows allow sending some of `want` bytes
    /// on `id`, and takes them.
    pub(crate) async fn reserve(&self, id: StreamId, want: usize) -> Result<usize, SpdyError> {
        loop {
            let changed = self.windows_changed.notified();
            tokio::pin!(changed);
            // Registered before looking, so an update in between wakes us.
            changed.as_mut().enable();
            let grant = lock(&self.windows).grant(id, want);
            if let Some(n) = granted(id, grant)? {
                return Ok(n);
            }
            changed.await;
        }
    }

    /// Waits until `id` is no longer open for sending from this end
    /// (reset, finished, or the session over).
    pub(crate) async fn closed(&self, id: StreamId) {
        loop {
            let changed = self.windows_changed.notified();
            tokio::pin!(changed);
            // Registered before looking, so a change in between wakes us.
            changed.as_mut().enable();
            if self.check_open(id).is_err() {
                return;
            }
            changed.await;
        }
    }

    /// Whether `id` is still open for sending from this end.
    pub(crate) fn check_open(&self, id: StreamId) -> Result<(), SpdyError> {
        granted(id, lock(&self.windows).grant(id, 0)).map(drop)
    }

    /// Queues one DATA frame of at most [`MAX_DATA_CHUNK`] bytes whose
    /// window is already reserved, once the outbound budget has room.
    pub(crate) async fn queue_data(
        &self,
        stream_id: StreamId,
        data: Bytes,
        fin: bool,
    ) -> Result<(), SpdyError> {
        let budget = data.len().min(MAX_DATA_CHUNK);
        let permits = u32::try_from(budget).map_err(|_| SpdyError::SessionClosed)?;
        self.out_budget
            .acquire_many(permits)
            .await
            .map_err(|_| SpdyError::SessionClosed)?
            .forget();
        self.queue(Outbound::Data {
            stream_id,
            fin,
            data,
            budget,
        })
    }

    /// Registers a stream's inbound queue; `None` once the session is over.
    pub(crate) fn register_inbound(
        &self,
        id: StreamId,
    ) -> Option<(mpsc::UnboundedReceiver<Inbound>, Arc<Semaphore>)> {
        let mut inbound = lock(&self.inbound);
        if inbound.closed {
            return None;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let room = Arc::new(Semaphore::new(INBOUND_BUFFER));
        inbound.open.insert(
            id,
            InboundEntry {
                tx,
                room: room.clone(),
            },
        );
        Some((rx, room))
    }

    /// Where data for `id` goes, if the peer may still send on it.
    pub(crate) fn inbound(&self, id: StreamId) -> Option<InboundEntry> {
        lock(&self.inbound).open.get(&id).cloned()
    }

    /// Stops taking data for `id` (the peer half-closed or reset it).
    pub(crate) fn take_inbound(&self, id: StreamId) -> Option<InboundEntry> {
        lock(&self.inbound).open.remove(&id)
    }

    /// Resets a stream from this end: tells the peer, stops the stream's
    /// sender and ends its reader. Data still in flight from the peer is
    /// dropped quietly rather than answered with another reset.
    pub(crate) fn reset_stream(&self, id: StreamId, status: RstStatus) {
        self.queue_frame(Frame::RstStream {
            stream_id: id,
            status,
        });
        self.with_windows(|w| w.reset(id, status));
        if let Some(entry) = self.inbound(id) {
            let _ = entry.tx.send(Inbound::Reset(status));
            entry.room.close();
        }
    }

    /// Records `n` inbound bytes consumed (or dropped) and grants the peer
    /// session window back once a batch is full.
    pub(crate) fn credit_session(&self, n: usize) {
        let delta = lock(&self.session_credit).consumed(n);
        if let Some(delta) = delta {
            self.queue_frame(Frame::WindowUpdate {
                stream_id: 0,
                delta,
            });
        }
    }

    /// Asks the driver to end the session with GOAWAY.
    pub(crate) fn request_close(&self) {
        self.close_requested.store(true, Ordering::SeqCst);
        self.shutdown.notify_one();
    }

    /// Whether this end asked to close the session.
    pub(crate) fn close_requested(&self) -> bool {
        self.close_requested.load(Ordering::SeqCst)
    }

    /// Ends every stream: senders fail, and readers see the session close
    /// once they have read what had already arrived.
    pub(crate) fn end(&self) {
        self.with_windows(SendWindows::close);
        self.out_budget.close();
        let mut inbound = lock(&self.inbound);
        inbound.closed = true;
        inbound.open.clear();
    }
}
