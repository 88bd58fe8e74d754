//! A fake node and fake shims for orchestration tests. Every effect is a
//! named entry in a ledger of what exists on the "node" (namespace pins,
//! shm mounts, cgroups, CNI attachments, shims, runtime containers), so a
//! test can ask what is left. Every call passes two numbered points, one
//! before its effect and one after; a test can make point N a *crash* (the
//! call never returns, and neither does any later one: the daemon's future
//! is then dropped, as a kill -9 would end it) or a *failure* (the call
//! returns an error; after the effect only where the real call can fail
//! having done part of it: CNI ADD, a shim start, a runtime create).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use oci_spec::runtime::LinuxResources;
use serde_json::Value;

use crate::image::rootfs::RootfsError;
use crate::namespaces::{Kind, Setup};
use crate::network::{AddResult, CniError, NetworkConf, PodNetwork};
use crate::sandbox::effects::{Effects, NodeEffects};
use crate::sandbox::SandboxError;
use crate::shim_client::{Exit, Launch, RuntimeOptions, ShimError, Stdio};
use crate::shim_effects::{TaskEffects, TaskState, TaskStatus};
use crate::task::{self, Stopped, Task};

/// The fake node: its ledger and the points where a test injects faults.
#[derive(Debug, Default)]
pub struct FakeNode {
    state: Mutex<State>,
    crashed: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct State {
    /// What exists on the node.
    live: BTreeSet<String>,
    /// Tasks whose init process runs.
    running: BTreeSet<String>,
    /// How ended tasks ended.
    exits: BTreeMap<String, Exit>,
    /// Every point passed, in order (point N is `points[N - 1]`).
    points: Vec<String>,
    crash_at: Option<usize>,
    fail_at: Option<usize>,
    crashed: bool,
}

/// Whether the call at a point goes on or fails.
#[derive(PartialEq, Eq)]
enum At {
    Go,
    Fail,
}

fn injected() -> std::io::Error {
    std::io::Error::other("injected failure")
}

impl FakeNode {
    /// A node with nothing on it.
    pub fn new() -> Arc<Self> {
        Arc::new(FakeNode::default())
    }

