//! Lifecycle events of pods and containers, as they happen: what
//! GetContainerEvents streams to kubelet's evented PLEG. The registries
//! emit one whenever a record's phase changes in a way kubelet cares
//! about, so no operation can forget to; which changes those are is said
//! beside each phase (`container::lifecycle_events`,
//! `sandbox::lifecycle_events`).

use k8s_cri::v1 as cri;
use tokio::sync::broadcast;

/// Events kept for a subscriber that has not read them yet; one that falls
/// further behind loses its stream (and relists, as kubelet does).
const BACKLOG: usize = 4096;

/// One change: which container (or pod: its ID is both) and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lifecycle {
    /// The container ID, or the pod's ID for the pod's own events.
    pub container_id: String,
    /// The pod it belongs to.
    pub sandbox_id: String,
    /// Created, started, stopped or deleted.
    pub kind: cri::ContainerEventType,
    /// Nanoseconds since the epoch.
    pub at_ns: i64,
}

/// The daemon-wide event bus.
#[derive(Debug)]
pub struct Events {
    tx: broadcast::Sender<Lifecycle>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            tx: broadcast::channel(BACKLOG).0,
        }
    }
}

impl Events {
    /// Sends an event to every subscriber (none listening is fine).
    pub fn emit(&self, container_id: &str, sandbox_id: &str, kind: cri::ContainerEventType) {
        tracing::debug!(container = %container_id, pod = %sandbox_id, ?kind, "lifecycle event");
        let _ = self.tx.send(Lifecycle {
            container_id: container_id.to_string(),
            sandbox_id: sandbox_id.to_string(),
            kind,
            at_ns: crate::clock::now_ns(),
        });
    }

    /// A new subscriber, seeing events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Lifecycle> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cri::ContainerEventType as E;

    #[tokio::test]
    async fn every_subscriber_gets_events_in_order() {
        let ev = Events::default();
        let mut a = ev.subscribe();
        let mut b = ev.subscribe();
        ev.emit("c1", "p1", E::ContainerCreatedEvent);
        ev.emit("c1", "p1", E::ContainerStartedEvent);
        for rx in [&mut a, &mut b] {
            assert_eq!(rx.recv().await.expect("1").kind, E::ContainerCreatedEvent);
            assert_eq!(rx.recv().await.expect("2").kind, E::ContainerStartedEvent);
        }
    }
}
