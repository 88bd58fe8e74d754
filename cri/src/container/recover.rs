//! Restart recovery for containers: half-created ones are rolled back,
//! half-removed ones removed, running ones watched again through their
//! shims, and those whose shim is gone recorded as exited.

use std::sync::Arc;

use crate::shim_effects::{TaskState, TaskStatus};

use super::registry::Containers;
use super::{ContainerError, ContainerRecord, Phase};

/// Records in `rec` the end of a container that ended while the daemon
/// was down: the status its shim kept, or, with the shim gone, an unknown
/// exit (255), as containerd reports one.
fn record_end_while_down(rec: &mut ContainerRecord, state: Option<&TaskState>) {
    rec.phase = Phase::Exited;
    match state.and_then(|s| s.exit) {
        Some(exit) => {
            rec.exit_code = exit.status as i32;
            rec.finished_at = if exit.at_ns > 0 {
                exit.at_ns
            } else {
                crate::clock::now_ns()
            };
        }
        _ => {
            rec.exit_code = 255;
            rec.finished_at = crate::clock::now_ns();
            rec.message = "shim is gone; exit status unknown".into();
        }
    }
    rec.reason = super::start::reason(rec.exit_code, rec.oom_killed).into();
}

/// Recovers every stored container. Run after the pods are recovered.
pub async fn recover(cs: &Arc<Containers>) -> Result<(), ContainerError> {
    let records = cs.stored()?;
    for (id, rec) in records {
        let name_key = cs
            .sandboxes
            .get(&rec.sandbox_id)
            .map(|s| ContainerRecord::name_key(&rec.config, &s.record().config))
            .unwrap_or_else(|_| format!("{}_orphan", rec.id));
        if rec.shim.is_v2() {
            crate::task_api::relearn(&rec.shim_address, &rec.bundle);
        }
        match rec.phase {
            Phase::Creating | Phase::Removing => {
                if let Err(e) = super::remove::teardown(cs, &rec).await {
                    tracing::error!(container = %id, error = %e, "cleanup after restart failed; kept for RemoveContainer");
                    let _ = cs.reserve_name(&name_key, &id);
                    let c = cs.insert(rec);
                    cs.update(&c, |r| r.phase = Phase::Removing)?;
                }
            }
            Phase::Created | Phase::Running => {
                let state = cs
                    .sandboxes
                    .effects
                    .tasks
                    .state(&rec.shim_address, &rec.id)
                    .await;
                let status = state.map(|s| s.status);
                let running = status == Some(TaskStatus::Running);
                let created = status == Some(TaskStatus::Created);
                let ended = rec.phase == Phase::Running && !running
                    || rec.phase == Phase::Created && !created;
                let _ = cs.reserve_name(&name_key, &id);
                let c = cs.insert(rec);
                if ended {
                    cs.update(&c, |r| record_end_while_down(r, state.as_ref()))?;
                } else {
                    let r = c.record();
                    if r.shim.is_v2() {
                        // The shim kept its FIFO ends; output written
                        // while the daemon was down waits in them.
                        if let Some(p) = super::fifo_io::resume(&r.id, &r.bundle, &r.log_path) {
                            cs.fifo_io.insert(&r.id, p);
                        }
                    }
                    if r.phase == Phase::Running {
                        super::start::watch(cs.clone(), c);
                    }
                }
            }
            Phase::Exited => {
                let _ = cs.reserve_name(&name_key, &id);
                cs.insert(rec);
            }
        }
    }
    Ok(())
}
