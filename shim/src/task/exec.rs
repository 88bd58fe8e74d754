//! Exec: registers a process to run in the container; Start runs it.

use super::*;

impl TaskService {
    pub(super) async fn do_exec(&self, req: api::ExecProcessRequest) -> Result<()> {
        check_name("exec", &req.exec_id)?;
        // Everything about the request is checked before a file is written.
        let io_spec = IoSpec::checked(&req.stdin, &req.stdout, &req.stderr, req.terminal)?;
        let mut st = self.inner.state.lock().await;
        let c = st.container_mut(&req.id)?;
        if !c.init.is_live() || c.init.status == Status::CREATED {
            return Err(Error::FailedPrecondition(format!(
                "container {:?} is not running",
                req.id
            )));
        }
        if c.execs.contains_key(&req.exec_id) {
            return Err(Error::AlreadyExists(format!(
                "exec {:?} already exists in container {:?}",
                req.exec_id, req.id
            )));
        }
        let spec = req
            .spec
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("exec request without a process spec".into()))?;
        shape::check_process(&spec.value)?;
        let file = c.bundle.join(format!("{}.process.json", req.exec_id));
        super::write_private(&file, &spec.value)?;
        let mut p = Proc::new(&req.exec_id, io_spec);
        p.spec_file = Some(file);
        c.execs.insert(req.exec_id.clone(), p);
        drop(st);
        self.publish(
            topics::TASK_EXEC_ADDED_EVENT_TOPIC,
            TaskExecAdded {
                container_id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                ..Default::default()
            },
        )
        .await;
        Ok(())
    }
}
