//! Crash consistency under chaos (issue #20). Two clients run pods and
//! containers against the daemon — RunPodSandbox, CreateContainer,
//! StartContainer, ExecSync, stop and removal, with some pods left alive —
//! while the daemon is killed -9 and restarted every few seconds and random
//! shims of it are killed -9. Then the daemon is killed and restarted once
//! more, and this test proves that:
//! * every container listed RUNNING answers ExecSync;
//! * every pod and container listed can be removed (none is stuck);
//! * nothing of this daemon is left: no mount under its directories (rootfs,
//!   shm, namespace pin), pod or container directory, shim socket, runtime
//!   state, pod cgroup, shim, infra or container process, CNI IP
//!   reservation, veth on its bridge.
//!
//! The counts (kills, operations, errors, leaks) are printed so a reader
//! sees what a run proved. Bounded: [`CHAOS_TIME`] of chaos (at most
//! [`MAX_CYCLES_PER_SEC`] workload cycles a second per client), then at most
//! [`CLEANUP_TIME`] of removals. The schedule is seeded: `CHAOS_SEED=<n>`
//! varies it (a fixed seed by default), `CHAOS_SECS=<n>` lengthens the
//! chaos for a soak, and `CHAOS_LOG=<file>` keeps a copy of the daemon's
//! log (its directory is removed with the test).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use carapace_e2e::workload::{pull, Rt};
use carapace_e2e::{connect, mounts_under, pod_config, require_registry, Daemon};
use k8s_cri::v1 as cri;
use nix::sys::signal::Signal;

const BUSYBOX: &str = "127.0.0.1:5000/test/busybox:latest";

/// How long the clients and the killer run.
const CHAOS_TIME: Duration = Duration::from_secs(75);
/// Workload cycles (pod, container, maybe exec, maybe removal) a client
/// may start per second of chaos, at most (a client on this 2-core machine
/// manages about 2).
const MAX_CYCLES_PER_SEC: u64 = 5;
/// Clients running workload cycles at once.
const CLIENTS: u64 = 2;
/// The daemon is killed every this many milliseconds (uniformly chosen).
const DAEMON_KILL_MS: (u64, u64) = (2_000, 4_000);
/// One daemon life in this many also sees a shim killed while it serves;
/// one in [`SHIM_KILL_DOWN_ONE_IN`] sees one killed while it is down.
const SHIM_KILL_UP_ONE_IN: u64 = 2;
/// See [`SHIM_KILL_UP_ONE_IN`].
const SHIM_KILL_DOWN_ONE_IN: u64 = 6;
/// A client leaves one pod in this many alive (with its container).
const KEEP_ONE_IN: u64 = 4;
/// A client keeps at most this many pods alive: past it, it removes its
/// oldest (pods whose cycle failed are kept too, and retried so).
const KEEP_MAX: usize = 6;
/// Per-call hang guard: a call the daemon never answers counts as
/// `Timeout`.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the final removals may take.
const CLEANUP_TIME: Duration = Duration::from_secs(60);
/// How long the census waits for what is still going away (a shim exiting
/// after Shutdown) before counting it as leaked.
const SETTLE_TIME: Duration = Duration::from_secs(10);
/// The default seed of the schedule.
const DEFAULT_SEED: u64 = 20;

/// A small seeded PRNG (splitmix64): the run's schedule is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
    })
}

/// How a call failed: its gRPC code (or `Timeout`) and message.
#[derive(Clone, Debug)]
struct Failure {
    code: String,
    message: String,
}