    /// Pod effects on this node.
    pub fn effects(self: &Arc<Self>) -> Effects {
        Effects {
            node: self.clone(),
            tasks: self.clone(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding it has failed already.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Points passed so far.
    pub fn points(&self) -> usize {
        self.state().points.len()
    }

    /// The name of point `n` (1-based), for failure messages.
    pub fn point_name(&self, n: usize) -> String {
        self.state()
            .points
            .get(n.wrapping_sub(1))
            .cloned()
            .unwrap_or_default()
    }

    /// Makes point `n` (counted from the first ever passed) a crash.
    pub fn crash_at(&self, n: usize) {
        self.state().crash_at = Some(n);
    }

    /// Makes point `n` a failure.
    pub fn fail_at(&self, n: usize) {
        self.state().fail_at = Some(n);
    }

    /// After a daemon life: a new one starts; the node (ledger) stays as
    /// the old one left it, and faults not reached yet stay armed.
    pub fn restart(&self) {
        self.state().crashed = false;
    }

    /// Resolves once a crash point is reached.
    pub async fn crashed(&self) {
        self.crashed.notified().await
    }

    /// Everything that exists on the node.
    pub fn live(&self) -> Vec<String> {
        self.state().live.iter().cloned().collect()
    }

    /// Something made outside the daemon (a kubelet cgroup).
    pub fn preexisting(&self, what: &str) {
        self.state().live.insert(what.to_string());
    }

    fn has(&self, what: &str) -> bool {
        self.state().live.contains(what)
    }

    fn add(&self, what: String) {
        self.state().live.insert(what);
    }

    fn remove(&self, what: &str) {
        self.state().live.remove(what);
    }

    /// Passes a point: crashes (never returns) or says whether to fail.
    async fn at(&self, what: String) -> At {
        let (crash, fail) = {
            let mut st = self.state();
            if st.crashed {
                (true, false)
            } else {
                st.points.push(what);
                let n = st.points.len();
                let crash = st.crash_at == Some(n);
                let fail = st.fail_at == Some(n);
                // One-shot: the next life runs without the fault.
                if crash {
                    st.crash_at = None;
                }
                if fail {
                    st.fail_at = None;
                }
                st.crashed = crash;
                (crash, fail)
            }
        };
        if crash {
            self.crashed.notify_one();
            std::future::pending::<()>().await;
        }
        if fail {
            At::Fail
        } else {
            At::Go
        }
    }

    fn io_err(what: &'static str, path: &Path) -> SandboxError {
        SandboxError::io(what, path, injected())
    }

    fn cni_err() -> CniError {
        CniError::Spawn {
            plugin: "fake".into(),
            path: PathBuf::from("/fake"),
            command: "ADD",
            source: injected(),
        }
    }

    fn shim_err(method: &'static str) -> ShimError {
        ShimError::Call {
            method,
            code: ttrpc::Code::INTERNAL,
            message: "injected failure".into(),
        }
    }

    /// Ends task `id`'s init process as `signal` would.
    fn end(&self, id: &str, signal: u32) {
        let mut st = self.state();
        if st.running.remove(id) || !st.exits.contains_key(id) {
            st.exits.insert(
                id.to_string(),
                Exit {
                    status: 128 + signal,
                    at_ns: 1,
                },
            );
        }
    }

    fn not_found(method: &'static str) -> ShimError {
        ShimError::Call {
            method,
            code: ttrpc::Code::NOT_FOUND,
            message: "task does not exist".into(),
        }
    }

    fn shim_gone(method: &'static str) -> ShimError {
        ShimError::Lost {
            method,
            source: ttrpc::Error::RemoteClosed,
        }
    }
}

#[async_trait]
impl NodeEffects for FakeNode {
    async fn pin_namespaces(
        &self,
        dir: &Path,
        kinds: &[Kind],
        _setup: &Setup,
    ) -> Result<(), SandboxError> {
        if self
            .at(format!("pin namespaces in {}", dir.display()))
            .await
            == At::Fail
        {
            return Err(Self::io_err("pin", dir));
        }
        std::fs::create_dir_all(dir).map_err(|e| SandboxError::io("create", dir, e))?;
        for k in kinds {
            let p = dir.join(k.name());
            std::fs::write(&p, b"").map_err(|e| SandboxError::io("create", &p, e))?;
            self.add(format!("ns {}", p.display()));
        }
        if self.at("namespaces pinned".into()).await == At::Fail {
            // As Pinned::create: on failure nothing stays pinned.
            let prefix = format!("ns {}/", dir.display());
            self.state().live.retain(|l| !l.starts_with(&prefix));
            return Err(Self::io_err("pin", dir));
        }
        Ok(())
    }

    async fn adopt_namespaces(
        &self,
        dir: &Path,
        _pid: u32,
        kinds: &[Kind],
    ) -> Result<(), SandboxError> {
        self.pin_namespaces(dir, kinds, &Setup::default()).await
    }

    async fn unpin_namespaces(&self, dir: &Path) -> Result<(), SandboxError> {
        if self
            .at(format!("unpin namespaces in {}", dir.display()))
            .await
            == At::Fail
        {
            return Err(Self::io_err("unpin", dir));
        }
        let prefix = format!("ns {}/", dir.display());
        self.state().live.retain(|l| !l.starts_with(&prefix));
        for k in crate::namespaces::ALL {
            let _ = std::fs::remove_file(dir.join(k.name()));
        }
        if self.at("namespaces unpinned".into()).await == At::Fail {
            return Err(Self::io_err("unpin", dir));
        }
        Ok(())
    }

    async fn mount_shm(&self, dir: &Path, _owner: Option<(u32, u32)>) -> Result<(), SandboxError> {
        if self.at("mount shm".into()).await == At::Fail {
            return Err(Self::io_err("mount", dir));
        }
        std::fs::create_dir_all(dir).map_err(|e| SandboxError::io("create", dir, e))?;
        self.add(format!("shm {}", dir.display()));
        if self.at("shm mounted".into()).await == At::Fail {
            // A mount that fails is not made.
            self.remove(&format!("shm {}", dir.display()));
            return Err(Self::io_err("mount", dir));
        }
        Ok(())
    }

    async fn unmount_shm(&self, dir: &Path) -> Result<(), SandboxError> {
        if self.at("unmount shm".into()).await == At::Fail {
            return Err(Self::io_err("unmount", dir));
        }
        self.remove(&format!("shm {}", dir.display()));
        if self.at("shm unmounted".into()).await == At::Fail {
            return Err(Self::io_err("unmount", dir));
        }
        Ok(())
    }

    async fn cgroup_exists(&self, path: &str, _systemd: bool) -> Result<bool, SandboxError> {
        Ok(self.has(&format!("cgroup {path}")))
    }

    async fn make_cgroup(
        &self,
        path: &str,
        _systemd: bool,
        _limits: Option<LinuxResources>,
    ) -> Result<(), SandboxError> {
        if self.at("make pod cgroup".into()).await == At::Fail {
            return Err(Self::io_err("mkdir", Path::new(path)));
        }
        self.add(format!("cgroup {path}"));
        // Made, but its limits refused: the cgroup stays.
        if self.at("pod cgroup made".into()).await == At::Fail {
            return Err(Self::io_err("write limits", Path::new(path)));
        }
        Ok(())
    }

    async fn remove_cgroup(&self, path: &str, _systemd: bool) -> Result<(), SandboxError> {
        if self.at("remove pod cgroup".into()).await == At::Fail {
            return Err(Self::io_err("rmdir", Path::new(path)));
        }
        self.remove(&format!("cgroup {path}"));
        if self.at("pod cgroup removed".into()).await == At::Fail {
            return Err(Self::io_err("rmdir", Path::new(path)));
        }
        Ok(())
    }

    async fn mount_rootfs(
        &self,
        _lowers: &[PathBuf],
        upper: &Path,
        work: &Path,
        target: &Path,
        _context: Option<&str>,
    ) -> Result<(), RootfsError> {
        let err = |op: &str| RootfsError::Mount {
            target: target.to_path_buf(),
            op: op.into(),
            source: nix::errno::Errno::EIO,
        };
        if self.at("mount rootfs".into()).await == At::Fail {
            return Err(err("mount"));
        }
        for d in [upper, work, target] {
            std::fs::create_dir_all(d).map_err(|_| err("mkdir"))?;
        }
        self.add(format!("rootfs {}", target.display()));
        if self.at("rootfs mounted".into()).await == At::Fail {
            self.remove(&format!("rootfs {}", target.display()));
            return Err(err("mount"));
        }
        Ok(())
    }

    async fn mount_image_volume(
        &self,
        _lowers: &[PathBuf],
        target: &Path,
    ) -> Result<(), RootfsError> {
        let err = |op: &str| RootfsError::Mount {
            target: target.to_path_buf(),
            op: op.into(),
            source: nix::errno::Errno::EIO,
        };
        if self.at("mount image volume".into()).await == At::Fail {
            return Err(err("mount"));
        }
        std::fs::create_dir_all(target).map_err(|_| err("mkdir"))?;
        self.add(format!("rootfs {}", target.display()));
        Ok(())
    }

    async fn unmount_rootfs(&self, target: &Path) -> Result<(), RootfsError> {
        let err = || RootfsError::Unmount {
            target: target.to_path_buf(),
            source: nix::errno::Errno::EIO,
        };
        if self.at("unmount rootfs".into()).await == At::Fail {
            return Err(err());
        }
        self.remove(&format!("rootfs {}", target.display()));
        if self.at("rootfs unmounted".into()).await == At::Fail {
            return Err(err());
        }
        Ok(())
    }

    async fn network_add(
        &self,
        _conf: &NetworkConf,
        _bin_dirs: &[PathBuf],
        pod: &PodNetwork,
    ) -> Result<AddResult, CniError> {
        if self.at("CNI ADD".into()).await == At::Fail {
            return Err(Self::cni_err());
        }
        self.add(format!("cni {}", pod.id));
        // A plugin can fail having made its part: DEL is owed.
        if self.at("CNI ADD done".into()).await == At::Fail {
            return Err(Self::cni_err());
        }
        Ok(AddResult {
            ips: vec!["10.88.0.2".into()],
            result: serde_json::json!({"cniVersion": "1.0.0", "ips": [{"address": "10.88.0.2/16"}]}),
        })
    }

    async fn network_del(
        &self,
        _conf: &NetworkConf,
        _bin_dirs: &[PathBuf],
        pod: &PodNetwork,
        _prev: Option<&Value>,
    ) -> Result<(), CniError> {
        if self.at("CNI DEL".into()).await == At::Fail {
            return Err(Self::cni_err());
        }
        self.remove(&format!("cni {}", pod.id));
        if self.at("CNI DEL done".into()).await == At::Fail {
            return Err(Self::cni_err());
        }
        Ok(())
    }
}

#[async_trait]
impl TaskEffects for FakeNode {
    async fn launch(&self, l: &Launch<'_>) -> Result<String, ShimError> {
        if self.at(format!("launch shim {}", l.id)).await == At::Fail {
            return Err(ShimError::Start {
                id: l.id.to_string(),
                message: "injected failure".into(),
            });
        }
        let address = format!("unix://fake/{}", l.id);
        // As carapace-shim: the address is in the bundle before the
        // daemon hears it.
        let _ = std::fs::write(l.bundle.join("address"), &address);
        self.add(format!("shim {}", l.id));
        if self.at("shim launched".into()).await == At::Fail {
            return Err(ShimError::Start {
                id: l.id.to_string(),
                message: "injected failure".into(),
            });
        }
        Ok(address)
    }

    async fn create(
        &self,
        _address: &str,
        id: &str,
        _bundle: &Path,
        _stdio: &Stdio,
        _runtime: &RuntimeOptions,
    ) -> Result<u32, ShimError> {
        if !self.has(&format!("shim {id}")) {
            return Err(Self::shim_gone("Create"));
        }
        if self.at(format!("create task {id}")).await == At::Fail {
            return Err(Self::shim_err("Create"));
        }
        self.add(format!("task {id}"));
        // The runtime can fail having created part of the container.
        if self.at("task created".into()).await == At::Fail {
            return Err(Self::shim_err("Create"));
        }
        Ok(4242)
    }

    async fn start(&self, _address: &str, id: &str) -> Result<u32, ShimError> {
        if !self.has(&format!("shim {id}")) {
            return Err(Self::shim_gone("Start"));
        }
        if self.at(format!("start task {id}")).await == At::Fail {
            return Err(Self::shim_err("Start"));
        }
        self.state().running.insert(id.to_string());
        // Started, but the answer lost.
        if self.at("task started".into()).await == At::Fail {
            return Err(Self::shim_err("Start"));
        }
        Ok(4242)
    }

    async fn wait(&self, _address: &str, id: &str) -> Option<Exit> {
        loop {
            {
                let st = self.state();
                if !st.running.contains(id) {
                    return st.exits.get(id).copied();
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }

    async fn state(&self, _address: &str, id: &str) -> Option<TaskState> {
        let st = self.state();
        if !st.live.contains(&format!("shim {id}")) || !st.live.contains(&format!("task {id}")) {
            return None;
        }
        let exit = st.exits.get(id).copied();
        let status = if st.running.contains(id) {
            TaskStatus::Running
        } else if exit.is_some() {
            TaskStatus::Stopped
        } else {
            TaskStatus::Created
        };
        Some(TaskState { status, exit })
    }

    async fn kill(
        &self,
        _address: &str,
        id: &str,
        signal: u32,
        _all: bool,
    ) -> Result<(), ShimError> {
        if !self.has(&format!("shim {id}")) {
            return Err(Self::shim_gone("Kill"));
        }
        if !self.has(&format!("task {id}")) {
            return Err(Self::not_found("Kill"));
        }
        if self.at(format!("kill task {id}")).await == At::Fail {
            return Err(Self::shim_err("Kill"));
        }
        self.end(id, signal);
        if self.at("task killed".into()).await == At::Fail {
            return Err(Self::shim_err("Kill"));
        }
        Ok(())
    }

    async fn stop(&self, t: &Task<'_>, _launch: &Launch<'_>) -> Result<Stopped, ShimError> {
        let Some(address) = task::address(t.shim_address, t.bundle) else {
            return Ok(Stopped::default());
        };
        if !self.has(&format!("shim {}", t.id)) {
            // `carapace-shim delete`: the runtime's container goes.
            if t.bundle.join("config.json").exists() {
                if self.at(format!("shim delete {}", t.id)).await == At::Fail {
                    return Err(Self::shim_err("delete"));
                }
                self.remove(&format!("task {}", t.id));
                self.state().running.remove(t.id);
            }
            return Ok(Stopped::default());
        }
        if self.at(format!("stop task {}", t.id)).await == At::Fail {
            return Err(Self::shim_err("Kill"));
        }
        let had_task = self.has(&format!("task {}", t.id));
        if had_task {
            self.end(t.id, 9);
        }
        self.remove(&format!("task {}", t.id));
        self.remove(&format!("shim {}", t.id));
        if self.at("task stopped".into()).await == At::Fail {
            return Err(Self::shim_gone("Shutdown"));
        }
        let exit = self.state().exits.get(t.id).copied();
        Ok(Stopped {
            shim_pid: Some(1000),
            exit: exit.filter(|_| had_task),
            address: Some(address),
        })
    }

    async fn reap(&self, t: &Task<'_>, stopped: &Stopped) {
        self.at(format!("reap task {}", t.id)).await;
        self.state().running.remove(t.id);
        self.remove(&format!("task {}", t.id));
        if stopped.shim_pid.is_some() {
            self.remove(&format!("shim {}", t.id));
        }
        self.at("task reaped".into()).await;
    }
}
