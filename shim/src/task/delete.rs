//! Delete: removes an exited exec, or the container (`runtime delete`,
//! rootfs unmount) once its init is done.

use super::create::unmount_rootfs;
use super::*;

impl TaskService {
    pub(super) async fn do_delete(&self, req: api::DeleteRequest) -> Result<api::DeleteResponse> {
        let mut st = self.inner.state.lock().await;
        let c = st.container_mut(&req.id)?;
        if !req.exec_id.is_empty() {
            let p = c.proc(&req.exec_id)?;
            if p.is_live() {
                return Err(Error::FailedPrecondition(format!(
                    "exec {:?} is still running",
                    req.exec_id
                )));
            }
            let e = p.exit();
            let pid = p.pid;
            if let Some(p) = c.execs.remove(&req.exec_id) {
                if let Some(f) = p.spec_file {
                    let _ = std::fs::remove_file(f);
                }
            }
            drop(st);
            self.publish_delete(&req.id, &req.exec_id, pid, e).await;
            return Ok(delete_response(pid, e));
        }
        if c.init.is_live() && c.init.status != Status::CREATED {
            return Err(Error::FailedPrecondition(format!(
                "container {:?} is still running",
                req.id
            )));
        }
        let cli = c.cli.clone();
        let bundle = c.bundle.clone();
        let rootfs_mounted = c.rootfs_mounted;
        let pid = c.init.pid;
        // A created-but-never-started container is deleted with force,
        // which kills its waiting init.
        let force = c.init.is_live();
        drop(st);
        match cli.delete(&req.id, force).await {
            Ok(()) => {}
            // The runtime's container is already gone (a delete that a
            // crash interrupted, or a runtime state lost): the rest of the
            // teardown still runs, so a repeated Delete converges.
            Err(Error::NotFound(e)) => log::warn!("delete {}: {e}", req.id),
            Err(e) => return Err(e),
        }
        if force {
            // The init was killed by the delete: wait for its reaping.
            let rx = {
                let st = self.inner.state.lock().await;
                st.container(&req.id).ok().map(|c| c.init.subscribe())
            };
            if let Some(mut rx) = rx {
                let _ = tokio::time::timeout(OUTPUT_DRAIN, rx.wait_for(|e| e.is_some())).await;
            }
        }
        if rootfs_mounted {
            unmount_rootfs(&bundle);
        }
        let mut st = self.inner.state.lock().await;
        let e = st.container.as_ref().and_then(|c| c.init.exit());
        st.container = None;
        drop(st);
        self.publish_delete(&req.id, "", pid, e).await;
        Ok(delete_response(pid, e))
    }

    pub(super) async fn publish_delete(
        &self,
        id: &str,
        exec_id: &str,
        pid: i32,
        e: Option<ExitInfo>,
    ) {
        self.publish(
            topics::TASK_DELETE_EVENT_TOPIC,
            TaskDelete {
                container_id: id.to_string(),
                id: if exec_id.is_empty() { id } else { exec_id }.to_string(),
                pid: u32::try_from(pid).unwrap_or(0),
                exit_status: e.map(|e| e.status).unwrap_or(0),
                exited_at: e.map(|e| e.timestamp()).into(),
                ..Default::default()
            },
        )
        .await;
    }
}

fn delete_response(pid: i32, e: Option<ExitInfo>) -> api::DeleteResponse {
    api::DeleteResponse {
        pid: u32::try_from(pid).unwrap_or(0),
        exit_status: e.map(|e| e.status).unwrap_or(0),
        exited_at: Some(
            e.map(|e| e.timestamp())
                .unwrap_or_else(|| to_timestamp(SystemTime::now())),
        )
        .into(),
        ..Default::default()
    }
}