impl Failure {
    /// Whether the connection is likely dead (the daemon was killed).
    fn reconnect(&self) -> bool {
        matches!(
            self.code.as_str(),
            "Unavailable" | "Unknown" | "Cancelled" | "Timeout"
        )
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// A message with IDs replaced, so alike failures count as one.
fn generic(msg: &str) -> String {
    let mut out = String::new();
    let mut run = String::new();
    for ch in msg.chars().chain(std::iter::once(' ')) {
        if ch.is_ascii_hexdigit() {
            run.push(ch);
            continue;
        }
        if run.len() >= 32 {
            out.push_str("<id>");
        } else {
            out.push_str(&run);
        }
        run.clear();
        out.push(ch);
    }
    out.pop();
    out.chars().take(240).collect()
}

/// The counts of one kind of call.
#[derive(Default)]
struct Op {
    attempted: u64,
    ok: u64,
    /// Failures by code.
    errors: BTreeMap<String, u64>,
    /// A few distinct messages per code.
    samples: BTreeMap<String, BTreeSet<String>>,
}

/// What the clients did.
#[derive(Default)]
struct Tally {
    ops: BTreeMap<&'static str, Op>,
    /// Pods whose RunPodSandbox answered with an ID.
    pods: BTreeSet<String>,
    /// Containers whose CreateContainer answered with an ID.
    containers: BTreeSet<String>,
    /// Pods a client removed (RemovePodSandbox answered OK).
    pods_removed: u64,
    /// Pods deliberately left alive.
    pods_kept: u64,
}

impl Tally {
    fn record<T>(&mut self, kind: &'static str, r: &Result<T, Failure>) {
        let op = self.ops.entry(kind).or_default();
        op.attempted += 1;
        match r {
            Ok(_) => op.ok += 1,
            Err(f) => {
                *op.errors.entry(f.code.clone()).or_default() += 1;
                let s = op.samples.entry(f.code.clone()).or_default();
                if s.len() < 4 {
                    s.insert(generic(&f.message));
                }
            }
        }
    }
}

type Shared = Arc<Mutex<Tally>>;

fn lock(t: &Shared) -> std::sync::MutexGuard<'_, Tally> {
    t.lock().expect("tally lock (a client panicked)")
}

/// Runs one CRI call under the hang guard, counting it as `kind`.
async fn call<T>(
    tally: &Shared,
    kind: &'static str,
    fut: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, Failure> {
    let r = timed(fut).await;
    lock(tally).record(kind, &r);
    r
}

/// One CRI call under the hang guard.
async fn timed<T>(
    fut: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(s)) => Err(Failure {
            code: format!("{:?}", s.code()),
            message: s.message().to_string(),
        }),
        Err(_) => Err(Failure {
            code: "Timeout".into(),
            message: format!("no answer within {CALL_TIMEOUT:?}"),
        }),
    }
}

fn container_config(name: &str) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: BUSYBOX.into(),
            ..Default::default()
        }),
        command: vec!["sleep".into(), "3600".into()],
        linux: Some(cri::LinuxContainerConfig::default()),
        ..Default::default()
    }
}

/// One client: workload cycles until the chaos ends.
struct Client {
    n: u64,
    sock: PathBuf,
    rng: Rng,
    tally: Shared,
    rt: Option<Rt>,
    /// Pods left alive, oldest first.
    kept: VecDeque<String>,
}

impl Client {
    /// A connection, made anew after the daemon went away.
    async fn rt(&mut self) -> Option<Rt> {
        if self.rt.is_none() {
            let r = tokio::time::timeout(CALL_TIMEOUT, connect(&self.sock))
                .await
                .map_err(|_| Failure {
                    code: "Timeout".into(),
                    message: "connect".into(),
                })
                .and_then(|r| {
                    r.map_err(|e| Failure {
                        code: "Refused".into(),
                        message: e.to_string(),
                    })
                });
            lock(&self.tally).record("connect", &r);
            self.rt = r.ok().map(Rt::new);
        }
        self.rt.clone()
    }

    /// Notes a failure: drops the connection if it looks dead.
    fn failed(&mut self, f: &Failure) {
        if f.reconnect() {
            self.rt = None;
        }
    }

    async fn run(mut self, end: Instant, max_cycles: u64) {
        let mut cycle = 0;
        while cycle < max_cycles && Instant::now() < end {
            let Some(rt) = self.rt().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            if self.kept.len() > KEEP_MAX {
                let old = self.kept.pop_front().expect("kept pods");
                if let Err(f) = self.remove_pod(rt.clone(), &old, true).await {
                    self.failed(&f);
                    self.kept.push_back(old);
                    continue;
                }
            }
            cycle += 1;
            match self.cycle(rt, cycle).await {
                Ok(Some(pod)) => self.kept.push_back(pod),
                Ok(None) => {}
                Err((pod, f)) => {
                    self.failed(&f);
                    self.kept.extend(pod);
                }
            }
        }
    }

