//! The calls on a running container: Kill, State, Wait, Pause/Resume,
//! Update, Pids.

use super::*;

impl TaskService {
    pub(super) async fn do_kill(&self, req: api::KillRequest) -> Result<()> {
        let st = self.inner.state.lock().await;
        let c = st.container(&req.id)?;
        let p = c.proc(&req.exec_id)?;
        if req.exec_id.is_empty() {
            if p.exit().is_some() && !req.all {
                return Err(Error::NotFound(format!(
                    "container {:?}: process already finished",
                    req.id
                )));
            }
            let cli = c.cli.clone();
            drop(st);
            return cli.kill(&req.id, req.signal, req.all).await;
        }
        if !p.is_live() {
            return Err(Error::NotFound(format!(
                "exec {:?}: process already finished",
                req.exec_id
            )));
        }
        let sig = nix::sys::signal::Signal::try_from(i32::try_from(req.signal).unwrap_or(-1))
            .map_err(|_| Error::InvalidArgument(format!("invalid signal {}", req.signal)))?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(p.pid), sig)
            .map_err(|e| Error::io(format!("kill exec {:?}", req.exec_id), e.into()))
    }

    pub(super) async fn do_state(&self, req: api::StateRequest) -> Result<api::StateResponse> {
        let st = self.inner.state.lock().await;
        let c = st.container(&req.id)?;
        let p = c.proc(&req.exec_id)?;
        let e = p.exit();
        Ok(api::StateResponse {
            id: if req.exec_id.is_empty() {
                c.id.clone()
            } else {
                req.exec_id.clone()
            },
            bundle: c.bundle.to_string_lossy().into_owned(),
            pid: u32::try_from(p.pid).unwrap_or(0),
            status: p.status.into(),
            stdin: p.io_spec.stdin.clone(),
            stdout: p.io_spec.stdout.clone(),
            stderr: p.io_spec.stderr.clone(),
            terminal: p.io_spec.terminal,
            exit_status: e.map(|e| e.status).unwrap_or(0),
            exited_at: e.map(|e| e.timestamp()).into(),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        })
    }

    pub(super) async fn do_wait(&self, req: api::WaitRequest) -> Result<api::WaitResponse> {
        let mut rx = {
            let st = self.inner.state.lock().await;
            st.container(&req.id)?.proc(&req.exec_id)?.subscribe()
        };
        let e = rx
            .wait_for(|e| e.is_some())
            .await
            .map_err(|_| Error::NotFound(format!("process of {:?} was deleted", req.id)))?
            .ok_or_else(|| Error::NotFound("exit lost".into()))?;
        Ok(api::WaitResponse {
            exit_status: e.status,
            exited_at: Some(e.timestamp()).into(),
            ..Default::default()
        })
    }

    pub(super) async fn do_pause(&self, id: &str, pause: bool) -> Result<()> {
        let st = self.inner.state.lock().await;
        let c = st.container(id)?;
        let want = if pause {
            Status::RUNNING
        } else {
            Status::PAUSED
        };
        if c.init.status != want || !c.init.is_live() {
            return Err(Error::FailedPrecondition(format!(
                "container {id:?} is not {}",
                if pause { "running" } else { "paused" }
            )));
        }
        let cli = c.cli.clone();
        drop(st);
        if pause {
            cli.pause(id).await?;
        } else {
            cli.resume(id).await?;
        }
        let mut st = self.inner.state.lock().await;
        if let Ok(c) = st.container_mut(id) {
            if c.init.is_live() {
                c.init.status = if pause {
                    Status::PAUSED
                } else {
                    Status::RUNNING
                };
            }
        }
        drop(st);
        if pause {
            self.publish(
                topics::TASK_PAUSED_EVENT_TOPIC,
                TaskPaused {
                    container_id: id.to_string(),
                    ..Default::default()
                },
            )
            .await;
        } else {
            self.publish(
                topics::TASK_RESUMED_EVENT_TOPIC,
                TaskResumed {
                    container_id: id.to_string(),
                    ..Default::default()
                },
            )
            .await;
        }
        Ok(())
    }

    pub(super) async fn do_update(&self, req: api::UpdateTaskRequest) -> Result<()> {
        let st = self.inner.state.lock().await;
        let c = st.container(&req.id)?;
        if !c.init.is_live() {
            return Err(Error::FailedPrecondition(format!(
                "container {:?} is not running",
                req.id
            )));
        }
        let res = req
            .resources
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("update without resources".into()))?;
        shape::check_resources(&res.value)?;
        let file = c.bundle.join("update-resources.json");
        super::write_private(&file, &res.value)?;
        let cli = c.cli.clone();
        drop(st);
        let r = cli.update(&req.id, &file).await;
        let _ = std::fs::remove_file(&file);
        r
    }

    pub(super) async fn do_pids(&self, req: api::PidsRequest) -> Result<api::PidsResponse> {
        let st = self.inner.state.lock().await;
        let c = st.container(&req.id)?;
        let cli = c.cli.clone();
        drop(st);
        let pids = cli.ps(&req.id).await?;
        Ok(api::PidsResponse {
            processes: pids
                .into_iter()
                .map(|p| containerd_shim_protos::api::ProcessInfo {
                    pid: u32::try_from(p).unwrap_or(0),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }
}

impl TaskService {
    /// Checkpoint: `runtime checkpoint` of the running init into
    /// `req.path` (made by the runtime, 0700), leaving it running, as
    /// kubelet's forensic checkpoint wants.
    pub(super) async fn do_checkpoint(&self, req: api::CheckpointTaskRequest) -> Result<()> {
        let st = self.inner.state.lock().await;
        let c = st.container(&req.id)?;
        if !c.init.is_live() || c.init.status != Status::RUNNING {
            return Err(Error::FailedPrecondition(format!(
                "container {:?} is not running",
                req.id
            )));
        }
        let images = PathBuf::from(&req.path);
        if !images.is_absolute() {
            return Err(Error::InvalidArgument(format!(
                "checkpoint path {:?} is not absolute",
                req.path
            )));
        }
        let cli = c.cli.clone();
        drop(st);
        cli.checkpoint(&req.id, &images).await
    }
}
