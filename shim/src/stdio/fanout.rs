//! Live output for attach clients: every chunk a process writes goes to
//! each subscriber that asked for its stream. A client that does not keep
//! up loses chunks rather than stalling the container or the log.

use std::sync::Mutex;

use tokio::sync::mpsc;

use crate::crilog::Stream;

/// One chunk of output and the stream it came from.
pub type Chunk = (Stream, Vec<u8>);

/// Chunks buffered per subscriber before it starts losing output.
const QUEUE: usize = 256;

struct Subscriber {
    id: u64,
    stdout: bool,
    stderr: bool,
    tx: mpsc::Sender<Chunk>,
}

#[derive(Default)]
struct Inner {
    next: u64,
    subs: Vec<Subscriber>,
    closed: bool,
}

/// The subscribers of one process's output.
#[derive(Default)]
pub struct Fanout {
    inner: Mutex<Inner>,
}

impl Fanout {
    /// A new subscriber, or `None` once the output has ended.
    pub fn subscribe(&self, stdout: bool, stderr: bool) -> Option<(u64, mpsc::Receiver<Chunk>)> {
        let mut g = self.inner.lock().ok()?;
        if g.closed {
            return None;
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        g.next += 1;
        let id = g.next;
        g.subs.push(Subscriber {
            id,
            stdout,
            stderr,
            tx,
        });
        Some((id, rx))
    }

    /// Removes a subscriber (its client went away).
    pub fn unsubscribe(&self, id: u64) {
        if let Ok(mut g) = self.inner.lock() {
            g.subs.retain(|s| s.id != id);
        }
    }

    /// Hands a chunk to every subscriber of `stream`.
    pub fn send(&self, stream: Stream, data: &[u8]) {
        let Ok(mut g) = self.inner.lock() else { return };
        g.subs.retain(|s| {
            let wanted = match stream {
                Stream::Stdout => s.stdout,
                Stream::Stderr => s.stderr,
            };
            if !wanted {
                return true;
            }
            match s.tx.try_send((stream, data.to_vec())) {
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => true,
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }

    /// The output ended: every subscriber sees the end of its stream.
    pub fn close(&self) {
        if let Ok(mut g) = self.inner.lock() {
            g.closed = true;
            g.subs.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribers_get_only_their_streams_and_see_the_end() {
        let f = Fanout::default();
        let (_, mut out) = f.subscribe(true, false).expect("subscribe");
        let (_, mut both) = f.subscribe(true, true).expect("subscribe");
        f.send(Stream::Stdout, b"o");
        f.send(Stream::Stderr, b"e");
        assert_eq!(out.try_recv().ok(), Some((Stream::Stdout, b"o".to_vec())));
        assert!(out.try_recv().is_err());
        assert_eq!(both.try_recv().ok(), Some((Stream::Stdout, b"o".to_vec())));
        assert_eq!(both.try_recv().ok(), Some((Stream::Stderr, b"e".to_vec())));
        f.close();
        assert!(matches!(
            out.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
        assert!(f.subscribe(true, true).is_none());
    }

    #[test]
    fn a_slow_subscriber_loses_chunks_but_stays() {
        let f = Fanout::default();
        let (_, mut rx) = f.subscribe(true, true).expect("subscribe");
        for _ in 0..(QUEUE + 10) {
            f.send(Stream::Stdout, b"x");
        }
        let mut n = 0;
        while rx.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, QUEUE);
        f.send(Stream::Stdout, b"later");
        assert_eq!(
            rx.try_recv().ok(),
            Some((Stream::Stdout, b"later".to_vec()))
        );
    }

    #[test]
    fn dropped_clients_are_forgotten() {
        let f = Fanout::default();
        let (id, rx) = f.subscribe(true, true).expect("subscribe");
        drop(rx);
        f.send(Stream::Stdout, b"x");
        f.unsubscribe(id);
        assert_eq!(f.inner.lock().map(|g| g.subs.len()).unwrap_or(1), 0);
    }
}
