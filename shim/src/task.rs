//! The containerd shim v2 Task service: what the daemon (or containerd)
//! calls over ttrpc to create, start, signal, wait for and delete the
//! container and its execs.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use containerd_shim::asynchronous::monitor::monitor_subscribe;
use containerd_shim::asynchronous::ExitSignal;
use containerd_shim::monitor::{Subject, Topic};
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{api, TtrpcContext, TtrpcResult};
use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim_protos::protobuf::{Message, MessageDyn};
use containerd_shim_protos::shim::oci::Options;
use containerd_shim_protos::topics;
use containerd_shim_protos::ttrpc::context::Context;
use containerd_shim_protos::types::task::Status;
use tokio::sync::Mutex;

use crate::error::{Error, Result};
use crate::process::{check_name, to_timestamp, ExitFile, ExitInfo, Proc};
use crate::runtime_cli::{PassFds, RuntimeCli, DEFAULT_BINARY};
use crate::stdio::{self, ConsoleSocket, IoSpec, ProcessIo};

/// How long an exit waits for the process's output to drain before it is
/// reported anyway (a daemonized grandchild may hold the pipe forever).
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

/// Exits of PIDs not (yet) known, kept for a process whose PID is learned
/// just after it died. Bounded: runtime CLI exits land here too.
const EARLY_EXITS: usize = 128;

/// File in the bundle recording which runtime the container was made with,
/// so `carapace-shim delete` can clean up after a dead shim.
pub const RUNTIME_FILE: &str = "shim-runtime.json";

/// The Task service of one shim.
#[derive(Clone)]
pub struct TaskService {
    inner: Arc<Inner>,
}

struct Inner {
    namespace: String,
    publisher: RemotePublisher,
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

/// The runtime a container is driven with, as persisted in the bundle.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct RuntimeChoice {
    /// Binary name or path.
    pub binary: String,
    /// `--root`, if set.
    pub root: Option<PathBuf>,
    /// `--systemd-cgroup`.
    pub systemd_cgroup: bool,
}

impl RuntimeChoice {
    /// From the runc-style options containerd (or our daemon) attaches to
    /// CreateTask; defaults to carapace-runtime with a per-namespace root.
    pub fn from_options(opts: Option<&Options>, namespace: &str) -> RuntimeChoice {
        let binary = opts
            .map(|o| o.binary_name.clone())
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| DEFAULT_BINARY.to_string());
        let root = opts
            .map(|o| o.root.clone())
            .filter(|r| !r.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                let name = Path::new(&binary)
                    .file_name()?
                    .to_string_lossy()
                    .into_owned();
                let ns = if namespace.is_empty() {
                    "default"
                } else {
                    namespace
                };
                Some(PathBuf::from("/run").join(name).join(ns))
            });
        RuntimeChoice {
            binary,
            root,
            systemd_cgroup: opts.is_some_and(|o| o.systemd_cgroup),
        }
    }

    /// The CLI driver for this choice, logging into `bundle`.
    pub fn cli(&self, bundle: &Path) -> RuntimeCli {
        RuntimeCli::new(
            &self.binary,
            self.root.clone(),
            self.systemd_cgroup,
            bundle.join("log.json"),
        )
    }

    /// Reads the choice saved at create time.
    pub fn load(bundle: &Path) -> Option<RuntimeChoice> {
        let data = std::fs::read(bundle.join(RUNTIME_FILE)).ok()?;
        serde_json::from_slice(&data).ok()
    }

    fn save(&self, bundle: &Path) -> Result<()> {
        let p = bundle.join(RUNTIME_FILE);
        let data = serde_json::to_vec(self)
            .map_err(|e| Error::InvalidArgument(format!("encode runtime choice: {e}")))?;
        std::fs::write(&p, data).map_err(|e| Error::io(format!("write {}", p.display()), e))
    }
}

fn parse_options(
    any: Option<&containerd_shim_protos::protobuf::well_known_types::any::Any>,
) -> Result<Option<Options>> {
    let Some(any) = any else { return Ok(None) };
    if any.type_url.is_empty() && any.value.is_empty() {
        return Ok(None);
    }
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    if name != "containerd.runc.v1.Options" && name != "runtimeoptions.v1.Options" {
        return Err(Error::InvalidArgument(format!(
            "unsupported runtime options type {:?}: expected containerd.runc.v1.Options",
            any.type_url
        )));
    }
    Options::parse_from_bytes(&any.value)
        .map(Some)
        .map_err(|e| Error::InvalidArgument(format!("decode runtime options: {e}")))
}

