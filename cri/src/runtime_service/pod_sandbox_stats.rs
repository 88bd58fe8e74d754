//! `PodSandboxStats` and `ListPodSandboxStats`: usage of pods (cgroup,
//! network, processes) and of their containers, read by the stats module
//! off the async workers.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_cri::v1 as cri;
use tonic::Status;

use crate::container::{ContainerRecord, Containers};
use crate::sandbox::Phase;
use crate::stats::{self, container, filter, pod, Sampler, StatsError};

/// The listed containers of every pod, oldest first.
fn containers_by_pod(cs: &Containers) -> HashMap<String, Vec<ContainerRecord>> {
    let mut by_pod: HashMap<String, Vec<ContainerRecord>> = HashMap::new();
    for rec in cs.all().iter().map(|c| c.record()) {
        if filter::container_listed(&rec) {
            by_pod.entry(rec.sandbox_id.clone()).or_default().push(rec);
        }
    }
    for recs in by_pod.values_mut() {
        recs.sort_by_key(|r| r.created_at);
    }
    by_pod
}

/// Answers PodSandboxStats: NotFound for an unknown ID, Unavailable for a
/// pod that is not Ready.
pub async fn handle_stats(
    cs: &Arc<Containers>,
    sampler: &Arc<Sampler>,
    req: cri::PodSandboxStatsRequest,
) -> Result<cri::PodSandboxStatsResponse, Status> {
    let rec = cs.sandboxes.get(&req.pod_sandbox_id)?.record();
    tracing::debug!(pod = %rec.id, "PodSandboxStats");
    let containers = containers_by_pod(cs).remove(&rec.id).unwrap_or_default();
    let (cs, sampler) = (cs.clone(), sampler.clone());
    let stats = stats::blocking(move || {
        let ctx = container::Context::new(&cs, &sampler);
        pod::stats(&ctx, &rec, &containers)
    })
    .await??;
    Ok(cri::PodSandboxStatsResponse { stats: Some(stats) })
}

/// Answers ListPodSandboxStats: every Ready pod the filter selects, oldest
/// first.
pub async fn handle_list(
    cs: &Arc<Containers>,
    sampler: &Arc<Sampler>,
    req: cri::ListPodSandboxStatsRequest,
) -> Result<cri::ListPodSandboxStatsResponse, Status> {
    let f = req.filter.unwrap_or_default();
    let mut pods: Vec<_> = cs
        .sandboxes
        .all()
        .iter()
        .map(|s| s.record())
        .filter(|r| r.phase == Phase::Ready && filter::pod_matches(r, &f))
        .collect();
    pods.sort_by_key(|r| r.created_at);
    let mut by_pod = containers_by_pod(cs);
    let (cs, sampler) = (cs.clone(), sampler.clone());
    let stats = stats::blocking(move || {
        let ctx = container::Context::new(&cs, &sampler);
        let mut out = Vec::with_capacity(pods.len());
        for rec in &pods {
            let containers = by_pod.remove(&rec.id).unwrap_or_default();
            match pod::stats(&ctx, rec, &containers) {
                Ok(s) => out.push(s),
                // Stopped since it was listed: no stats, as containerd.
                Err(StatsError::NotReady(_)) => {}
                Err(e) => tracing::warn!(pod = %rec.id, error = %e, "pod stats"),
            }
        }
        sampler.forget_removed(&cs);
        out
    })
    .await?;
    Ok(cri::ListPodSandboxStatsResponse { stats })
}