    /// StopPodSandbox (if `stop`) and RemovePodSandbox.
    async fn remove_pod(&mut self, mut rt: Rt, pod: &str, stop: bool) -> Result<(), Failure> {
        if stop {
            let req = cri::StopPodSandboxRequest {
                pod_sandbox_id: pod.into(),
            };
            call(&self.tally, "StopPodSandbox", rt.stop_pod_sandbox(req)).await?;
        }
        let req = cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod.into(),
        };
        call(&self.tally, "RemovePodSandbox", rt.remove_pod_sandbox(req)).await?;
        lock(&self.tally).pods_removed += 1;
        Ok(())
    }

    /// A pod with a container, maybe an exec, maybe removal. The pod if it
    /// is left alive; on failure, the pod if there is one.
    async fn cycle(
        &mut self,
        mut rt: Rt,
        cycle: u64,
    ) -> Result<Option<String>, (Option<String>, Failure)> {
        let t = self.tally.clone();
        let name = format!("chaos-{}-{cycle}", self.n);
        let pc = pod_config(&name);
        let req = cri::RunPodSandboxRequest {
            config: Some(pc.clone()),
            runtime_handler: String::new(),
        };
        let pod = call(&t, "RunPodSandbox", rt.run_pod_sandbox(req))
            .await
            .map_err(|f| (None, f))?
            .pod_sandbox_id;
        lock(&t).pods.insert(pod.clone());
        let with_pod = |f| (Some(pod.clone()), f);
        let req = cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(container_config("sleeper")),
            sandbox_config: Some(pc),
        };
        let ctr = call(&t, "CreateContainer", rt.create_container(req))
            .await
            .map_err(with_pod)?
            .container_id;
        lock(&t).containers.insert(ctr.clone());
        let req = cri::StartContainerRequest {
            container_id: ctr.clone(),
        };
        call(&t, "StartContainer", rt.start_container(req))
            .await
            .map_err(with_pod)?;
        if self.rng.one_in(2) {
            let req = cri::ExecSyncRequest {
                container_id: ctr.clone(),
                cmd: vec!["true".into()],
                timeout: 10,
            };
            let r = timed(rt.exec_sync(req)).await.and_then(|r| {
                if r.exit_code == 0 {
                    Ok(())
                } else {
                    Err(Failure {
                        code: "NonZeroExit".into(),
                        message: format!(
                            "exit {}: {}",
                            r.exit_code,
                            String::from_utf8_lossy(&r.stderr)
                        ),
                    })
                }
            });
            lock(&t).record("ExecSync", &r);
            r.map_err(with_pod)?;
        }
        if self.rng.one_in(KEEP_ONE_IN) {
            lock(&t).pods_kept += 1;
            return Ok(Some(pod));
        }
        // Torn down as kubelet does, or with the pod calls doing it all.
        match self.rng.below(3) {
            0 => {
                let req = cri::StopContainerRequest {
                    container_id: ctr.clone(),
                    timeout: self.rng.below(2) as i64,
                };
                call(&t, "StopContainer", rt.stop_container(req))
                    .await
                    .map_err(with_pod)?;
                let req = cri::RemoveContainerRequest {
                    container_id: ctr.clone(),
                };
                call(&t, "RemoveContainer", rt.remove_container(req))
                    .await
                    .map_err(with_pod)?;
                self.remove_pod(rt, &pod, true).await.map_err(with_pod)?;
            }
            1 => self.remove_pod(rt, &pod, true).await.map_err(with_pod)?,
            _ => self.remove_pod(rt, &pod, false).await.map_err(with_pod)?,
        }
        Ok(None)
    }
}

/// What the killer did.
#[derive(Default, Debug)]
struct Kills {
    daemon: u64,
    /// Shims killed: (while the daemon served, while it was down).
    shims_up: u64,
    shims_down: u64,
    /// Of those, shims of a pod's infra (the rest: of containers).
    infra_shims: u64,
    /// Times the daemon was found dead before it was killed, or did not
    /// serve after a restart: each a finding of its own.
    died_by_itself: Vec<String>,
    /// Processes found holding a listener on the CRI socket right after
    /// the daemon was killed (and reaped): a restart then finds "another
    /// daemon" serving there.
    held_after_kill: Vec<String>,
}

/// The shim servers of the daemon in `dir` (PID, task ID): carapace-shim
/// processes started with its socket as `-address`, serving from a
/// bundle below `dir` (the short-lived `start` and `delete` runs are left
/// alone).
fn shims_of(dir: &Path, sock: &Path) -> Vec<(i32, String)> {
    let sock = sock.to_string_lossy();
    let mut out = Vec::new();
    for (pid, proc_dir) in pids() {
        let Ok(cmdline) = std::fs::read(proc_dir.join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let arg_after = |flag: &str| {
            args.iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1))
                .cloned()
        };
        let is_shim = args
            .first()
            .is_some_and(|a| a.ends_with("/carapace-shim") || a == "carapace-shim");
        let mine = arg_after("-address").is_some_and(|a| a == sock)
            && under(&proc_dir.join("cwd"), dir)
            && !args.iter().any(|a| a == "start" || a == "delete");
        if let (true, true, Some(id)) = (is_shim, mine, arg_after("-id")) {
            out.push((pid, id));
        }
    }
    out
}

/// Every process: (PID, its /proc directory).
fn pids() -> Vec<(i32, PathBuf)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().parse::<i32>().ok()?;
            Some((pid, e.path()))
        })
        .collect()
}

/// Whether the symlink `link` (a /proc cwd or root) points below `dir`.
fn under(link: &Path, dir: &Path) -> bool {
    std::fs::read_link(link).is_ok_and(|p| p.starts_with(dir))
}

/// Whether `pid` is alive (not gone, not a zombie waiting for us).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// SIGKILLs one shim of this test's daemon, if there is one; whether it
/// served a pod's infra (the task ID is a pod's).
fn kill_random_shim(d: &Daemon, rng: &mut Rng, pods: &BTreeSet<String>) -> Option<bool> {
    let shims = shims_of(d.dir.path(), &d.socket());
    if shims.is_empty() {
        return None;
    }
    let (pid, id) = &shims[rng.below(shims.len() as u64) as usize];
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), Signal::SIGKILL).ok()?;
    Some(pods.contains(id) || state_has(d, "pods", id))
}

