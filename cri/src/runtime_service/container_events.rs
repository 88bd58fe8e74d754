//! `GetContainerEvents`: a server stream of pod and container lifecycle
//! events for kubelet's evented PLEG, each with the pod's status and its
//! containers' statuses attached (read when the event is delivered, so
//! they are never older than the event).
//!
//! Every subscriber gets every event, in order. A subscriber that falls
//! more than the bus's backlog behind gets its stream ended with
//! ResourceExhausted (kubelet then relists and subscribes again); it never
//! holds up the daemon.

use std::sync::Arc;

use k8s_cri::v1 as cri;
use tokio::sync::{broadcast, mpsc};
use tonic::Status;

use crate::container::Containers;
use crate::lifecycle::Lifecycle;

use super::{container_status, pod_sandbox_status, ContainerEventStream};

/// Responses queued per subscriber before the forwarder waits on it.
const QUEUE: usize = 256;

/// The full CRI event for `ev`.
pub fn response(cs: &Containers, ev: &Lifecycle) -> cri::ContainerEventResponse {
    let pod = cs
        .sandboxes
        .get(&ev.sandbox_id)
        .ok()
        .map(|s| pod_sandbox_status::status(&s.record()));
    cri::ContainerEventResponse {
        container_id: ev.container_id.clone(),
        container_event_type: ev.kind as i32,
        created_at: ev.at_ns,
        pod_sandbox_status: pod,
        containers_statuses: container_status::of_pod(cs, &ev.sandbox_id),
    }
}

/// Opens a subscriber's stream.
pub fn handle(cs: &Arc<Containers>, _req: cri::GetEventsRequest) -> ContainerEventStream {
    let mut rx = cs.sandboxes.daemon.events.subscribe();
    let (tx, out) = mpsc::channel(QUEUE);
    let cs = cs.clone();
    tracing::info!("GetContainerEvents: subscriber joined");
    tokio::spawn(async move {
        loop {
            let item = match rx.recv().await {
                Ok(ev) => Ok(response(&cs, &ev)),
                Err(broadcast::error::RecvError::Lagged(n)) => Err(Status::resource_exhausted(
                    format!("event subscriber fell {n} events behind; subscribe again and relist"),
                )),
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let end = item.is_err();
            if tx.send(item).await.is_err() || end {
                tracing::info!("GetContainerEvents: subscriber left");
                return;
            }
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(out))
}
