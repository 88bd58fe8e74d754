//! The containerd shim v2 Task service: what the daemon (or containerd)
//! calls over ttrpc to create, start, signal, wait for and delete the
//! container and its execs. One file per group of calls; this one holds the
//! shared state, the exit loop and the ttrpc dispatch.

mod control;
mod create;
mod delete;
mod exec;
mod options;
mod shape;
mod start;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::publisher::{Event, Publisher};
use async_trait::async_trait;
use containerd_shim::asynchronous::monitor::monitor_subscribe;
use containerd_shim::asynchronous::ExitSignal;
use containerd_shim::monitor::{Subject, Topic};
use containerd_shim::{api, TtrpcContext, TtrpcResult};
use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim_protos::topics;
use containerd_shim_protos::types::task::Status;
use tokio::sync::Mutex;

use crate::error::{Error, Result};
use crate::process::{check_name, to_timestamp, ExitFile, ExitInfo, Proc};
use crate::runtime_cli::{PassFds, RuntimeCli};
use crate::stdio::{self, ConsoleSocket, IoSpec, ProcessIo};

pub use create::unmount_rootfs;
pub use options::{RuntimeChoice, RUNTIME_FILE};

/// How long an exit waits for the process's output to drain before it is
/// reported anyway (a daemonized grandchild may hold the pipe forever).
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

/// Exits of PIDs not (yet) known, kept for a process whose PID is learned
/// just after it died. Bounded: runtime CLI exits land here too.
const EARLY_EXITS: usize = 128;

/// The Task service of one shim.
#[derive(Clone)]
pub struct TaskService {
    inner: Arc<Inner>,
}

struct Inner {
    namespace: String,
    publisher: Publisher,
    exit: Arc<ExitSignal>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    container: Option<Container>,
    early_exits: VecDeque<(i32, ExitInfo)>,
}

struct Container {
    id: String,
    bundle: PathBuf,
    cli: RuntimeCli,
    init: Proc,
    execs: HashMap<String, Proc>,
    rootfs_mounted: bool,
    /// The container shares a PID namespace (pod-wide, host, or another
    /// container's): its processes do not die with its init, so the shim
    /// kills them when the init exits, as containerd does.
    kill_all_on_exit: bool,
    /// The container's cgroup (OOM watch, Stats), when it could be named.
    cgroup: Option<carapace_cgroups::Manager>,
}

impl TaskService {
    /// A service for one container, publishing events under `namespace`,
    /// and signalling `exit` when the shim may go away.
    pub fn new(namespace: &str, publisher: Publisher, exit: Arc<ExitSignal>) -> Self {
        let svc = TaskService {
            inner: Arc::new(Inner {
                namespace: namespace.to_string(),
                publisher,
                exit,
                state: Mutex::new(State::default()),
            }),
        };
        svc.spawn_exit_loop();
        svc
    }

    fn spawn_exit_loop(&self) {
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let Ok(mut sub) = monitor_subscribe(Topic::Pid).await else {
                log::error!("cannot subscribe to process exits");
                return;
            };
            while let Some(ev) = sub.rx.recv().await {
                let Subject::Pid(pid) = ev.subject else {
                    continue;
                };
                let e = ExitInfo {
                    status: u32::try_from(ev.exit_code).unwrap_or(255),
                    at: SystemTime::now(),
                };
                Inner::on_exit(&inner, pid, e).await;
            }
        });
    }

    /// Whether the shim holds no container (none created, or deleted).
    pub async fn is_idle(&self) -> bool {
        self.inner.state.lock().await.container.is_none()
    }

    async fn publish<E: Event>(&self, topic: &str, ev: E) {
        publish(&self.inner, topic, ev).await;
    }
}

async fn publish<E: Event>(inner: &Inner, topic: &str, ev: E) {
    inner.publisher.publish(topic, &inner.namespace, &ev).await;
}