impl TaskService {
    /// A service for one container, publishing events under `namespace`,
    /// and signalling `exit` when the shim may go away.
    pub fn new(namespace: &str, publisher: RemotePublisher, exit: Arc<ExitSignal>) -> Self {
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

    async fn publish(&self, topic: &str, ev: Box<dyn MessageDyn>) {
        publish(&self.inner, topic, ev).await;
    }
}

async fn publish(inner: &Inner, topic: &str, ev: Box<dyn MessageDyn>) {
    if let Err(e) = inner
        .publisher
        .publish(Context::default(), topic, &inner.namespace, ev)
        .await
    {
        log::warn!("publish {topic}: {e}");
    }
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
        let kill_all = (is_init && c.kill_all_on_exit).then(|| c.cli.clone());
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
            Box::new(TaskExit {
                container_id: cid.clone(),
                id: exec_id.unwrap_or_else(|| cid.clone()),
                pid: u32::try_from(pid).unwrap_or(0),
                exit_status: e.status,
                exited_at: Some(e.timestamp()).into(),
                ..Default::default()
            }),
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

fn read_pid(path: &Path) -> Result<i32> {
    let s = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("read pid file {}", path.display()), e))?;
    s.trim()
        .parse()
        .map_err(|_| Error::InvalidArgument(format!("pid file {} holds {s:?}", path.display())))
}

/// Whether the bundle's spec leaves the container without a PID namespace
/// of its own (none requested, or one joined by path).
fn shares_pid_namespace(bundle: &Path) -> bool {
    let Some(spec) = std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|d| serde_json::from_slice::<serde_json::Value>(&d).ok())
    else {
        return false;
    };
    let own = spec
        .pointer("/linux/namespaces")
        .and_then(|n| n.as_array())
        .is_some_and(|ns| {
            ns.iter().any(|n| {
                n.get("type").and_then(|t| t.as_str()) == Some("pid")
                    && n.get("path")
                        .and_then(|p| p.as_str())
                        .is_none_or(str::is_empty)
            })
        });
    !own
}

/// The container's cgroup as its spec names it (`linux.cgroupsPath`, or
/// the runtime's default for the ID).
fn container_cgroup(id: &str, bundle: &Path, systemd: bool) -> Option<carapace_cgroups::Manager> {
    let cgroups_path = std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|d| serde_json::from_slice::<serde_json::Value>(&d).ok())
        .and_then(|v| {
            v.pointer("/linux/cgroupsPath")
                .and_then(|p| p.as_str())
                .map(str::to_string)
        });
    match carapace_cgroups::Manager::new(cgroups_path.as_deref(), id, systemd) {
        Ok(m) => Some(m),
        Err(e) => {
            log::warn!("cgroup of {id}: {e}");
            None
        }
    }
}

/// Where console sockets go: a short path (sun_path is 108 bytes).
fn console_dir() -> PathBuf {
    std::env::temp_dir()
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

/// Starts the stdio of a process around a runtime call that creates it:
/// pipes are made before the call, a pty arrives during it.
async fn with_stdio<F, Fut>(spec: &IoSpec, call: F) -> Result<Arc<ProcessIo>>
where
    F: FnOnce(Option<PathBuf>, PassFds) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    if spec.terminal {
        let sock = ConsoleSocket::bind(&console_dir())?;
        let path = sock.path().to_path_buf();
        let recv = sock.receive();
        let created = call(Some(path), PassFds::default());
        tokio::pin!(recv);
        tokio::pin!(created);
        // The runtime connects during the call; the call may also fail
        // before it ever connects.
        let master = tokio::select! {
            r = &mut created => {
                r?;
                recv.await?
            }
            m = &mut recv => {
                let m = m?;
                created.await?;
                m
            }
        };
        stdio::start_console(spec, master)
    } else {
        let (fds, prepared) = stdio::prepare_pipes(spec)?;
        call(None, fds).await?;
        prepared.start()
    }
}

fn mount_rootfs(bundle: &Path, mounts: &[containerd_shim_protos::api::Mount]) -> Result<bool> {
    if mounts.is_empty() {
        return Ok(false);
    }
    let target = bundle.join("rootfs");
    std::fs::create_dir_all(&target)
        .map_err(|e| Error::io(format!("mkdir {}", target.display()), e))?;
    for m in mounts {
        containerd_shim::mount::mount_rootfs(
            Some(m.type_.as_str()).filter(|t| !t.is_empty()),
            Some(m.source.as_str()).filter(|s| !s.is_empty()),
            &m.options,
            &target,
        )
        .map_err(|e| {
            Error::io(
                format!("mount rootfs at {}", target.display()),
                std::io::Error::other(e),
            )
        })?;
    }
    Ok(true)
}

/// Unmounts `<bundle>/rootfs` if something is mounted there.
pub fn unmount_rootfs(bundle: &Path) {
    let target = bundle.join("rootfs");
    // Stacked mounts (several rootfs mounts) come off one by one.
    while nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH).is_ok() {}
}

