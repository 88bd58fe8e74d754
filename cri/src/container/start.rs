//! StartContainer, and the watcher that records how a container ends.

use std::sync::Arc;

use crate::clock::now_ns;
use crate::events::ShimEvent;

use super::registry::{Container, Containers};
use super::{ContainerError, ContainerRecord, Phase};

/// Starts a created container.
pub async fn start(cs: &Arc<Containers>, id: &str) -> Result<(), ContainerError> {
    let c = cs.get(id)?;
    let _op = c.op.lock().await;
    let rec = c.record();
    if rec.phase != Phase::Created {
        return Err(ContainerError::FailedPrecondition(format!(
            "container {} is {:?}, not Created",
            rec.id, rec.phase
        )));
    }
    let started = cs
        .sandboxes
        .effects
        .tasks
        .start(&rec.shim_address, &rec.id)
        .await;
    match started {
        Ok(pid) => {
            cs.update(&c, |r| {
                r.pid = pid;
                r.phase = Phase::Running;
                r.started_at = now_ns();
            })?;
            watch(cs.clone(), c.clone());
            Ok(())
        }
        Err(e) => {
            // A process that could not start has ended: report why.
            cs.update(&c, |r| {
                r.phase = Phase::Exited;
                r.finished_at = now_ns();
                r.exit_code = 128;
                r.reason = START_ERROR.into();
                r.message = e.to_string();
            })?;
            Err(e.into())
        }
    }
}

/// The CRI reason of a container whose process could not be started.
pub const START_ERROR: &str = "StartError";
/// The CRI reason of a container the kernel OOM-killed.
pub const OOM_KILLED: &str = "OOMKilled";

/// The CRI reason for an exit.
pub fn reason(exit_code: i32, oom: bool) -> &'static str {
    if oom {
        OOM_KILLED
    } else if exit_code == 0 {
        "Completed"
    } else {
        "Error"
    }
}

/// How the exit watcher learnt of an end: the shim's exit status and
/// time, or nothing (the shim is gone).
#[derive(Clone, Copy, Debug)]
pub struct ExitSeen {
    /// The exit status, or None when the shim is gone.
    pub status: Option<i32>,
    /// When, as the shim stamped it (0: unknown).
    pub at_ns: i64,
    /// Whether the container's cgroup counted an OOM kill.
    pub cgroup_oom: bool,
}

/// Records a running container's exit in `rec` (nothing if it is not
/// running: a stop, a start error or recovery recorded the end first).
/// An OOM kill seen before, by event or by the cgroup's count, makes the
/// reason OOMKilled.
pub fn record_exit(rec: &mut ContainerRecord, exit: ExitSeen) {
    if rec.phase != Phase::Running {
        return;
    }
    rec.phase = Phase::Exited;
    match exit.status {
        Some(status) => {
            rec.exit_code = status;
            // The shim stamps the exit; a process that ends at once can
            // beat the daemon's own start stamp: never report an exit
            // before the start.
            rec.finished_at =
                if exit.at_ns > 0 { exit.at_ns } else { now_ns() }.max(rec.started_at);
        }
        None => {
            rec.exit_code = 255;
            rec.finished_at = now_ns();
            rec.message = "shim is gone; exit status unknown".into();
        }
    }
    rec.oom_killed |= exit.cgroup_oom;
    rec.reason = reason(rec.exit_code, rec.oom_killed).into();
}

/// Records an OOM event of the shim in `rec`, whenever it arrives: before
/// the exit it marks the container for `record_exit`; after it, it turns
/// an exit the watcher recorded as Error into OOMKilled.
pub fn record_oom(rec: &mut ContainerRecord) {
    rec.oom_killed = true;
    if rec.phase == Phase::Exited && rec.reason != START_ERROR {
        rec.reason = OOM_KILLED.into();
    }
}

