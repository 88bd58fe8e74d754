//! RemoveContainer, and the teardown every failure path shares: end the
//! process and its shim, unmount the root filesystem, delete the bundle,
//! the writable layer and the record — each step idempotent.

use std::sync::Arc;

use crate::task::Task;

use super::registry::Containers;
use super::{ContainerError, ContainerRecord, Phase};

/// Removes the container `id`, stopping it first if it runs. Removing an
/// unknown container succeeds (kubelet retries removals).
pub async fn remove(cs: &Arc<Containers>, id: &str) -> Result<(), ContainerError> {
    let c = match cs.get(id) {
        Ok(c) => c,
        Err(ContainerError::NotFound(_)) if !id.is_empty() => return Ok(()),
        Err(e) => return Err(e),
    };
    if matches!(c.record().phase, Phase::Running | Phase::Created) {
        super::stop::stop(cs, id, 0).await?;
    }
    let _op = c.op.lock().await;
    let (rec, ()) = cs.update(&c, |r| r.phase = Phase::Removing)?;
    // The last step of teardown deletes the record and frees its name.
    teardown(cs, &rec).await
}

/// Undoes everything of `rec`, then deletes its record.
pub async fn teardown(cs: &Containers, rec: &ContainerRecord) -> Result<(), ContainerError> {
    let runtime_root = rec.shim.runtime_state_root(&rec.runtime_root);
    let task = Task {
        id: &rec.id,
        bundle: &rec.bundle,
        shim_address: &rec.shim_address,
        runtime_binary: &rec.runtime_binary,
        runtime_root: &runtime_root,
        cgroups_path: &rec.cgroups_path,
    };
    let effects = &cs.sandboxes.effects;
    let stopped = effects
        .tasks
        .stop(&task, &cs.sandboxes.launch(&rec.id, &rec.bundle, &rec.shim))
        .await?;
    cs.fifo_io.remove(&rec.id);
    // Whatever a shim caught mid-create may still have made.
    effects.tasks.reap(&task, &stopped).await;
    effects.node.unmount_rootfs(&rec.rootfs()).await?;
    // Image volumes: each mounted read-only in the bundle (or not yet).
    for i in 0..rec.image_volumes.len() {
        effects
            .node
            .unmount_rootfs(&rec.image_volume_dir(i))
            .await?;
    }
    // Idmapped views (a pod in its own user namespace) are detached before
    // anything is deleted: removing a directory would reach through a
    // still-attached view into the volume behind it.
    for views in [rec.bundle.join("idmap"), rec.data.join("idmap")] {
        crate::idmap::detach_all(&views)?;
    }
    for dir in [&rec.bundle, &rec.data] {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ContainerError::io("remove", dir, e)),
        }
    }
    cs.delete(&rec.id)
}
