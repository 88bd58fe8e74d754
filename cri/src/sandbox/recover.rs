//! Restart recovery: load every sandbox record and bring each to a state
//! that is true again — a pod caught half-created is rolled back, one
//! caught half-removed is removed, a Ready pod whose infra shim still runs
//! is watched again, and one whose infra is gone turns NotReady.

use std::sync::Arc;

use crate::shim_effects::TaskStatus;

use super::registry::Sandboxes;
use super::{infra, remove, Phase, SandboxError, SandboxRecord};

/// Recovers every stored sandbox. A pod that cannot be recovered is kept
/// (and logged), never dropped: RemovePodSandbox can still clean it.
pub async fn recover(s: &Arc<Sandboxes>) -> Result<(), SandboxError> {
    let records = s.stored()?;
    for (id, rec) in records {
        let name = SandboxRecord::name_key(&rec.config);
        if rec.shim.is_v2() {
            crate::task_api::relearn(&rec.shim_address, &rec.bundle());
        }
        match rec.phase {
            Phase::Creating | Phase::Removing => {
                tracing::info!(pod = %id, phase = ?rec.phase, "finishing interrupted pod sandbox operation");
                let phase = rec.phase;
                // Indexed first, so every teardown step goes through the
                // registry; the teardown's last step deletes it again.
                let _ = s.reserve_name(&name, &id);
                let sb = s.adopt(rec.clone());
                let mut rec = rec;
                if let Err(e) = remove::teardown(s, &sb, &mut rec).await {
                    tracing::error!(pod = %id, error = %e, "cleanup after restart failed; kept for RemovePodSandbox");
                    s.update(&sb, |r| r.phase = Phase::Removing)?;
                } else {
                    tracing::info!(pod = %id, ?phase, "interrupted pod sandbox cleaned up");
                }
            }
            Phase::Ready => {
                resume_shim_log(&rec);
                let alive = s
                    .effects
                    .tasks
                    .state(&rec.shim_address, &rec.id)
                    .await
                    .is_some_and(|st| st.status == TaskStatus::Running);
                let _ = s.reserve_name(&name, &id);
                let sb = s.adopt(rec);
                if alive {
                    infra::watch(s.clone(), sb);
                } else {
                    tracing::info!(pod = %id, "infra process gone while the daemon was down: pod is NotReady");
                    s.update(&sb, |r| r.phase = Phase::NotReady)?;
                }
            }
            Phase::NotReady => {
                resume_shim_log(&rec);
                let _ = s.reserve_name(&name, &id);
                s.adopt(rec);
            }
        }
    }
    Ok(())
}

/// A pod's shim v2 (which also runs its containers) logs to the `log` FIFO
/// of the sandbox's bundle; without a reader it would die at its next log
/// line, so it gets one again at once.
fn resume_shim_log(rec: &SandboxRecord) {
    if !rec.shim.is_v2() {
        return;
    }
    let socket = rec
        .shim_address
        .strip_prefix("unix://")
        .unwrap_or(&rec.shim_address);
    if !socket.is_empty() && std::path::Path::new(socket).exists() {
        crate::shim_log::resume(&rec.bundle(), &rec.id, &rec.shim_address);
    }
}
