//! `ListMetricDescriptors` and `ListPodSandboxMetrics`: cAdvisor-named
//! container and pod metrics for kubelet's /metrics/cadvisor, built by the
//! metrics module off the async workers.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_cri::v1 as cri;
use tonic::Status;

use crate::container::{ContainerRecord, Containers};
use crate::sandbox::Phase;
use crate::stats::{self, filter};

/// Answers ListMetricDescriptors: the fixed table of metrics served.
pub fn handle_descriptors(
    _req: cri::ListMetricDescriptorsRequest,
) -> Result<cri::ListMetricDescriptorsResponse, Status> {
    Ok(cri::ListMetricDescriptorsResponse {
        descriptors: crate::metrics::list_descriptors(),
    })
}

/// Answers ListPodSandboxMetrics: every Ready pod, oldest first, with its
/// containers (except ones being created or removed), oldest first.
pub async fn handle_list(
    cs: &Arc<Containers>,
    _req: cri::ListPodSandboxMetricsRequest,
) -> Result<cri::ListPodSandboxMetricsResponse, Status> {
    let mut pods: Vec<_> = cs
        .sandboxes
        .all()
        .iter()
        .map(|s| s.record())
        .filter(|r| r.phase == Phase::Ready)
        .collect();
    pods.sort_by_key(|r| r.created_at);
    let mut by_pod: HashMap<String, Vec<ContainerRecord>> = HashMap::new();
    for rec in cs.all().iter().map(|c| c.record()) {
        if filter::container_listed(&rec) {
            by_pod.entry(rec.sandbox_id.clone()).or_default().push(rec);
        }
    }
    let pod_metrics = stats::blocking(move || {
        let host = stats::cgroup::Host::resolve();
        pods.iter()
            .map(|rec| {
                let mut containers = by_pod.remove(&rec.id).unwrap_or_default();
                containers.sort_by_key(|c| c.created_at);
                crate::metrics::pod::collect(&host, rec, &containers)
            })
            .collect()
    })
    .await?;
    Ok(cri::ListPodSandboxMetricsResponse { pod_metrics })
}
