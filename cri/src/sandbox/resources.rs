//! Pod-level resources: the `overhead` and `resources` of a pod config
//! (what kubelet sends in RunPodSandbox, and again in
//! UpdatePodSandboxResources after an in-place resize).
//!
//! kubelet sizes the pod cgroup itself when it hands us one of its own
//! (`cgroup_parent`); the daemon then only records the new figures, as
//! containerd does. A pod cgroup the daemon made (no `cgroup_parent`) has
//! nobody else to size it, so the daemon applies the pod's total there:
//! the containers' sum plus the overhead. An update that the kernel
//! refuses (a limit below what the pod uses) puts the old limits back and
//! changes nothing.

use std::sync::Arc;

use k8s_cri::v1 as cri;
use oci_spec::runtime::LinuxResources;

use super::registry::Sandboxes;
use super::{cgroup, Phase, SandboxError};

/// The period kubelet and the kernel use when none is given (100 ms).
const DEFAULT_PERIOD: i64 = 100_000;

/// The pod's total: `resources` (the sum of its containers') plus
/// `overhead`. A dimension the containers leave unlimited stays unlimited
/// (-1), so that lifting a limit in a resize reaches the cgroup.
pub fn pod_total(
    overhead: &cri::LinuxContainerResources,
    resources: &cri::LinuxContainerResources,
) -> cri::LinuxContainerResources {
    let memory = if resources.memory_limit_in_bytes > 0 {
        resources.memory_limit_in_bytes + overhead.memory_limit_in_bytes.max(0)
    } else {
        -1
    };
    let period = if resources.cpu_period > 0 {
        resources.cpu_period
    } else {
        DEFAULT_PERIOD
    };
    let quota = if resources.cpu_quota > 0 {
        // The overhead's quota, scaled to the containers' period.
        let o_period = if overhead.cpu_period > 0 {
            overhead.cpu_period
        } else {
            DEFAULT_PERIOD
        };
        resources.cpu_quota + overhead.cpu_quota.max(0) * period / o_period
    } else {
        -1
    };
    let shares = if resources.cpu_shares > 0 {
        resources.cpu_shares + overhead.cpu_shares.max(0)
    } else {
        0
    };
    let mut hugepages = resources.hugepage_limits.clone();
    for o in &overhead.hugepage_limits {
        if let Some(h) = hugepages.iter_mut().find(|h| h.page_size == o.page_size) {
            h.limit = h.limit.saturating_add(o.limit);
        }
    }
    cri::LinuxContainerResources {
        cpu_period: period,
        cpu_quota: quota,
        cpu_shares: shares,
        memory_limit_in_bytes: memory,
        memory_swap_limit_in_bytes: if memory > 0 && resources.memory_swap_limit_in_bytes > 0 {
            resources.memory_swap_limit_in_bytes + overhead.memory_limit_in_bytes.max(0)
        } else {
            memory
        },
        cpuset_cpus: resources.cpuset_cpus.clone(),
        cpuset_mems: resources.cpuset_mems.clone(),
        hugepage_limits: hugepages,
        unified: resources.unified.clone(),
        // A cgroup has no OOM score; the containers carry theirs.
        oom_score_adj: 0,
    }
}

/// The OCI resources a pod cgroup gets for `overhead` + `resources`; the
/// values are checked here, before anything is written.
pub fn pod_limits(
    overhead: &cri::LinuxContainerResources,
    resources: &cri::LinuxContainerResources,
) -> Result<LinuxResources, SandboxError> {
    for (what, r) in [("overhead", overhead), ("resources", resources)] {
        // -1 is OCI's "unlimited", as zero is here; other negative values
        // mean nothing in a sum.
        let negative = [
            ("cpu_period", r.cpu_period),
            ("cpu_quota", r.cpu_quota),
            ("cpu_shares", r.cpu_shares),
            ("memory_limit_in_bytes", r.memory_limit_in_bytes),
            ("memory_swap_limit_in_bytes", r.memory_swap_limit_in_bytes),
        ]
        .into_iter()
        .find(|(_, v)| *v < -1);
        if let Some((field, v)) = negative {
            return Err(SandboxError::InvalidArgument(format!(
                "pod {what}: {field} {v} is negative"
            )));
        }
        let r = &unlimited_as_zero(r);
        // The container rules (page sizes, cpusets, unified keys) hold for
        // each part as well.
        crate::cgroup_limits::linux_resources(r)
            .map_err(|e| SandboxError::InvalidArgument(format!("pod {what}: resources: {e}")))?;
    }
    let total = pod_total(&unlimited_as_zero(overhead), &unlimited_as_zero(resources));
    // No device rules: the pod cgroup's are not ours to change.
    let (built, _) = crate::cgroup_limits::linux_resources(&total)
        .map_err(|e| SandboxError::InvalidArgument(format!("pod resources: resources: {e}")))?;
    Ok(built)
}

