//! UpdateContainerResources: new cgroup limits for a container, applied
//! live through its shim (`runtime update`) and kept in its record so
//! ContainerStatus reports them — kubelet's in-place pod resize.
//!
//! As containerd does, a field left zero keeps its current value, and a
//! container that is no longer running only has its record updated.
//! Invalid values are refused before anything changes; a runtime that
//! fails part way has the old limits put back.

use std::sync::Arc;

use k8s_cri::v1 as cri;

use crate::shim_client::Shim;

use super::registry::Containers;
use super::spec::resources;
use super::{ContainerError, Phase};

/// `new` laid over `old`: every non-zero (non-empty) field of `new` wins.
pub fn merge(
    old: &cri::LinuxContainerResources,
    new: &cri::LinuxContainerResources,
) -> cri::LinuxContainerResources {
    fn pick<T: Clone + Default + PartialEq>(o: &T, n: &T) -> T {
        if *n == T::default() {
            o.clone()
        } else {
            n.clone()
        }
    }
    let mut unified = old.unified.clone();
    unified.extend(new.unified.clone());
    cri::LinuxContainerResources {
        cpu_period: pick(&old.cpu_period, &new.cpu_period),
        cpu_quota: pick(&old.cpu_quota, &new.cpu_quota),
        cpu_shares: pick(&old.cpu_shares, &new.cpu_shares),
        memory_limit_in_bytes: pick(&old.memory_limit_in_bytes, &new.memory_limit_in_bytes),
        oom_score_adj: pick(&old.oom_score_adj, &new.oom_score_adj),
        cpuset_cpus: pick(&old.cpuset_cpus, &new.cpuset_cpus),
        cpuset_mems: pick(&old.cpuset_mems, &new.cpuset_mems),
        hugepage_limits: pick(&old.hugepage_limits, &new.hugepage_limits),
        unified,
        memory_swap_limit_in_bytes: pick(
            &old.memory_swap_limit_in_bytes,
            &new.memory_swap_limit_in_bytes,
        ),
    }
}

/// The OCI resources `runtime update` gets: the limits only — the device
/// rules are the container's own and are not resent.
fn oci_update(r: &cri::LinuxContainerResources) -> Result<Vec<u8>, ContainerError> {
    let mut built = resources::resources(Some(r), &[], false)?.resources;
    built.set_devices(None);
    serde_json::to_vec(&built)
        .map_err(|e| ContainerError::InvalidArgument(format!("encode resources: {e}")))
}

/// Writes a process's oom_score_adj (runtimes cannot change it live).
fn set_oom_score_adj(pid: u32, adj: i64) -> Result<(), ContainerError> {
    let path = format!("/proc/{pid}/oom_score_adj");
    std::fs::write(&path, adj.to_string()).map_err(|e| {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            ContainerError::FailedPrecondition(format!(
                "oom_score_adj {adj}: lowering it needs CAP_SYS_RESOURCE, which the daemon lacks"
            ))
        } else {
            ContainerError::io("write", path, e)
        }
    })
}

/// Applies `new` to container `id`.
pub async fn update(
    cs: &Arc<Containers>,
    id: &str,
    new: &cri::LinuxContainerResources,
) -> Result<(), ContainerError> {
    let c = cs.get(id)?;
    let _op = c.op.lock().await;
    let mut rec = c.record();
    let old = rec
        .config
        .linux
        .as_ref()
        .and_then(|l| l.resources.clone())
        .unwrap_or_default();
    let merged = merge(&old, new);
    // Everything is checked before anything changes.
    let body = oci_update(&merged)?;
    match rec.phase {
        Phase::Created | Phase::Running => {
            let shim = Shim::connect(&rec.shim_address)
                .await
                .map_err(|e| ContainerError::from_shim(&rec.id, e))?;
            let adj_changed = merged.oom_score_adj != old.oom_score_adj && rec.pid != 0;
            if adj_changed {
                set_oom_score_adj(rec.pid, merged.oom_score_adj)?;
            }
            if let Err(e) = shim.update(&rec.id, body).await {
                // Put back what may have been half applied.
                if let Ok(prev) = oci_update(&old) {
                    if let Err(e) = shim.update(&rec.id, prev).await {
                        tracing::warn!(container = %rec.id, error = %e, "restore old resources");
                    }
                }
                if adj_changed {
                    let _ = set_oom_score_adj(rec.pid, old.oom_score_adj);
                }
                return Err(match ContainerError::from_shim(&rec.id, e) {
                    ContainerError::Shim(e) => ContainerError::InvalidArgument(format!(
                        "update container {} resources: {e}",
                        rec.id
                    )),
                    other => other,
                });
            }
        }
        Phase::Exited => {}
        Phase::Creating | Phase::Removing => {
            return Err(ContainerError::FailedPrecondition(format!(
                "container {} is {:?}",
                rec.id, rec.phase
            )));
        }
    }
    rec.config
        .linux
        .get_or_insert_with(Default::default)
        .resources = Some(merged);
    cs.save(&c, rec)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_fields_keep_their_old_values() {
        let old = cri::LinuxContainerResources {
            cpu_shares: 512,
            cpu_quota: 50_000,
            cpu_period: 100_000,
            memory_limit_in_bytes: 64 << 20,
            oom_score_adj: 100,
            cpuset_cpus: "0".into(),
            unified: [("memory.high".to_string(), "1000000".to_string())].into(),
            ..Default::default()
        };
        let new = cri::LinuxContainerResources {
            cpu_quota: 20_000,
            memory_limit_in_bytes: 128 << 20,
            unified: [("pids.max".to_string(), "10".to_string())].into(),
            ..Default::default()
        };
        let m = merge(&old, &new);
        assert_eq!(m.cpu_shares, 512);
        assert_eq!(m.cpu_quota, 20_000);
        assert_eq!(m.cpu_period, 100_000);
        assert_eq!(m.memory_limit_in_bytes, 128 << 20);
        assert_eq!(m.oom_score_adj, 100);
        assert_eq!(m.cpuset_cpus, "0");
        assert_eq!(m.unified.len(), 2);
    }

    #[test]
    fn the_update_carries_limits_but_no_device_rules() {
        let r = cri::LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            cpu_shares: 256,
            ..Default::default()
        };
        let v: serde_json::Value =
            serde_json::from_slice(&oci_update(&r).expect("update")).expect("json");
        assert_eq!(v["memory"]["limit"], 64 << 20);
        assert_eq!(v["cpu"]["shares"], 256);
        assert!(v.get("devices").is_none(), "{v}");
    }

    #[test]
    fn invalid_values_are_refused() {
        let r = cri::LinuxContainerResources {
            cpu_shares: -5,
            ..Default::default()
        };
        assert!(matches!(oci_update(&r), Err(ContainerError::Spec(_))));
        let r = cri::LinuxContainerResources {
            oom_score_adj: 5000,
            ..Default::default()
        };
        assert!(oci_update(&r).is_err());
    }
}