/// How long an exit waits for a shim v2 container's last output to reach
/// its log (a process that leaves a child holding its stdout would keep
/// it from ever ending).
const OUTPUT_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Waits (through the shim) for the container's process to end and
/// records the exit. A shim that disappears means the container is gone
/// with it (exit 255, as containerd reports an unknown exit).
pub fn watch(cs: Arc<Containers>, c: Arc<Container>) {
    tokio::spawn(async move {
        let rec = c.record();
        let exit = cs
            .sandboxes
            .effects
            .tasks
            .wait(&rec.shim_address, &rec.id)
            .await;
        if let Some(pump) = cs.fifo_io.get(&rec.id) {
            // The shim closes the FIFOs once the last output is copied:
            // the log is complete when the exit is recorded.
            pump.drained(OUTPUT_DRAIN).await;
        }
        let seen = ExitSeen {
            status: exit.map(|e| e.status as i32),
            at_ns: exit.map(|e| e.at_ns).unwrap_or(0),
            cgroup_oom: oom_since_start(&rec),
        };
        match cs.update(&c, |r| record_exit(r, seen)) {
            Ok((r, ())) if r.phase == Phase::Exited => {
                tracing::info!(container = %r.id, exit_code = r.exit_code, reason = %r.reason, "container exited")
            }
            Ok(_) => {}
            Err(e) => tracing::error!(container = %rec.id, error = %e, "record container exit"),
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
                if let Err(e) = cs.update(&c, record_oom) {
                    tracing::error!(container = %oom.container_id, error = %e, "record OOM kill");
                }
            }
        }
    });
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn running() -> ContainerRecord {
        ContainerRecord::for_test("c", Phase::Running)
    }

    pub(crate) const KILLED: ExitSeen = ExitSeen {
        status: Some(137),
        at_ns: 5,
        cgroup_oom: false,
    };

    fn ended(r: &ContainerRecord) -> (Phase, &str, i32) {
        (r.phase, r.reason.as_str(), r.exit_code)
    }

    #[test]
    fn an_oom_event_and_the_exit_end_oom_killed_in_either_order() {
        let mut oom_first = running();
        record_oom(&mut oom_first);
        record_exit(&mut oom_first, KILLED);
        assert_eq!(ended(&oom_first), (Phase::Exited, OOM_KILLED, 137));

        let mut exit_first = running();
        record_exit(&mut exit_first, KILLED);
        assert_eq!(ended(&exit_first), (Phase::Exited, "Error", 137));
        record_oom(&mut exit_first);
        assert_eq!(ended(&exit_first), (Phase::Exited, OOM_KILLED, 137));
        assert!(exit_first.oom_killed && oom_first.oom_killed);
    }

    #[test]
    fn the_cgroups_oom_count_makes_an_exit_oom_killed_without_the_event() {
        let mut r = running();
        record_exit(
            &mut r,
            ExitSeen {
                cgroup_oom: true,
                ..KILLED
            },
        );
        assert_eq!(ended(&r), (Phase::Exited, OOM_KILLED, 137));
    }

    #[test]
    fn an_exit_is_recorded_once_and_never_over_a_stop_or_removal() {
        let mut r = running();
        record_exit(&mut r, KILLED);
        let first = r.finished_at;
        record_exit(
            &mut r,
            ExitSeen {
                status: Some(0),
                at_ns: 99,
                cgroup_oom: false,
            },
        );
        assert_eq!(
            (ended(&r), r.finished_at),
            ((Phase::Exited, "Error", 137), first)
        );
        let mut removing = running();
        removing.phase = Phase::Removing;
        record_exit(&mut removing, KILLED);
        assert_eq!(removing.phase, Phase::Removing);
        let mut start_error = running();
        start_error.phase = Phase::Exited;
        start_error.reason = START_ERROR.into();
        record_oom(&mut start_error);
        assert_eq!(start_error.reason, START_ERROR);
    }

    #[test]
    fn a_gone_shim_is_an_unknown_exit_not_a_running_container() {
        let mut r = running();
        record_exit(
            &mut r,
            ExitSeen {
                status: None,
                at_ns: 0,
                cgroup_oom: false,
            },
        );
        assert_eq!(ended(&r), (Phase::Exited, "Error", 255));
        assert!(r.message.contains("shim is gone"), "{}", r.message);
    }

    #[test]
    fn an_exit_is_never_stamped_before_the_start() {
        let mut r = running();
        r.started_at = 1_000;
        record_exit(
            &mut r,
            ExitSeen {
                status: Some(0),
                at_ns: 10,
                cgroup_oom: false,
            },
        );
        assert_eq!((r.finished_at, r.reason.as_str()), (1_000, "Completed"));
    }
}
