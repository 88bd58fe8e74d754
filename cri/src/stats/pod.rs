//! The stats of one pod: CPU, memory and process count of the pod cgroup
//! (the infra process and every container below it), the network
//! counters of its namespace, and the stats of each of its containers.
//!
//! Only a Ready pod has stats (as under containerd, whose list call skips
//! the others and whose single call answers Unavailable). A pod on the
//! host network reports no network usage: its interfaces are the node's.

use std::time::Instant;

use k8s_cri::v1 as cri;

use crate::clock::now_ns;
use crate::container::ContainerRecord;
use crate::sandbox::record::host_network;
use crate::sandbox::{Phase, SandboxRecord};

use super::container::{self, Context};
use super::{cgroup, netdev, StatsError, Subject};

/// The CRI attributes of a pod.
pub fn attributes(rec: &SandboxRecord) -> cri::PodSandboxAttributes {
    cri::PodSandboxAttributes {
        id: rec.id.clone(),
        metadata: rec.config.metadata.clone(),
        labels: rec.config.labels.clone(),
        annotations: rec.config.annotations.clone(),
    }
}

/// The stats of pod `rec` now, with the stats of `containers` (its
/// containers, in the order given). [`StatsError::NotReady`] unless the
/// pod is Ready; any other part that cannot be read is logged and left
/// out.
pub fn stats(
    ctx: &Context<'_>,
    rec: &SandboxRecord,
    containers: &[ContainerRecord],
) -> Result<cri::PodSandboxStats, StatsError> {
    if rec.phase != Phase::Ready {
        return Err(StatsError::NotReady(rec.id.clone()));
    }
    let mut linux = cri::LinuxPodSandboxStats::default();
    let timestamp = now_ns();
    match cgroup::pod_cgroups_path(&rec.cgroup_parent, &rec.id)
        .and_then(|path| Ok((cgroup::read(&ctx.host, &path, &rec.id)?, path)))
    {
        Ok((Some(s), path)) => {
            let at = Instant::now();
            let rate = s
                .cpu
                .usage_ns
                .and_then(|u| ctx.sampler.cpu.nano_cores(Subject::Pod, &rec.id, u, at));
            linux.cpu = cgroup::cpu_usage(&s.cpu, timestamp, rate);
            linux.memory = cgroup::memory_usage(&s.memory, timestamp);
            let count = match s.pids.current {
                Some(n) => Some(n),
                None => cgroup::process_count(&ctx.host, &path, &rec.id).unwrap_or_else(|e| {
                    tracing::warn!(pod = %rec.id, error = %e, "pod process count");
                    None
                }),
            };
            linux.process = count.map(|value| cri::ProcessUsage {
                timestamp,
                process_count: Some(cri::UInt64Value { value }),
            });
        }
        Ok((None, _)) => tracing::debug!(pod = %rec.id, "no pod cgroup: no CPU or memory stats"),
        Err(e) => tracing::warn!(pod = %rec.id, error = %e, "pod cgroup stats"),
    }
    if !host_network(&rec.ns_options()) {
        if let Some(netns) = &rec.netns {
            match netdev::read_in(netns) {
                Ok(c) => linux.network = Some(netdev::usage(&c, now_ns())),
                Err(e) => tracing::warn!(pod = %rec.id, error = %e, "pod network stats"),
            }
        }
    }
    linux.containers = containers
        .iter()
        .map(|c| container::stats(ctx, c))
        .collect();
    Ok(cri::PodSandboxStats {
        attributes: Some(attributes(rec)),
        linux: Some(linux),
        windows: None,
    })
}
