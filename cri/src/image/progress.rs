//! What a pull reports while it runs, for `carapace image pull`'s progress
//! bars. CRI's PullImage has no progress channel, so kubelet's pulls report
//! nowhere; the daemon's log has a line per layer either way.

use tokio::sync::mpsc;

/// One step of one layer of a pull.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PullEvent {
    /// The manifest is read: `layer` (a blob digest) will be fetched.
    Pending {
        /// The layer blob's digest.
        layer: String,
        /// Its size in the manifest.
        total: u64,
    },
    /// Bytes of `layer` have arrived.
    Downloading {
        /// The layer blob's digest.
        layer: String,
        /// Bytes so far.
        done: u64,
        /// The blob's size.
        total: u64,
    },
    /// `layer` is in the content store (fetched now, or already there).
    Downloaded {
        /// The layer blob's digest.
        layer: String,
    },
    /// `layer` is unpacked (now, or already) and ready as an overlay lower.
    Unpacked {
        /// The layer blob's digest.
        layer: String,
    },
}

/// Where a pull's events go: nowhere, or to one listener. Sending never
/// blocks the pull; a listener that went away is ignored.
#[derive(Clone, Debug, Default)]
pub struct Progress(Option<mpsc::UnboundedSender<PullEvent>>);

impl Progress {
    /// A pull nobody watches (CRI's PullImage).
    pub fn none() -> Progress {
        Progress(None)
    }

    /// A pull whose events arrive on the returned receiver.
    pub fn channel() -> (Progress, mpsc::UnboundedReceiver<PullEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Progress(Some(tx)), rx)
    }

    pub(crate) fn send(&self, e: PullEvent) {
        if let Some(tx) = &self.0 {
            let _ = tx.send(e);
        }
    }

    /// The byte-count callback for downloading `layer` of `total` bytes:
    /// reports about every percent (and at least every 4 MiB), not every
    /// chunk, so a fast registry does not flood the listener.
    pub(crate) fn bytes(&self, layer: &str, total: u64) -> impl FnMut(u64) + '_ {
        let step = (total / 100).clamp(64 * 1024, 4 << 20);
        let mut last = 0u64;
        let layer = layer.to_string();
        move |n| {
            if self.0.is_some() && (n >= last + step || n == total) {
                last = n;
                self.send(PullEvent::Downloading {
                    layer: layer.clone(),
                    done: n,
                    total,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_reports_are_thinned_and_the_last_is_always_sent() {
        let (p, mut rx) = Progress::channel();
        let mut f = p.bytes("sha256:l", 10 << 20);
        for n in (1..=160).map(|i| i * 65536) {
            f(n);
        }
        drop(f);
        let mut got = Vec::new();
        while let Ok(PullEvent::Downloading { done, .. }) = rx.try_recv() {
            got.push(done);
        }
        assert!(got.len() < 160 && got.len() >= 10, "{got:?}");
        assert_eq!(got.last(), Some(&(10 << 20)));
        assert!(got.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn nobody_listening_is_fine() {
        let (p, rx) = Progress::channel();
        drop(rx);
        p.send(PullEvent::Unpacked { layer: "x".into() });
        Progress::none().bytes("x", 5)(5);
    }
}
