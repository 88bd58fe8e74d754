//! Start: releases the created init (`runtime start`), or runs an added
//! exec (`runtime exec --detach`) with its own stdio.

use super::create::{read_pid, with_stdio};
use super::*;

impl TaskService {
    pub(super) async fn do_start(&self, req: api::StartRequest) -> Result<api::StartResponse> {
        let mut st = self.inner.state.lock().await;
        let c = st.container_mut(&req.id)?;
        if req.exec_id.is_empty() {
            if c.init.status != Status::CREATED || c.init.exit().is_some() {
                return Err(Error::FailedPrecondition(format!(
                    "container {:?} is not in the created state",
                    req.id
                )));
            }
            let cli = c.cli.clone();
            let pid = c.init.pid;
            drop(st);
            cli.start(&req.id).await?;
            let mut st = self.inner.state.lock().await;
            let c = st.container_mut(&req.id)?;
            if c.init.exit().is_none() {
                c.init.status = Status::RUNNING;
            }
            drop(st);
            self.publish(
                topics::TASK_START_EVENT_TOPIC,
                TaskStart {
                    container_id: req.id.clone(),
                    pid: u32::try_from(pid).unwrap_or(0),
                    ..Default::default()
                },
            )
            .await;
            return Ok(api::StartResponse {
                pid: u32::try_from(pid).unwrap_or(0),
                ..Default::default()
            });
        }
        if !c.init.is_live() {
            return Err(Error::FailedPrecondition(format!(
                "container {:?} is not running",
                req.id
            )));
        }
        let p = c.proc_mut(&req.exec_id)?;
        if p.pid != 0 {
            return Err(Error::FailedPrecondition(format!(
                "exec {:?} was already started",
                req.exec_id
            )));
        }
        let io_spec = p.io_spec.clone();
        let spec_file = p
            .spec_file
            .clone()
            .ok_or_else(|| Error::FailedPrecondition("exec has no process spec".into()))?;
        let cli = c.cli.clone();
        let pid_file = c.bundle.join(format!("{}.pid", req.exec_id));
        // Hold the lock through the exec: the exit loop must not see the
        // new PID before it is recorded (it keeps early exits for that).
        let created = with_stdio(&io_spec, |console, fds| {
            let cli = cli.clone();
            let id = req.id.clone();
            let spec_file = spec_file.clone();
            let pid_file = pid_file.clone();
            async move {
                cli.exec(&id, &spec_file, &pid_file, console.as_deref(), fds)
                    .await
            }
        })
        .await;
        let io = match created {
            Ok(io) => io,
            Err(e) => {
                let p = c.proc_mut(&req.exec_id)?;
                p.set_exited(ExitInfo {
                    status: 255,
                    at: SystemTime::now(),
                });
                return Err(e);
            }
        };
        let pid = read_pid(&pid_file)?;
        let _ = std::fs::remove_file(&pid_file);
        let early = take_early(&mut st.early_exits, pid);
        let c = st.container_mut(&req.id)?;
        let p = c.proc_mut(&req.exec_id)?;
        p.pid = pid;
        p.status = Status::RUNNING;
        p.io = Some(io);
        drop(st);
        if let Some(e) = early {
            Inner::on_exit(&self.inner, pid, e).await;
        }
        self.publish(
            topics::TASK_EXEC_STARTED_EVENT_TOPIC,
            TaskExecStarted {
                container_id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                pid: u32::try_from(pid).unwrap_or(0),
                ..Default::default()
            },
        )
        .await;
        Ok(api::StartResponse {
            pid: u32::try_from(pid).unwrap_or(0),
            ..Default::default()
        })
    }
}