impl Inner {
    /// A PID was reaped: record it against its process, or keep it for a
    /// process whose PID is about to be learned.
    async fn on_exit(inner: &Arc<Inner>, pid: i32, e: ExitInfo) {
        let mut st = inner.state.lock().await;
        let Some(c) = st.container.as_mut() else {
            push_early(&mut st.early_exits, pid, e);
            return;
        };
        let cid = c.id.clone();
        let bundle = c.bundle.clone();
        let is_init = c.init.pid == pid && c.init.exit().is_none();
        // Without a PID namespace of its own the init's exit ends nothing
        // else, so what is left in its cgroup is killed — by the runtime,
        // one process more, unless the cgroup is known to be empty.
        let kill_all = (is_init
            && c.kill_all_on_exit
            && c.cgroup
                .as_ref()
                .is_none_or(|cg| !matches!(cg.pids(), Ok(p) if p.is_empty())))
        .then(|| c.cli.clone());
        let exec_id = c
            .execs
            .values()
            .find(|p| p.pid == pid && p.exit().is_none())
            .map(|p| p.exec_id.clone());
        if !is_init && exec_id.is_none() {
            push_early(&mut st.early_exits, pid, e);
            return;
        }
        let io = if is_init {
            c.init.io.clone()
        } else {
            exec_id
                .as_ref()
                .and_then(|x| c.execs.get(x))
                .and_then(|p| p.io.clone())
        };
        drop(st);
        if is_init {
            // Before anything is published: the exit must survive us.
            if let Err(err) = ExitFile::from_exit(pid, e).write(&bundle) {
                log::error!("record init exit: {err}");
            }
        }
        if let Some(cli) = kill_all {
            if let Err(err) = cli.kill(&cid, 9, true).await {
                log::warn!("kill the remaining processes of {cid}: {err}");
            }
        }
        if let Some(io) = io {
            let _ = tokio::time::timeout(OUTPUT_DRAIN, io.wait_output()).await;
        }
        let mut st = inner.state.lock().await;
        if let Some(c) = st.container.as_mut() {
            let p = match &exec_id {
                None => Some(&mut c.init),
                Some(x) => c.execs.get_mut(x),
            };
            if let Some(p) = p {
                p.set_exited(e);
            }
        }
        drop(st);
        publish(
            inner,
            topics::TASK_EXIT_EVENT_TOPIC,
            TaskExit {
                container_id: cid.clone(),
                id: exec_id.unwrap_or_else(|| cid.clone()),
                pid: u32::try_from(pid).unwrap_or(0),
                exit_status: e.status,
                exited_at: Some(e.timestamp()).into(),
                ..Default::default()
            },
        )
        .await;
    }
}

fn push_early(q: &mut VecDeque<(i32, ExitInfo)>, pid: i32, e: ExitInfo) {
    if q.len() >= EARLY_EXITS {
        q.pop_front();
    }
    q.push_back((pid, e));
}

fn take_early(q: &mut VecDeque<(i32, ExitInfo)>, pid: i32) -> Option<ExitInfo> {
    let i = q.iter().position(|(p, _)| *p == pid)?;
    q.remove(i).map(|(_, e)| e)
}

impl State {
    fn container(&self, id: &str) -> Result<&Container> {
        match &self.container {
            Some(c) if c.id == id => Ok(c),
            _ => Err(Error::NotFound(format!(
                "container {id:?} not found in this shim"
            ))),
        }
    }

    fn container_mut(&mut self, id: &str) -> Result<&mut Container> {
        match &mut self.container {
            Some(c) if c.id == id => Ok(c),
            _ => Err(Error::NotFound(format!(
                "container {id:?} not found in this shim"
            ))),
        }
    }
}

impl Container {
    fn proc(&self, exec_id: &str) -> Result<&Proc> {
        if exec_id.is_empty() {
            return Ok(&self.init);
        }
        self.execs.get(exec_id).ok_or_else(|| {
            Error::NotFound(format!(
                "exec {exec_id:?} not found in container {:?}",
                self.id
            ))
        })
    }

    fn proc_mut(&mut self, exec_id: &str) -> Result<&mut Proc> {
        if exec_id.is_empty() {
            return Ok(&mut self.init);
        }
        let id = self.id.clone();
        self.execs.get_mut(exec_id).ok_or_else(|| {
            Error::NotFound(format!("exec {exec_id:?} not found in container {id:?}"))
        })
    }
}

impl TaskService {
    /// The stdio of a process, for CloseIO, ResizePty and the Io service.
    pub async fn io_of(&self, id: &str, exec_id: &str) -> Result<Arc<ProcessIo>> {
        let st = self.inner.state.lock().await;
        st.container(id)?
            .proc(exec_id)?
            .io
            .clone()
            .ok_or_else(|| Error::FailedPrecondition("the process has no stdio yet".into()))
    }
}