/// `r` with OCI's unlimited (-1) written as CRI's unset (0).
fn unlimited_as_zero(r: &cri::LinuxContainerResources) -> cri::LinuxContainerResources {
    let z = |v: i64| v.max(0);
    cri::LinuxContainerResources {
        cpu_period: z(r.cpu_period),
        cpu_quota: z(r.cpu_quota),
        cpu_shares: z(r.cpu_shares),
        memory_limit_in_bytes: z(r.memory_limit_in_bytes),
        memory_swap_limit_in_bytes: z(r.memory_swap_limit_in_bytes),
        ..r.clone()
    }
}

/// The limits a pod config asks for its cgroup, if it names any.
pub fn of_config(c: &cri::PodSandboxConfig) -> Result<Option<LinuxResources>, SandboxError> {
    let Some(l) = c
        .linux
        .as_ref()
        .filter(|l| l.overhead.is_some() || l.resources.is_some())
    else {
        return Ok(None);
    };
    pod_limits(
        &l.overhead.clone().unwrap_or_default(),
        &l.resources.clone().unwrap_or_default(),
    )
    .map(Some)
}

/// Writes `limits` to the pod cgroup `pod` (systemd driver: and sets them
/// on its slice).
pub fn apply(pod: &str, limits: &LinuxResources, systemd: bool) -> Result<(), SandboxError> {
    cgroup::manager(pod, systemd)?
        .apply(limits)
        .map_err(|source| SandboxError::Cgroup {
            path: pod.to_string(),
            source,
        })
}

