//! SPDY/3.1 flow-control arithmetic (section 2.6.8), kept free of I/O so
//! it can be tested on its own.
//!
//! Each stream has a send window, and SPDY/3.1 adds one for the whole
//! session (stream 0); both start at 64 KiB. Sending DATA spends both;
//! the peer's `WINDOW_UPDATE` refills one; a SETTINGS
//! `INITIAL_WINDOW_SIZE` shifts every stream window (not the session's)
//! by the difference. In the other direction this end grants the peer
//! window back as the consumer reads, in batches.

use std::collections::HashMap;

use super::frame::{RstStatus, StreamId};

/// The initial stream and session window SPDY/3.1 prescribes, which both
/// ends assume until told otherwise.
pub const DEFAULT_WINDOW: u32 = 64 * 1024;

/// The largest a window may grow (31 bits).
const MAX_WINDOW: i64 = 0x7fff_ffff;

/// What a stream that wants to send may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Grant {
    /// Send this many bytes (already taken from the windows).
    Send(usize),
    /// A window is exhausted: wait for a `WINDOW_UPDATE`.
    Wait,
    /// The stream was reset; nothing more may be sent.
    Reset(RstStatus),
    /// The stream is not open for sending.
    NotOpen,
    /// The session is over.
    Closed,
}

/// A `WINDOW_UPDATE` pushed a window past 2^31 - 1, which the spec treats
/// as an error (`FLOW_CONTROL_ERROR` for a stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WindowOverflow;

#[derive(Debug)]
struct StreamSend {
    window: i64,
    reset: Option<RstStatus>,
}

/// The peer's windows: how much this end may still send.
///
/// With `enforce` off the windows are still tracked but never make a
/// sender wait; see `SessionConfig::enforce_peer_window` for why that is
/// the default.
#[derive(Debug)]
pub(crate) struct SendWindows {
    enforce: bool,
    initial: i64,
    session: i64,
    streams: HashMap<StreamId, StreamSend>,
    closed: bool,
}

impl SendWindows {
    pub(crate) fn new(enforce: bool) -> Self {
        Self {
            enforce,
            initial: i64::from(DEFAULT_WINDOW),
            session: i64::from(DEFAULT_WINDOW),
            streams: HashMap::new(),
            closed: false,
        }
    }

    /// Starts tracking a stream this end may send on.
    pub(crate) fn open(&mut self, id: StreamId) {
        self.streams.insert(
            id,
            StreamSend {
                window: self.initial,
                reset: None,
            },
        );
    }

    /// Forgets a stream this end has finished sending on.
    pub(crate) fn remove(&mut self, id: StreamId) {
        self.streams.remove(&id);
    }

    /// Marks a stream reset, so its sender stops.
    pub(crate) fn reset(&mut self, id: StreamId, status: RstStatus) {
        if let Some(s) = self.streams.get_mut(&id) {
            s.reset = Some(status);
        }
    }

    /// Ends the session: every sender stops.
    pub(crate) fn close(&mut self) {
        self.closed = true;
    }

    /// Takes up to `want` bytes from the stream's and the session's windows.
    pub(crate) fn grant(&mut self, id: StreamId, want: usize) -> Grant {
        if self.closed {
            return Grant::Closed;
        }
        let Some(stream) = self.streams.get_mut(&id) else {
            return Grant::NotOpen;
        };
        if let Some(status) = stream.reset {
            return Grant::Reset(status);
        }
        if want == 0 {
            return Grant::Send(0);
        }
        let want_i = i64::try_from(want).unwrap_or(i64::MAX);
        let n = if self.enforce {
            want_i.min(stream.window).min(self.session)
        } else {
            want_i
        };
        if n <= 0 {
            return Grant::Wait;
        }
        stream.window -= n;
        self.session -= n;
        Grant::Send(usize::try_from(n).unwrap_or(0))
    }

    /// Applies a `WINDOW_UPDATE`; stream 0 is the session window. Updates
    /// for streams no longer sending are ignored, as the spec asks.
    pub(crate) fn update(&mut self, id: StreamId, delta: u32) -> Result<(), WindowOverflow> {
        let window = if id == 0 {
            &mut self.session
        } else {
            match self.streams.get_mut(&id) {
                Some(s) => &mut s.window,
                None => return Ok(()),
            }
        };
        let grown = *window + i64::from(delta);
        if grown > MAX_WINDOW {
            return Err(WindowOverflow);
        }
        *window = grown;
        Ok(())
    }

