//! The metrics of one pod: its network (the only pod-level metrics, as
//! under CRI-O) and the metrics of each of its containers.
//!
//! A pod on the host network has no network metrics: its interfaces are
//! the node's, which the node exporter reports, and the stats calls skip
//! them the same way.

use k8s_cri::v1 as cri;

use crate::clock::now_ns;
use crate::container::ContainerRecord;
use crate::sandbox::record::host_network;
use crate::sandbox::SandboxRecord;
use crate::stats::cgroup::Host;

use super::labels::BaseLabels;
use super::{container, network};

/// The metrics of pod `rec` and of `containers` (its containers, in the
/// order given) now. Whether the pod should be measured at all (Ready) is
/// the caller's decision; a part that cannot be read is logged at debug
/// and left out.
pub fn collect(
    host: &Host,
    rec: &SandboxRecord,
    containers: &[ContainerRecord],
) -> cri::PodSandboxMetrics {
    let mut metrics = Vec::new();
    if !host_network(&rec.ns_options()) {
        if let Some(netns) = &rec.netns {
            match network::read_in(netns) {
                Ok(c) => metrics = network::from_counters(&c, &BaseLabels::of_pod(rec), now_ns()),
                Err(e) => tracing::debug!(pod = %rec.id, error = %e, "pod network metrics"),
            }
        }
    }
    cri::PodSandboxMetrics {
        pod_sandbox_id: rec.id.clone(),
        metrics,
        container_metrics: containers
            .iter()
            .map(|c| container::collect(host, c, rec))
            .collect(),
    }
}
