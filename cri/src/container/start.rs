//! StartContainer, and the watcher that records how a container ends.

use std::sync::Arc;

use crate::events::ShimEvent;
use crate::sandbox::run::now_ns;
use crate::shim_client::Shim;

use super::registry::{Container, Containers};
use super::{ContainerError, Phase};

/// Starts a created container.
pub async fn start(cs: &Arc<Containers>, id: &str) -> Result<(), ContainerError> {
    let c = cs.get(id)?;
    let _op = c.op.lock().await;
    let mut rec = c.record();
    if rec.phase != Phase::Created {
        return Err(ContainerError::FailedPrecondition(format!(
            "container {} is {:?}, not Created",
            rec.id, rec.phase
        )));
    }
    let shim = Shim::connect(&rec.shim_address).await?;
    match shim.start(&rec.id, "").await {
        Ok(pid) => {
            rec.pid = pid;
            rec.phase = Phase::Running;
            rec.started_at = now_ns();
            cs.save(&c, rec)?;
            watch(cs.clone(), c.clone());
            Ok(())
        }
        Err(e) => {
            // A process that could not start has ended: report why.
            rec.phase = Phase::Exited;
            rec.finished_at = now_ns();
            rec.exit_code = 128;
            rec.reason = "StartError".into();
            rec.message = e.to_string();
            cs.save(&c, rec)?;
            Err(e.into())
        }
    }
}

/// The CRI reason for an exit.
pub fn reason(exit_code: i32, oom: bool) -> &'static str {
    if oom {
        "OOMKilled"
    } else if exit_code == 0 {
        "Completed"
    } else {
        "Error"
    }
}

/// Waits (through the shim) for the container's process to end and
/// records the exit. A shim that disappears means the container is gone
/// with it (exit 255, as containerd reports an unknown exit).
pub fn watch(cs: Arc<Containers>, c: Arc<Container>) {
    tokio::spawn(async move {
        let rec = c.record();
        let exit = match Shim::connect(&rec.shim_address).await {
            Ok(shim) => shim.wait(&rec.id, "").await.ok(),
            Err(_) => None,
        };
        let _op = c.op.lock().await;
        let mut rec = c.record();
        if rec.phase != Phase::Running {
            return;
        }
        let oom = rec.oom_killed || oom_since_start(&rec);
        rec.phase = Phase::Exited;
        match exit {
            Some(e) => {
                rec.exit_code = e.status as i32;
                // The shim stamps the exit; a process that ends at once
                // can beat the daemon's own start stamp: never report an
                // exit before the start.
                rec.finished_at = if e.at_ns > 0 { e.at_ns } else { now_ns() }.max(rec.started_at);
            }
            None => {
                rec.exit_code = 255;
                rec.finished_at = now_ns();
                rec.message = "shim is gone; exit status unknown".into();
            }
        }
        rec.oom_killed = oom;
        rec.reason = reason(rec.exit_code, oom).into();
        tracing::info!(container = %rec.id, exit_code = rec.exit_code, reason = %rec.reason, "container exited");
        if let Err(e) = cs.save(&c, rec) {
            tracing::error!(error = %e, "record container exit");
        }
    });
}

/// Whether the container's cgroup saw an OOM kill (memory.events oom_kill
/// on v2, memory.oom_control's oom_kill on v1) — read when it exits, so a
/// missed event still yields OOMKilled.
fn oom_since_start(rec: &super::ContainerRecord) -> bool {
    carapace_cgroups::Manager::new(Some(&rec.cgroups_path), &rec.id, false)
        .and_then(|m| m.oom_kill_count())
        .map(|n| n > 0)
        .unwrap_or(false)
}

/// Marks containers OOM-killed from the shims' `/tasks/oom` events.
pub fn follow_oom_events(cs: Arc<Containers>, mut rx: tokio::sync::broadcast::Receiver<ShimEvent>) {
    tokio::spawn(async move {
        loop {
            let ev = match rx.recv().await {
                Ok(ev) => ev,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            };
            if ev.topic != "/tasks/oom" {
                continue;
            }
            use containerd_shim_protos::protobuf::Message;
            let Ok(oom) =
                containerd_shim_protos::events::task::TaskOOM::parse_from_bytes(&ev.event.value)
            else {
                continue;
            };
            if let Ok(c) = cs.get(&oom.container_id) {
                let mut rec = c.record();
                if !rec.oom_killed {
                    rec.oom_killed = true;
                    let _ = cs.save(&c, rec);
                }
            }
        }
    });
}