#[async_trait]
impl containerd_shim::Task for TaskService {
    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        Ok(self.do_create(req).await?)
    }

    async fn checkpoint(
        &self,
        _ctx: &TtrpcContext,
        req: api::CheckpointTaskRequest,
    ) -> TtrpcResult<api::Empty> {
        self.do_checkpoint(req).await?;
        Ok(api::Empty::new())
    }

    async fn start(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartRequest,
    ) -> TtrpcResult<api::StartResponse> {
        Ok(self.do_start(req).await?)
    }

    async fn state(
        &self,
        _ctx: &TtrpcContext,
        req: api::StateRequest,
    ) -> TtrpcResult<api::StateResponse> {
        Ok(self.do_state(req).await?)
    }

    async fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TtrpcResult<api::DeleteResponse> {
        Ok(self.do_delete(req).await?)
    }

    async fn exec(
        &self,
        _ctx: &TtrpcContext,
        req: api::ExecProcessRequest,
    ) -> TtrpcResult<api::Empty> {
        self.do_exec(req).await?;
        Ok(api::Empty::new())
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<api::Empty> {
        self.do_kill(req).await?;
        Ok(api::Empty::new())
    }

    async fn wait(
        &self,
        _ctx: &TtrpcContext,
        req: api::WaitRequest,
    ) -> TtrpcResult<api::WaitResponse> {
        Ok(self.do_wait(req).await?)
    }

    async fn pids(
        &self,
        _ctx: &TtrpcContext,
        req: api::PidsRequest,
    ) -> TtrpcResult<api::PidsResponse> {
        Ok(self.do_pids(req).await?)
    }

    async fn pause(&self, _ctx: &TtrpcContext, req: api::PauseRequest) -> TtrpcResult<api::Empty> {
        self.do_pause(&req.id, true).await?;
        Ok(api::Empty::new())
    }

    async fn resume(
        &self,
        _ctx: &TtrpcContext,
        req: api::ResumeRequest,
    ) -> TtrpcResult<api::Empty> {
        self.do_pause(&req.id, false).await?;
        Ok(api::Empty::new())
    }

    async fn update(
        &self,
        _ctx: &TtrpcContext,
        req: api::UpdateTaskRequest,
    ) -> TtrpcResult<api::Empty> {
        self.do_update(req).await?;
        Ok(api::Empty::new())
    }

    async fn close_io(
        &self,
        _ctx: &TtrpcContext,
        req: api::CloseIORequest,
    ) -> TtrpcResult<api::Empty> {
        if req.stdin {
            self.io_of(&req.id, &req.exec_id).await?.close_stdin().await;
        }
        Ok(api::Empty::new())
    }

    async fn resize_pty(
        &self,
        _ctx: &TtrpcContext,
        req: api::ResizePtyRequest,
    ) -> TtrpcResult<api::Empty> {
        self.io_of(&req.id, &req.exec_id)
            .await?
            .resize(req.width, req.height)?;
        Ok(api::Empty::new())
    }

    async fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> TtrpcResult<api::ConnectResponse> {
        let st = self.inner.state.lock().await;
        let task_pid = st
            .container(&req.id)
            .map(|c| u32::try_from(c.init.pid).unwrap_or(0))
            .unwrap_or(0);
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    async fn shutdown(
        &self,
        _ctx: &TtrpcContext,
        _req: api::ShutdownRequest,
    ) -> TtrpcResult<api::Empty> {
        // As containerd's shims do: stay while a container is held.
        let st = self.inner.state.lock().await;
        if st.container.is_none() {
            self.inner.exit.signal();
        }
        Ok(api::Empty::new())
    }

    async fn stats(
        &self,
        _ctx: &TtrpcContext,
        req: api::StatsRequest,
    ) -> TtrpcResult<api::StatsResponse> {
        let mgr = {
            let st = self.inner.state.lock().await;
            st.container(&req.id)?.cgroup.clone().ok_or_else(|| {
                Error::FailedPrecondition(format!("container {:?} has no known cgroup", req.id))
            })?
        };
        let stats = mgr.stats().map_err(Error::from)?;
        let any = crate::stats::to_any(&stats, mgr.hierarchy())?;
        Ok(api::StatsResponse {
            stats: Some(any).into(),
            ..Default::default()
        })
    }
}

/// Write a file only root may read (0600 whatever the umask, never
/// through a symlink): process and resource specs carry the container's
/// environment, secrets included.
pub(crate) fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .and_then(|mut f| f.write_all(data))
        .map_err(|e| Error::io(format!("write {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    #[test]
    fn private_files_are_0600_and_do_not_follow_symlinks() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("x.process.json");
        super::write_private(&p, b"{}").expect("write");
        let mode = std::fs::metadata(&p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let target = d.path().join("target");
        std::fs::write(&target, "keep").expect("write");
        let link = d.path().join("l.process.json");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        assert!(super::write_private(&link, b"{}").is_err());
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "keep");
    }

    use super::*;

    #[test]
    fn early_exits_are_bounded_and_found_once() {
        let mut q = VecDeque::new();
        let e = ExitInfo {
            status: 1,
            at: SystemTime::now(),
        };
        for pid in 0..(EARLY_EXITS as i32 + 10) {
            push_early(&mut q, pid, e);
        }
        assert_eq!(q.len(), EARLY_EXITS);
        assert!(take_early(&mut q, 0).is_none());
        assert!(take_early(&mut q, 100).is_some());
        assert!(take_early(&mut q, 100).is_none());
    }
}