impl TaskService {
    async fn do_create(&self, req: api::CreateTaskRequest) -> Result<api::CreateTaskResponse> {
        check_name("container", &req.id)?;
        if !req.checkpoint.is_empty() {
            return Err(Error::Unimplemented(
                "restore from a checkpoint is not supported".into(),
            ));
        }
        let bundle = PathBuf::from(&req.bundle);
        if !bundle.join("config.json").is_file() {
            return Err(Error::InvalidArgument(format!(
                "bundle {} has no config.json",
                bundle.display()
            )));
        }
        let opts = parse_options(req.options.as_ref())?;
        let choice = RuntimeChoice::from_options(opts.as_ref(), &self.inner.namespace);
        let io_spec = IoSpec {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        io_spec.check()?;
        let mut st = self.inner.state.lock().await;
        if let Some(c) = &st.container {
            return Err(Error::AlreadyExists(format!(
                "this shim already holds container {:?}",
                c.id
            )));
        }
        choice.save(&bundle)?;
        let cli = choice.cli(&bundle);
        let rootfs_mounted = mount_rootfs(&bundle, &req.rootfs)?;
        let pid_file = bundle.join("init.pid");
        let created = with_stdio(&io_spec, |console, fds| {
            let cli = cli.clone();
            let id = req.id.clone();
            let bundle = bundle.clone();
            let pid_file = pid_file.clone();
            async move {
                cli.create(&id, &bundle, &pid_file, console.as_deref(), fds)
                    .await
            }
        })
        .await;
        let io = match created {
            Ok(io) => io,
            Err(e) => {
                if rootfs_mounted {
                    unmount_rootfs(&bundle);
                }
                return Err(e);
            }
        };
        let pid = read_pid(&pid_file)?;
        let cgroup = container_cgroup(&req.id, &bundle, choice.systemd_cgroup);
        let mut init = Proc::new("", io_spec.clone());
        init.pid = pid;
        init.io = Some(io);
        if let Some(e) = take_early(&mut st.early_exits, pid) {
            init.set_exited(e);
        }
        st.container = Some(Container {
            id: req.id.clone(),
            bundle: bundle.clone(),
            cli,
            init,
            execs: HashMap::new(),
            rootfs_mounted,
            kill_all_on_exit: shares_pid_namespace(&bundle),
            cgroup: cgroup.clone(),
        });
        drop(st);
        if let Some(mgr) = cgroup {
            self.watch_oom(&req.id, mgr);
        }
        self.publish(
            topics::TASK_CREATE_EVENT_TOPIC,
            Box::new(TaskCreate {
                container_id: req.id.clone(),
                bundle: req.bundle.clone(),
                rootfs: req.rootfs.clone(),
                io: Some(TaskIO {
                    stdin: req.stdin.clone(),
                    stdout: req.stdout.clone(),
                    stderr: req.stderr.clone(),
                    terminal: req.terminal,
                    ..Default::default()
                })
                .into(),
                pid: u32::try_from(pid).unwrap_or(0),
                ..Default::default()
            }),
        )
        .await;
        Ok(api::CreateTaskResponse {
            pid: u32::try_from(pid).unwrap_or(0),
            ..Default::default()
        })
    }

    /// Reports every OOM kill in the container's cgroup as TaskOOM.
    fn watch_oom(&self, id: &str, mgr: carapace_cgroups::Manager) {
        let mut rx = match crate::oom::watch(mgr) {
            Ok(rx) => rx,
            Err(e) => {
                log::warn!("no OOM watch for {id}: {e}");
                return;
            }
        };
        let inner = self.inner.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            while rx.recv().await.is_some() {
                publish(
                    &inner,
                    topics::TASK_OOM_EVENT_TOPIC,
                    Box::new(TaskOOM {
                        container_id: id.clone(),
                        ..Default::default()
                    }),
                )
                .await;
            }
        });
    }

    async fn do_start(&self, req: api::StartRequest) -> Result<api::StartResponse> {
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
                Box::new(TaskStart {
                    container_id: req.id.clone(),
                    pid: u32::try_from(pid).unwrap_or(0),
                    ..Default::default()
                }),
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
            Box::new(TaskExecStarted {
                container_id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                pid: u32::try_from(pid).unwrap_or(0),
                ..Default::default()
            }),
        )
        .await;
        Ok(api::StartResponse {
            pid: u32::try_from(pid).unwrap_or(0),
            ..Default::default()
        })
    }

    async fn do_exec(&self, req: api::ExecProcessRequest) -> Result<()> {
        check_name("exec", &req.exec_id)?;
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
        let process: oci_spec::runtime::Process = serde_json::from_slice(&spec.value)
            .map_err(|e| Error::InvalidArgument(format!("exec process spec: {e}")))?;
        if process.args().as_ref().is_none_or(|a| a.is_empty()) {
            return Err(Error::InvalidArgument(
                "exec process spec has no args".into(),
            ));
        }
        let file = c.bundle.join(format!("{}.process.json", req.exec_id));
        std::fs::write(&file, &spec.value)
            .map_err(|e| Error::io(format!("write {}", file.display()), e))?;
        let io_spec = IoSpec {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        io_spec.check()?;
        let mut p = Proc::new(&req.exec_id, io_spec);
        p.spec_file = Some(file);
        c.execs.insert(req.exec_id.clone(), p);
        drop(st);
        self.publish(
            topics::TASK_EXEC_ADDED_EVENT_TOPIC,
            Box::new(TaskExecAdded {
                container_id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                ..Default::default()
            }),
        )
        .await;
        Ok(())
    }

    async fn do_kill(&self, req: api::KillRequest) -> Result<()> {
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

    async fn do_delete(&self, req: api::DeleteRequest) -> Result<api::DeleteResponse> {
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
        cli.delete(&req.id, force).await?;
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

    async fn publish_delete(&self, id: &str, exec_id: &str, pid: i32, e: Option<ExitInfo>) {
        self.publish(
            topics::TASK_DELETE_EVENT_TOPIC,
            Box::new(TaskDelete {
                container_id: id.to_string(),
                id: if exec_id.is_empty() { id } else { exec_id }.to_string(),
                pid: u32::try_from(pid).unwrap_or(0),
                exit_status: e.map(|e| e.status).unwrap_or(0),
                exited_at: e.map(|e| e.timestamp()).into(),
                ..Default::default()
            }),
        )
        .await;
    }

    async fn do_state(&self, req: api::StateRequest) -> Result<api::StateResponse> {
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

    async fn do_wait(&self, req: api::WaitRequest) -> Result<api::WaitResponse> {
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

    async fn do_pause(&self, id: &str, pause: bool) -> Result<()> {
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
                Box::new(TaskPaused {
                    container_id: id.to_string(),
                    ..Default::default()
                }),
            )
            .await;
        } else {
            self.publish(
                topics::TASK_RESUMED_EVENT_TOPIC,
                Box::new(TaskResumed {
                    container_id: id.to_string(),
                    ..Default::default()
                }),
            )
            .await;
        }
        Ok(())
    }

    async fn do_update(&self, req: api::UpdateTaskRequest) -> Result<()> {
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
        let _: oci_spec::runtime::LinuxResources = serde_json::from_slice(&res.value)
            .map_err(|e| Error::InvalidArgument(format!("resources: {e}")))?;
        let file = c.bundle.join("update-resources.json");
        std::fs::write(&file, &res.value)
            .map_err(|e| Error::io(format!("write {}", file.display()), e))?;
        let cli = c.cli.clone();
        drop(st);
        let r = cli.update(&req.id, &file).await;
        let _ = std::fs::remove_file(&file);
        r
    }

    async fn do_pids(&self, req: api::PidsRequest) -> Result<api::PidsResponse> {
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

#[async_trait]
impl containerd_shim::Task for TaskService {
    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        Ok(self.do_create(req).await?)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_defaults_to_carapace_runtime_under_a_namespace_root() {
        let c = RuntimeChoice::from_options(None, "k8s.io");
        assert_eq!(c.binary, DEFAULT_BINARY);
        assert_eq!(c.root, Some(PathBuf::from("/run/carapace-runtime/k8s.io")));
        assert!(!c.systemd_cgroup);
        let o = Options {
            binary_name: "/usr/sbin/runc".into(),
            systemd_cgroup: true,
            ..Default::default()
        };
        let c = RuntimeChoice::from_options(Some(&o), "");
        assert_eq!(c.root, Some(PathBuf::from("/run/runc/default")));
        assert!(c.systemd_cgroup);
    }

    #[test]
    fn foreign_runtime_options_are_refused() {
        let mut any = containerd_shim_protos::protobuf::well_known_types::any::Any::new();
        any.type_url = "type.googleapis.com/some.Other".into();
        any.value = vec![1, 2, 3];
        assert!(matches!(
            parse_options(Some(&any)),
            Err(Error::InvalidArgument(_))
        ));
        let o = Options {
            binary_name: "crun".into(),
            ..Default::default()
        };
        any.type_url = "containerd.runc.v1.Options".into();
        any.value = o.write_to_bytes().expect("encode");
        let back = parse_options(Some(&any)).expect("parse").expect("some");
        assert_eq!(back.binary_name, "crun");
    }

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
