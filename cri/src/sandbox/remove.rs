//! RemovePodSandbox, and the teardown every failure path shares: undo
//! whatever a record says was made — infra and shim, CNI attachment, shm,
//! pinned namespaces, pod cgroup, pod directory — each step idempotent, so
//! a teardown interrupted by a crash is simply run again.

use std::sync::Arc;

use super::registry::{Sandbox, Sandboxes};
use super::{infra, stop, Phase, SandboxError, SandboxRecord};

/// Removes the pod `id`: stops it if needed, tears everything down and
/// forgets it. Removing an unknown pod is not an error (kubelet retries
/// removals); the caller maps NotFound as it wants.
pub async fn remove(s: &Arc<Sandboxes>, id: &str) -> Result<(), SandboxError> {
    let sb = s.get(id)?;
    let _op = sb.op.lock().await;
    let mut rec = sb.record();
    if rec.phase == Phase::Ready {
        stop::stop_locked(s, &sb, &mut rec).await?;
    }
    let (mut rec, ()) = s.update(&sb, |r| r.phase = Phase::Removing)?;
    // Its last step deletes the record and frees the pod's name.
    teardown(s, &sb, &mut rec).await
}

/// Undoes everything `rec` (the record of `sb`) records, then deletes the
/// record. On error the record stays (with what is already undone
/// marked), to be retried.
pub async fn teardown(
    s: &Sandboxes,
    sb: &Sandbox,
    rec: &mut SandboxRecord,
) -> Result<(), SandboxError> {
    let stopped = infra::stop(s, rec).await?;
    infra::reap(s, rec, &stopped).await;
    rec.shim_address.clear();
    if rec.network_attached {
        stop::network_down(s, rec).await?;
        rec.network_attached = false;
        s.update(sb, |r| {
            r.network_attached = false;
            r.shim_address.clear();
        })?;
    }
    stop::release(s, rec).await?;
    if rec.cgroup_created {
        s.effects
            .node
            .remove_cgroup(&rec.cgroup_parent, s.systemd_cgroups())
            .await?;
    }
    match std::fs::remove_dir_all(&rec.dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(SandboxError::io("remove", &rec.dir, e)),
    }
    s.delete(&rec.id)
}