    /// Applies SETTINGS `INITIAL_WINDOW_SIZE`: every stream window moves by
    /// the difference (and may go negative), later streams start at it.
    pub(crate) fn set_initial(&mut self, size: u32) {
        let size = i64::from(size).min(MAX_WINDOW);
        let shift = size - self.initial;
        self.initial = size;
        for s in self.streams.values_mut() {
            s.window += shift;
        }
    }
}

/// Bytes the consumer has read but this end has not yet given back to the
/// peer as window. Updates are batched at half the window, which keeps the
/// peer from ever stalling on a consumer that keeps up while sending a
/// `WINDOW_UPDATE` per 32 KiB rather than per chunk.
#[derive(Debug, Default)]
pub(crate) struct RecvCredit {
    pending: u64,
}

impl RecvCredit {
    const THRESHOLD: u64 = DEFAULT_WINDOW as u64 / 2;

    /// Records `n` consumed bytes; returns the delta to announce once the
    /// batch is full.
    pub(crate) fn consumed(&mut self, n: usize) -> Option<u32> {
        self.pending = self
            .pending
            .saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
        if self.pending < Self::THRESHOLD {
            return None;
        }
        let delta = self.pending.min(MAX_WINDOW as u64);
        self.pending -= delta;
        u32::try_from(delta).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: usize = DEFAULT_WINDOW as usize;

    #[test]
    fn enforced_windows_stop_the_sender_at_64k() {
        let mut w = SendWindows::new(true);
        w.open(1);
        assert_eq!(w.grant(1, W - 10), Grant::Send(W - 10));
        assert_eq!(w.grant(1, 100), Grant::Send(10));
        assert_eq!(w.grant(1, 1), Grant::Wait);
        // The stream window alone is not enough: the session's is empty too.
        w.update(1, 50).expect("update");
        assert_eq!(w.grant(1, 100), Grant::Wait);
        w.update(0, 20).expect("update");
        assert_eq!(w.grant(1, 100), Grant::Send(20));
        assert_eq!(w.grant(1, 0), Grant::Send(0));
    }

    #[test]
    fn session_window_is_shared_by_streams() {
        let mut w = SendWindows::new(true);
        w.open(1);
        w.open(3);
        assert_eq!(w.grant(1, W), Grant::Send(W));
        assert_eq!(w.grant(3, 1), Grant::Wait);
    }

    #[test]
    fn unenforced_windows_never_wait() {
        let mut w = SendWindows::new(false);
        w.open(1);
        assert_eq!(w.grant(1, 10 * W), Grant::Send(10 * W));
        assert_eq!(w.grant(1, 10 * W), Grant::Send(10 * W));
    }

    #[test]
    fn initial_window_setting_shifts_open_streams() {
        let mut w = SendWindows::new(true);
        w.open(1);
        assert_eq!(w.grant(1, 1000), Grant::Send(1000));
        w.set_initial(500);
        // 500 - 1000 spent: negative until updated past it.
        assert_eq!(w.grant(1, 1), Grant::Wait);
        w.update(1, 600).expect("update");
        assert_eq!(w.grant(1, 1000), Grant::Send(100));
        w.open(3);
        assert_eq!(w.grant(3, 1000), Grant::Send(500));
    }

    #[test]
    fn overflowing_updates_are_refused() {
        let mut w = SendWindows::new(true);
        w.open(1);
        assert_eq!(w.update(1, 0x7fff_ffff), Err(WindowOverflow));
        assert_eq!(w.update(0, 0x7fff_ffff), Err(WindowOverflow));
        assert_eq!(w.update(9, 0x7fff_ffff), Ok(()), "unknown stream ignored");
    }

    #[test]
    fn reset_closed_and_unknown_streams_cannot_send() {
        let mut w = SendWindows::new(false);
        w.open(1);
        w.reset(1, RstStatus::CANCEL);
        assert_eq!(w.grant(1, 1), Grant::Reset(RstStatus::CANCEL));
        assert_eq!(w.grant(3, 1), Grant::NotOpen);
        w.close();
        assert_eq!(w.grant(1, 1), Grant::Closed);
    }

    #[test]
    fn credit_is_returned_in_half_window_batches() {
        let mut c = RecvCredit::default();
        assert_eq!(c.consumed(W / 4), None);
        assert_eq!(c.consumed(W / 4), Some((W / 2) as u32));
        assert_eq!(c.consumed(1), None);
        assert_eq!(c.consumed(W), Some(W as u32 + 1));
    }
}