fn state_has(d: &Daemon, kind: &str, id: &str) -> bool {
    d.state_dir().join(kind).join(id).exists()
}

/// Starts the daemon again; a daemon that does not serve is a finding,
/// retried.
fn respawn(d: &mut Daemon, kills: &mut Kills) {
    for attempt in 0..3 {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| d.spawn()));
        let failure = match r {
            Ok(()) => {
                // The socket answered; but if a process other than the new
                // daemon holds a listener on it, the new daemon finds
                // "another daemon" there and exits.
                let held = listeners_of(&d.socket(), d.pid());
                if held.is_empty() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(500));
                if alive(d.pid()) {
                    return;
                }
                let log = d.log();
                d.stop(Signal::SIGKILL);
                format!(
                    "restart refused: the socket still had a listener, held by {held:?}; the \
                     daemon said: {}",
                    log.lines().rfind(|l| l.starts_with("Error")).unwrap_or("?")
                )
            }
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| "panic".into());
                if attempt == 2 {
                    std::panic::resume_unwind(e);
                }
                format!(
                    "restart failed: {}",
                    msg.lines().take(3).collect::<Vec<_>>().join(" | ")
                )
            }
        };
        assert!(attempt < 2, "the daemon does not restart: {failure}");
        kills.died_by_itself.push(failure);
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Processes other than `except` holding a listening unix socket bound
/// at `sock` (/proc/net/unix of this network namespace, and /proc/*/fd):
/// "PID cmdline".
fn listeners_of(sock: &Path, except: i32) -> Vec<String> {
    let sock = sock.to_string_lossy();
    // Num RefCount Protocol Flags Type St Inode Path; St 01 = listening.
    let inodes: Vec<String> = std::fs::read_to_string("/proc/net/unix")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 8 && f[7] == sock && f[5] == "01").then(|| format!("socket:[{}]", f[6]))
        })
        .collect();
    let mut out = Vec::new();
    for (pid, p) in pids() {
        if pid == except || inodes.is_empty() {
            continue;
        }
        let holds = std::fs::read_dir(p.join("fd"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|fd| {
                std::fs::read_link(fd.path())
                    .is_ok_and(|l| inodes.iter().any(|i| l.as_os_str() == i.as_str()))
            });
        if holds {
            let cmd = std::fs::read(p.join("cmdline")).unwrap_or_default();
            out.push(format!(
                "{pid} {}",
                String::from_utf8_lossy(&cmd).replace('\0', " ").trim()
            ));
        }
    }
    out
}

/// The killer: kills the daemon every few seconds, and now and then a
/// shim; returns the daemon, serving.
fn chaos(mut d: Daemon, end: Instant, seed: u64, tally: Shared) -> (Daemon, Kills) {
    let mut rng = Rng(seed ^ 0xc4a0_5000);
    let mut kills = Kills::default();
    let pods = || lock(&tally).pods.clone();
    let note = |k: &mut Kills, up: bool, infra: Option<bool>| {
        if let Some(infra) = infra {
            if up {
                k.shims_up += 1;
            } else {
                k.shims_down += 1;
            }
            k.infra_shims += u64::from(infra);
        }
    };
    loop {
        let life = Duration::from_millis(
            DAEMON_KILL_MS.0 + rng.below(DAEMON_KILL_MS.1 - DAEMON_KILL_MS.0 + 1),
        );
        if Instant::now() + life > end {
            break;
        }
        if rng.one_in(SHIM_KILL_UP_ONE_IN) {
            let first = life.mul_f64(rng.below(1000) as f64 / 1000.0);
            std::thread::sleep(first);
            let infra = kill_random_shim(&d, &mut rng, &pods());
            note(&mut kills, true, infra);
            std::thread::sleep(life - first);
        } else {
            std::thread::sleep(life);
        }
        if !alive(d.pid()) {
            let log = d.log();
            kills.died_by_itself.push(format!(
                "daemon {} found dead before kill {}; it said: {}",
                d.pid(),
                kills.daemon + 1,
                log.lines().rfind(|l| l.starts_with("Error")).unwrap_or("?")
            ));
        }
        d.stop(Signal::SIGKILL);
        kills.daemon += 1;
        let held = listeners_of(&d.socket(), 0);
        if !held.is_empty() {
            kills
                .held_after_kill
                .push(format!("after kill {}: {held:?}", kills.daemon));
        }
        if rng.one_in(SHIM_KILL_DOWN_ONE_IN) {
            let infra = kill_random_shim(&d, &mut rng, &pods());
            note(&mut kills, false, infra);
        }
        respawn(&mut d, &mut kills);
    }
    (d, kills)
}