/// UpdatePodSandboxResources: records the pod's new `overhead` and
/// `resources` in its config and, where the pod cgroup is the daemon's,
/// applies the new total to it. A field left unset keeps the recorded
/// value (kubelet sends both on every resize).
pub async fn update(
    s: &Arc<Sandboxes>,
    id: &str,
    overhead: Option<&cri::LinuxContainerResources>,
    resources: Option<&cri::LinuxContainerResources>,
) -> Result<(), SandboxError> {
    let sb = s.get(id)?;
    let _op = sb.op.lock().await;
    let rec = sb.record();
    let linux = rec.config.linux.clone().unwrap_or_default();
    let old_overhead = linux.overhead.clone().unwrap_or_default();
    let old_resources = linux.resources.clone().unwrap_or_default();
    let new_overhead = overhead.cloned().unwrap_or_else(|| old_overhead.clone());
    let new_resources = resources.cloned().unwrap_or_else(|| old_resources.clone());
    let limits = pod_limits(&new_overhead, &new_resources)?;
    match rec.phase {
        Phase::Ready if rec.cgroup_created => {
            if let Err(e) = apply(&rec.cgroup_parent, &limits, s.systemd_cgroups()) {
                // Put back what may have been half written.
                if let Ok(old) = pod_limits(&old_overhead, &old_resources) {
                    if let Err(e) = apply(&rec.cgroup_parent, &old, s.systemd_cgroups()) {
                        tracing::warn!(pod = %rec.id, error = %e, "restore the pod's old limits");
                    }
                }
                return Err(SandboxError::InvalidArgument(format!(
                    "update pod {} resources: {e}",
                    rec.id
                )));
            }
        }
        Phase::Ready | Phase::NotReady => {}
        Phase::Creating | Phase::Removing => {
            return Err(SandboxError::FailedPrecondition(format!(
                "pod sandbox {} is {:?}",
                rec.id, rec.phase
            )));
        }
    }
    s.update(&sb, |r| {
        let linux = r.config.linux.get_or_insert_with(Default::default);
        linux.overhead = Some(new_overhead);
        linux.resources = Some(new_resources);
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(shares: i64, quota: i64, period: i64, memory: i64) -> cri::LinuxContainerResources {
        cri::LinuxContainerResources {
            cpu_shares: shares,
            cpu_quota: quota,
            cpu_period: period,
            memory_limit_in_bytes: memory,
            ..Default::default()
        }
    }

    #[test]
    fn the_pod_total_is_the_containers_plus_the_overhead() {
        let t = pod_total(
            &res(20, 10_000, 100_000, 16 << 20),
            &res(1024, 150_000, 100_000, 256 << 20),
        );
        assert_eq!(t.cpu_shares, 1044);
        assert_eq!(t.cpu_quota, 160_000);
        assert_eq!(t.cpu_period, 100_000);
        assert_eq!(t.memory_limit_in_bytes, (256 + 16) << 20);
        assert_eq!(t.memory_swap_limit_in_bytes, (256 + 16) << 20);
        assert_eq!(t.oom_score_adj, 0);
    }

    #[test]
    fn the_overheads_quota_is_scaled_to_the_containers_period() {
        // 5 ms per 50 ms is 10 ms per 100 ms.
        let t = pod_total(&res(0, 5_000, 50_000, 0), &res(0, 100_000, 100_000, 0));
        assert_eq!(t.cpu_quota, 110_000);
    }

    #[test]
    fn unlimited_containers_leave_the_pod_unlimited() {
        let t = pod_total(&res(2, 10_000, 0, 16 << 20), &res(0, 0, 0, 0));
        assert_eq!(t.memory_limit_in_bytes, -1);
        assert_eq!(t.cpu_quota, -1);
        assert_eq!(t.cpu_shares, 0);
        let l = pod_limits(&res(2, 10_000, 0, 16 << 20), &res(0, 0, 0, 0)).expect("limits");
        assert_eq!(l.memory().as_ref().and_then(|m| m.limit()), Some(-1));
        assert_eq!(l.cpu().as_ref().and_then(|c| c.quota()), Some(-1));
        assert!(l.devices().is_none());
    }

    #[test]
    fn minus_one_is_unlimited_as_in_oci() {
        let l = pod_limits(&res(0, -1, 0, -1), &res(0, -1, 0, -1)).expect("limits");
        assert_eq!(l.memory().as_ref().and_then(|m| m.limit()), Some(-1));
        assert_eq!(l.cpu().as_ref().and_then(|c| c.quota()), Some(-1));
    }

    #[test]
    fn hugepages_add_up_per_page_size() {
        let hp = |size: &str, limit| cri::HugepageLimit {
            page_size: size.into(),
            limit,
        };
        let o = cri::LinuxContainerResources {
            hugepage_limits: vec![hp("2MB", 2 << 20)],
            ..Default::default()
        };
        let r = cri::LinuxContainerResources {
            hugepage_limits: vec![hp("2MB", 4 << 20), hp("1GB", 1 << 30)],
            ..Default::default()
        };
        let t = pod_total(&o, &r);
        assert_eq!(
            t.hugepage_limits,
            vec![hp("2MB", 6 << 20), hp("1GB", 1 << 30)]
        );
    }

    #[test]
    fn invalid_values_are_refused_naming_the_part() {
        let e = pod_limits(&res(0, 0, 0, -5), &res(0, 0, 0, 0)).expect_err("negative");
        assert!(e.to_string().contains("overhead"), "{e}");
        assert!(e.to_string().contains("memory_limit_in_bytes"), "{e}");
        let bad = cri::LinuxContainerResources {
            hugepage_limits: vec![cri::HugepageLimit {
                page_size: String::new(),
                limit: 1,
            }],
            ..Default::default()
        };
        let e = pod_limits(&res(0, 0, 0, 0), &bad).expect_err("no page size");
        assert!(e.to_string().starts_with("pod resources:"), "{e}");
    }
}
