//! Lifecycle events of pods and containers, as they happen: what
//! GetContainerEvents streams to kubelet's evented PLEG. The registries
//! emit one whenever a record's phase changes in a way kubelet cares
//! about, so no operation can forget to.

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
            at_ns: crate::sandbox::run::now_ns(),
        });
    }

    /// A new subscriber, seeing events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Lifecycle> {
        self.tx.subscribe()
    }
}

/// The events a container's phase change means (see
/// [`crate::container::Phase`]): none for a change kubelet does not see.
pub fn container_transition(
    before: Option<crate::container::Phase>,
    after: Option<crate::container::Phase>,
) -> Vec<cri::ContainerEventType> {
    use crate::container::Phase as P;
    use cri::ContainerEventType as E;
    match (before, after) {
        (Some(P::Creating), Some(P::Created)) => vec![E::ContainerCreatedEvent],
        (Some(P::Created), Some(P::Running)) => vec![E::ContainerStartedEvent],
        (Some(P::Created | P::Running), Some(P::Exited)) => vec![E::ContainerStoppedEvent],
        // A container kubelet saw (anything past Creating) disappears.
        (Some(P::Created | P::Running | P::Exited | P::Removing), None) => {
            vec![E::ContainerDeletedEvent]
        }
        _ => Vec::new(),
    }
}

/// The events a pod's phase change means: a pod is created and started at
/// once (its infra process runs when RunPodSandbox answers).
pub fn sandbox_transition(
    before: Option<crate::sandbox::Phase>,
    after: Option<crate::sandbox::Phase>,
) -> Vec<cri::ContainerEventType> {
    use crate::sandbox::Phase as P;
    use cri::ContainerEventType as E;
    match (before, after) {
        (Some(P::Creating), Some(P::Ready)) => {
            vec![E::ContainerCreatedEvent, E::ContainerStartedEvent]
        }
        (Some(P::Ready), Some(P::NotReady | P::Removing)) => vec![E::ContainerStoppedEvent],
        (Some(P::Ready | P::NotReady | P::Removing), None) => vec![E::ContainerDeletedEvent],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::Phase as C;
    use crate::sandbox::Phase as S;
    use cri::ContainerEventType as E;

    #[test]
    fn container_phases_map_to_kubelets_events() {
        let t = container_transition;
        assert_eq!(
            t(Some(C::Creating), Some(C::Created)),
            vec![E::ContainerCreatedEvent]
        );
        assert_eq!(
            t(Some(C::Created), Some(C::Running)),
            vec![E::ContainerStartedEvent]
        );
        assert_eq!(
            t(Some(C::Running), Some(C::Exited)),
            vec![E::ContainerStoppedEvent]
        );
        assert_eq!(
            t(Some(C::Created), Some(C::Exited)),
            vec![E::ContainerStoppedEvent]
        );
        assert_eq!(t(Some(C::Removing), None), vec![E::ContainerDeletedEvent]);
        // Unseen or unchanged: nothing.
        assert!(t(Some(C::Creating), None).is_empty());
        assert!(t(Some(C::Running), Some(C::Running)).is_empty());
        assert!(t(Some(C::Exited), Some(C::Removing)).is_empty());
    }

    #[test]
    fn pod_phases_map_to_kubelets_events() {
        let t = sandbox_transition;
        assert_eq!(
            t(Some(S::Creating), Some(S::Ready)),
            vec![E::ContainerCreatedEvent, E::ContainerStartedEvent]
        );
        assert_eq!(
            t(Some(S::Ready), Some(S::NotReady)),
            vec![E::ContainerStoppedEvent]
        );
        assert_eq!(t(Some(S::NotReady), None), vec![E::ContainerDeletedEvent]);
        assert!(t(Some(S::Creating), None).is_empty());
        assert!(t(Some(S::NotReady), Some(S::Removing)).is_empty());
    }

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