/// 64-hex-digit IDs following `key=` in the daemon's log.
fn ids_in_log(log: &str, key: &str) -> BTreeSet<String> {
    log.match_indices(key)
        .filter_map(|(i, _)| {
            let id: String = log[i + key.len()..].chars().take(64).collect();
            (id.len() == 64 && id.chars().all(|c| c.is_ascii_hexdigit())).then_some(id)
        })
        .collect()
}

/// What is left of this daemon's pods after every removal.
#[derive(Default, Debug)]
struct Census {
    /// Mount points under the daemon's directory, by what they are.
    pins: Vec<String>,
    shm: Vec<String>,
    rootfs: Vec<String>,
    other_mounts: Vec<String>,
    /// Pod and container directories, runtime state.
    dirs: Vec<String>,
    /// Shim sockets nobody listens on any more.
    sockets: Vec<String>,
    /// Pod cgroups (any hierarchy) of this daemon's pods.
    cgroups: Vec<String>,
    /// Shim, infra and other processes of this daemon.
    shims: Vec<String>,
    infras: Vec<String>,
    other_procs: Vec<String>,
    /// host-local reservations in the network's data dir.
    ips: Vec<String>,
    /// Interfaces still enslaved to the network's bridge.
    veths: Vec<String>,
}

impl Census {
    fn take(d: &Daemon, daemon_pid: i32, pod_ids: &BTreeSet<String>) -> Census {
        let dir = d.dir.path();
        let mut c = Census::default();
        for m in mounts_under(dir) {
            let p = Path::new(&m);
            let parent = p.parent().and_then(Path::file_name);
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            if parent.is_some_and(|n| n == "ns") {
                c.pins.push(m);
            } else if name.as_deref() == Some("shm") {
                c.shm.push(m);
            } else if name.as_deref() == Some("rootfs") {
                c.rootfs.push(m);
            } else {
                c.other_mounts.push(m);
            }
        }
        for sub in [
            "state/pods",
            "state/containers",
            "root/containers",
            "runtime",
        ] {
            for e in std::fs::read_dir(dir.join(sub))
                .into_iter()
                .flatten()
                .flatten()
            {
                c.dirs
                    .push(format!("{sub}/{}", e.file_name().to_string_lossy()));
            }
        }
        for e in std::fs::read_dir(dir.join("state/s"))
            .into_iter()
            .flatten()
            .flatten()
        {
            c.sockets
                .push(format!("state/s/{}", e.file_name().to_string_lossy()));
        }
        let mut hierarchies = vec![PathBuf::from("/sys/fs/cgroup")];
        hierarchies.extend(
            std::fs::read_dir("/sys/fs/cgroup")
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path()),
        );
        for h in hierarchies {
            for e in std::fs::read_dir(h.join("carapace"))
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = e.file_name().to_string_lossy().into_owned();
                if name
                    .strip_prefix("pod-")
                    .is_some_and(|id| pod_ids.contains(id))
                {
                    c.cgroups.push(e.path().display().to_string());
                }
            }
        }
        let sock = d.socket().to_string_lossy().into_owned();
        let me = std::process::id() as i32;
        for (pid, p) in pids() {
            if pid == me || pid == daemon_pid {
                continue;
            }
            let read = |f: &str| {
                String::from_utf8_lossy(&std::fs::read(p.join(f)).unwrap_or_default())
                    .replace('\0', " ")
            };
            let cgroup = read("cgroup");
            let in_pod_cgroup = cgroup.match_indices("/carapace/pod-").any(|(i, k)| {
                let id: String = cgroup[i + k.len()..].chars().take(64).collect();
                pod_ids.contains(&id)
            });
            let dir_s = dir.to_string_lossy();
            let mine = under(&p.join("cwd"), dir)
                || under(&p.join("root"), dir)
                || read("cmdline").contains(&sock)
                || read("environ").contains(dir_s.as_ref())
                || in_pod_cgroup;
            if !mine || !alive(pid) {
                continue;
            }
            let comm = read("comm").trim().to_string();
            let what = format!("{pid} {}", read("cmdline").trim());
            match comm.as_str() {
                "carapace-shim" => c.shims.push(what),
                "carapace-infra" => c.infras.push(what),
                _ => c.other_procs.push(format!("{comm}: {what}")),
            }
        }
        for net in std::fs::read_dir(dir.join("ipam"))
            .into_iter()
            .flatten()
            .flatten()
        {
            for f in std::fs::read_dir(net.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let n = f.file_name().to_string_lossy().into_owned();
                if n.parse::<std::net::IpAddr>().is_ok() {
                    let owner = std::fs::read_to_string(f.path()).unwrap_or_default();
                    c.ips
                        .push(format!("{n} ({})", owner.lines().next().unwrap_or("")));
                }
            }
        }
        if let Some(bridge) = bridge_of(d) {
            for e in std::fs::read_dir(format!("/sys/class/net/{bridge}/brif"))
                .into_iter()
                .flatten()
                .flatten()
            {
                c.veths.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        c
    }

    fn leaks(&self) -> usize {
        self.all().iter().map(|(_, v)| v.len()).sum()
    }

    fn all(&self) -> [(&'static str, &Vec<String>); 12] {
        [
            ("pins", &self.pins),
            ("shm", &self.shm),
            ("rootfs", &self.rootfs),
            ("other mounts", &self.other_mounts),
            ("dirs", &self.dirs),
            ("shim sockets", &self.sockets),
            ("cgroups", &self.cgroups),
            ("shims", &self.shims),
            ("infras", &self.infras),
            ("other processes", &self.other_procs),
            ("IPs", &self.ips),
            ("veths", &self.veths),
        ]
    }
}

/// The bridge of the daemon's test network.
fn bridge_of(d: &Daemon) -> Option<String> {
    let conf: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.cni_dir().join("10-e2e.conflist")).ok()?).ok()?;
    conf["plugins"][0]["bridge"].as_str().map(str::to_string)
}

fn state_name(s: i32) -> String {
    cri::ContainerState::try_from(s)
        .map(|s| s.as_str_name().trim_start_matches("CONTAINER_").to_string())
        .unwrap_or_else(|_| format!("state {s}"))
}

fn pod_state_name(s: i32) -> String {
    cri::PodSandboxState::try_from(s)
        .map(|s| s.as_str_name().trim_start_matches("SANDBOX_").to_string())
        .unwrap_or_else(|_| format!("state {s}"))
}

/// Counts by name.
fn histogram(names: impl IntoIterator<Item = String>) -> BTreeMap<String, u64> {
    let mut h = BTreeMap::new();
    for n in names {
        *h.entry(n).or_default() += 1;
    }
    h
}

async fn list_pods(rt: &mut Rt) -> Result<Vec<cri::PodSandbox>, Failure> {
    timed(rt.list_pod_sandbox(cri::ListPodSandboxRequest::default()))
        .await
        .map(|r| r.items)
}

async fn list_containers(rt: &mut Rt) -> Result<Vec<cri::Container>, Failure> {
    timed(rt.list_containers(cri::ListContainersRequest::default()))
        .await
        .map(|r| r.containers)
}

/// What is below `dir`: each path, with its kind and whether it is a
/// mount point (nsfs: a namespace pin).
fn tree(dir: &Path) -> Vec<String> {
    let mounts = mounts_under(dir);
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let kind = match e.file_type() {
                Ok(t) if t.is_dir() => "dir",
                Ok(t) if t.is_file() => "file",
                _ => "other",
            };
            let mounted = mounts.iter().any(|m| Path::new(m) == p);
            let nsfs = nix::sys::statfs::statfs(&p)
                .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC);
            let rel = p.strip_prefix(dir).unwrap_or(&p).display().to_string();
            out.push(format!(
                "{rel} ({kind}{}{})",
                if mounted { ", mounted" } else { "" },
                if nsfs { ", nsfs" } else { "" }
            ));
            if kind == "dir" && !mounted {
                todo.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The daemon's log lines that mention `id`, the last `n` of them.
fn log_of(log: &str, id: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(id)).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_kills_leave_no_stuck_pod_and_no_leak() {
    require_registry();
    let seed = env_u64("CHAOS_SEED").unwrap_or(DEFAULT_SEED);
    let chaos_time = env_u64("CHAOS_SECS").map_or(CHAOS_TIME, Duration::from_secs);
    let began = Instant::now();
    let d = Daemon::start_with_network("[registry]\ninsecure = [\"127.0.0.1:5000\"]\n", &[]);
    pull(&d, BUSYBOX).await;
    let sock = d.socket();
    let tally: Shared = Arc::default();

    // The chaos: clients and the killer until `end`.
    let end = Instant::now() + chaos_time;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let c = Client {
                n,
                sock: sock.clone(),
                rng: Rng(seed.wrapping_mul(31).wrapping_add(n)),
                tally: tally.clone(),
                rt: None,
                kept: VecDeque::new(),
            };
            tokio::spawn(c.run(end, chaos_time.as_secs() * MAX_CYCLES_PER_SEC))
        })
        .collect();
    let t = tally.clone();
    let killer = tokio::task::spawn_blocking(move || chaos(d, end, seed, t));
    let (mut d, kills) = killer.await.expect("the killer panicked");
    for c in clients {
        tokio::time::timeout(CALL_TIMEOUT * 4, c)
            .await
            .expect("a client did not finish its cycle")
            .expect("a client panicked");
    }
    let chaos_took = began.elapsed();

    // One last crash, then the daemon's own view after recovery.
    d.stop(Signal::SIGKILL);
    let mut kills = kills;
    kills.daemon += 1;
    respawn(&mut d, &mut kills);
    let mut rt = d.runtime().await;
    let pods = list_pods(&mut rt)
        .await
        .expect("ListPodSandbox after restart");
    let ctrs = list_containers(&mut rt)
        .await
        .expect("ListContainers after restart");
    let pods_at_restart = histogram(pods.iter().map(|p| pod_state_name(p.state)));
    let ctrs_at_restart = histogram(ctrs.iter().map(|c| state_name(c.state)));

    // Every container listed RUNNING answers ExecSync.
    let mut exec_failures = Vec::new();
    let running: Vec<&cri::Container> = ctrs
        .iter()
        .filter(|c| c.state == cri::ContainerState::ContainerRunning as i32)
        .collect();
    for c in &running {
        let r = timed(rt.exec_sync(cri::ExecSyncRequest {
            container_id: c.id.clone(),
            cmd: vec!["true".into()],
            timeout: 10,
        }))
        .await;
        match r {
            Ok(r) if r.exit_code == 0 => {}
            Ok(r) => exec_failures.push(format!(
                "{}: exit {} {}",
                c.id,
                r.exit_code,
                String::from_utf8_lossy(&r.stderr)
            )),
            Err(f) => exec_failures.push(format!("{}: {f}", c.id)),
        }
    }

    // Remove everything, as kubelet would, retrying until the deadline.
    let mut last_error: BTreeMap<String, String> = BTreeMap::new();
    let mut final_ops: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    let mut seen_pods: BTreeSet<String> = pods.iter().map(|p| p.id.clone()).collect();
    let mut seen_ctrs: BTreeSet<String> = ctrs.iter().map(|c| c.id.clone()).collect();
    let deadline = Instant::now() + CLEANUP_TIME;
    let mut rounds = 0;
    let (left_pods, left_ctrs) = loop {
        let (Ok(pods), Ok(ctrs)) = (list_pods(&mut rt).await, list_containers(&mut rt).await)
        else {
            assert!(
                Instant::now() < deadline,
                "the daemon stopped answering lists"
            );
            rt = d.runtime().await;
            continue;
        };
        seen_pods.extend(pods.iter().map(|p| p.id.clone()));
        seen_ctrs.extend(ctrs.iter().map(|c| c.id.clone()));
        if (pods.is_empty() && ctrs.is_empty()) || Instant::now() >= deadline {
            break (pods, ctrs);
        }
        rounds += 1;
        let mut note = |op: &'static str, id: &str, r: Result<(), Failure>| {
            let e = final_ops.entry(op).or_default();
            e.0 += 1;
            match r {
                Ok(()) => e.1 += 1,
                Err(f) => {
                    last_error.insert(id.to_string(), format!("{op}: {f}"));
                }
            }
        };
        for c in &ctrs {
            let id = c.id.clone();
            if c.state != cri::ContainerState::ContainerExited as i32 {
                let r = timed(rt.stop_container(cri::StopContainerRequest {
                    container_id: id.clone(),
                    timeout: 0,
                }))
                .await;
                note("StopContainer", &id, r.map(drop));
            }
            let r = timed(rt.remove_container(cri::RemoveContainerRequest {
                container_id: id.clone(),
            }))
            .await;
            note("RemoveContainer", &id, r.map(drop));
        }
        for p in &pods {
            let id = p.id.clone();
            let r = timed(rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            }))
            .await;
            note("StopPodSandbox", &id, r.map(drop));
            let r = timed(rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: id.clone(),
            }))
            .await;
            note("RemovePodSandbox", &id, r.map(drop));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    // What the stuck ones look like.
    let log = d.log();
    let mut stuck = Vec::new();
    for p in &left_pods {
        let st = timed(rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: p.id.clone(),
            verbose: true,
        }))
        .await;
        stuck.push(format!(
            "pod {} ({}) state {}; last error: {}\n  left in its directory: {:?}\n  \
             status: {:?}\n  log:\n{}",
            p.id,
            p.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or(""),
            pod_state_name(p.state),
            last_error.get(&p.id).map(String::as_str).unwrap_or("-"),
            tree(&d.state_dir().join("pods").join(&p.id)),
            st.map(|s| s.info),
            log_of(&log, &p.id, 40)
        ));
    }
    for c in &left_ctrs {
        let st = timed(rt.container_status(cri::ContainerStatusRequest {
            container_id: c.id.clone(),
            verbose: true,
        }))
        .await;
        stuck.push(format!(
            "container {} of pod {} state {}; last error: {}\n  status: {:?}\n  log:\n{}",
            c.id,
            c.pod_sandbox_id,
            state_name(c.state),
            last_error.get(&c.id).map(String::as_str).unwrap_or("-"),
            st.map(|s| s.status.map(|s| (s.reason, s.message, s.exit_code))),
            log_of(&log, &c.id, 40)
        ));
    }

    // The census, once what is still going away has gone.
    let (heard_pods, heard_ctrs, removed_by_clients, kept) = {
        let t = lock(&tally);
        (
            t.pods.clone(),
            t.containers.clone(),
            t.pods_removed,
            t.pods_kept,
        )
    };
    let logged_pods = ids_in_log(&log, "pod=");
    let mut ctr_ids = heard_ctrs.clone();
    ctr_ids.extend(seen_ctrs.iter().cloned());
    ctr_ids.extend(ids_in_log(&log, "container="));
    let mut pod_ids = heard_pods.clone();
    pod_ids.extend(seen_pods.iter().cloned());
    pod_ids.extend(logged_pods.iter().cloned());
    let daemon_pid = d.pid();
    let settle = Instant::now() + SETTLE_TIME;
    let census = loop {
        let c = Census::take(&d, daemon_pid, &pod_ids);
        if c.leaks() == 0 || Instant::now() >= settle || !left_pods.is_empty() {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let st = d.stop(Signal::SIGTERM);
    if let Ok(keep) = std::env::var("CHAOS_LOG") {
        std::fs::write(&keep, d.log()).expect("keep the daemon log");
    }
    let ready_pods = log
        .lines()
        .filter(|l| l.contains("pod sandbox ready"))
        .count();

    // The story of the run.
    let tally = lock(&tally);
    println!(
        "chaos: seed {seed}, {chaos_took:.0?} of chaos, {:.0?} in all",
        began.elapsed()
    );
    println!(
        "chaos: kills: daemon {} | shims {} ({} while serving, {} while down; {} infra, {} container)",
        kills.daemon,
        kills.shims_up + kills.shims_down,
        kills.shims_up,
        kills.shims_down,
        kills.infra_shims,
        kills.shims_up + kills.shims_down - kills.infra_shims
    );
    for (kind, op) in &tally.ops {
        println!(
            "chaos: op {kind:<17} attempted {:>4} ok {:>4} errors {:?}",
            op.attempted, op.ok, op.errors
        );
        for (code, msgs) in &op.samples {
            for m in msgs {
                println!("chaos:     {code}: {m}");
            }
        }
    }
    println!(
        "chaos: pods: {} heard created by clients, {} ready in the log, {} known in all; \
         {} removed by clients, {} left alive on purpose; containers: {} heard created, {} known",
        heard_pods.len(),
        ready_pods,
        pod_ids.len(),
        removed_by_clients,
        kept,
        heard_ctrs.len(),
        ctr_ids.len(),
    );
    println!(
        "chaos: after the last restart: pods {pods_at_restart:?}, containers {ctrs_at_restart:?}; \
         {} RUNNING, {} failed ExecSync",
        running.len(),
        exec_failures.len()
    );
    println!(
        "chaos: removal: {rounds} rounds, calls (attempted, ok) {final_ops:?}; stuck: {} pods, {} containers",
        left_pods.len(),
        left_ctrs.len()
    );
    println!(
        "chaos: leaks: {}",
        census
            .all()
            .iter()
            .map(|(k, v)| format!("{k} {}", v.len()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (k, v) in census.all() {
        for item in v {
            println!("chaos:   leaked {k}: {item}");
        }
    }
    let final_log = d.log();
    for socket in &census.sockets {
        let owner = pod_ids
            .iter()
            .chain(ctr_ids.iter())
            .find(|id| d.dir.path().join(socket) == d.shim_socket(id));
        match owner {
            Some(id) => println!(
                "chaos:   socket {socket} is {id}'s shim's; its log:\n{}",
                log_of(&final_log, id, 40)
            ),
            None => println!("chaos:   socket {socket} is no known task's"),
        }
    }
    for s in &stuck {
        println!("chaos: STUCK {s}");
    }
    for e in &exec_failures {
        println!("chaos: EXEC FAILED {e}");
    }
    for e in &kills.died_by_itself {
        println!("chaos: DAEMON {e}");
    }
    for e in &kills.held_after_kill {
        println!("chaos: SOCKET HELD {e}");
    }
    println!(
        "chaos: SUMMARY seed={seed} daemon_kills={} shim_kills={} ops={} ops_ok={} pods={} \
         stuck={} exec_failed={} leaks={}",
        kills.daemon,
        kills.shims_up + kills.shims_down,
        tally.ops.values().map(|o| o.attempted).sum::<u64>(),
        tally.ops.values().map(|o| o.ok).sum::<u64>(),
        pod_ids.len(),
        stuck.len(),
        exec_failures.len(),
        census.leaks()
    );

    assert!(st.success(), "daemon exit status {st} on SIGTERM");
    assert!(
        kills.died_by_itself.is_empty(),
        "the daemon died or failed to restart by itself: {:?}",
        kills.died_by_itself
    );
    assert!(stuck.is_empty(), "{} stuck (see above)", stuck.len());
    assert!(
        exec_failures.is_empty(),
        "RUNNING containers failed ExecSync: {exec_failures:?}"
    );
    assert_eq!(census.leaks(), 0, "leaks: {census:#?}");
}
