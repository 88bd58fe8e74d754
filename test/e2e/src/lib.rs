//! End-to-end tests that drive a real `carapace` daemon over its CRI socket
//! as kubelet does. This crate holds their shared helpers: a daemon in
//! temporary directories with its own socket, and generated CRI clients.

pub mod spdy_client;
pub mod workload;
pub mod ws_client;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

/// How long the daemon may take to serve before a test fails: a hang
/// guard, not a performance bound.
pub const HANG_GUARD: Duration = Duration::from_secs(60);

/// Retries `attempt` every 100 ms until it returns Ok: for what takes a
/// moment to appear (a server in a container starting, log lines, a
/// counter moving). Fails with the last attempt's story after the hang
/// guard.
pub async fn eventually<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        match attempt().await {
            Ok(v) => return v,
            Err(last) => assert!(
                Instant::now() < deadline,
                "{what}: not there within the hang guard; last: {last}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The daemon binary from the same build (cargo builds every workspace
/// binary for `cargo test --workspace`).
pub fn daemon_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir of the test binary");
    let p = dir.join("carapace");
    assert!(
        p.is_file(),
        "{} missing: run `cargo build -p carapace` (hack/test.sh does)",
        p.display()
    );
    p
}

/// A gRPC channel to the CRI server on the unix socket `sock` (tonic
/// speaks HTTP/2 over it; the URI is a placeholder).
pub async fn connect(sock: &Path) -> Result<Channel, tonic::transport::Error> {
    let sock = sock.to_path_buf();
    Endpoint::from_static("http://[::]:50051")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let sock = sock.clone();
            async move {
                tokio::net::UnixStream::connect(sock)
                    .await
                    .map(TokioIo::new)
            }
        }))
        .await
}

/// A running daemon with private root, state, socket and CNI conf dir;
/// killed (SIGKILL) and cleaned up on drop.
pub struct Daemon {
    /// Root of every directory the daemon uses.
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    bridge: Option<String>,
    /// Extra environment for the daemon process (set before `spawn`).
    pub env: Vec<(String, String)>,
}

impl Daemon {
    /// Writes a config with `extra` TOML appended and starts the daemon.
    pub fn start(extra: &str) -> Daemon {
        let mut d = Daemon::configure(extra);
        d.spawn();
        d
    }

    /// Writes a config with `extra` TOML appended; `spawn` starts it.
    pub fn configure(extra: &str) -> Daemon {
        assert!(
            nix::unistd::geteuid().is_root(),
            "end-to-end tests need root (CI runs them as root)"
        );
        let dir = tempfile::Builder::new()
            .prefix("cre2e-")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir_all(dir.path().join("cni")).expect("mkdir cni");
        std::fs::create_dir_all(dir.path().join("cnibin")).expect("mkdir cnibin");
        let config = format!(
            "socket = \"{0}/c.sock\"\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n{extra}\n\
             [runtime_handlers.carapace]\npath = \"carapace-runtime\"\nroot = \"{0}/runtime\"\n\
             [cni]\nconf_dir = \"{0}/cni\"\nbin_dirs = [\"{0}/cnibin\", \"/usr/lib/cni\"]\n",
            dir.path().display()
        );
        std::fs::write(dir.path().join("config.toml"), config).expect("write config");
        Daemon {
            dir,
            child: None,
            bridge: None,
            env: Vec::new(),
        }
    }

    /// The daemon's config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    /// The CRI socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("c.sock")
    }

    /// The CNI conf dir the daemon reads.
    pub fn cni_dir(&self) -> PathBuf {
        self.dir.path().join("cni")
    }

    /// Starts the daemon process and waits for its socket to answer.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("daemon log");
        let child = Command::new(daemon_bin())
            .arg("--config")
            .arg(self.config_path())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn carapace");
        self.child = Some(child);
        let deadline = Instant::now() + HANG_GUARD;
        while std::os::unix::net::UnixStream::connect(self.socket()).is_err() {
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("carapace exited with {st} before serving:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "carapace never served:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` and waits for the daemon to exit; returns its status.
    pub fn stop(&mut self, signal: nix::sys::signal::Signal) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal the daemon");
        child.wait().expect("wait for the daemon")
    }

    /// The file the daemon's stdout and stderr go to.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// A gRPC channel over the daemon's unix socket.
    pub async fn channel(&self) -> Channel {
        connect(&self.socket())
            .await
            .expect("connect to the CRI socket")
    }

    /// A RuntimeService client.
    pub async fn runtime(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel().await)
    }

    /// An ImageService client.
    pub async fn images(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel().await)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Whatever the test did, leave no pod behind: remove them through
        // the daemon (a thread of its own: this may run inside a runtime),
        // then sweep what a dead daemon could not.
        if self.child.is_some() {
            let sock = self.socket();
            let _ = std::thread::spawn(move || remove_all_pods(&sock)).join();
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        sweep(self.dir.path());
        if let Some(b) = &self.bridge {
            let _ = Command::new("ip").args(["link", "del", b]).output();
        }
    }
}

/// Removes every pod of the daemon at `sock` (best effort, bounded).
fn remove_all_pods(sock: &Path) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let sock = sock.to_path_buf();
    rt.block_on(async move {
        let fut = async {
            let ch = connect(&sock).await.ok()?;
            let mut rt = RuntimeServiceClient::new(ch);
            let pods = rt
                .list_pod_sandbox(cri::ListPodSandboxRequest::default())
                .await
                .ok()?
                .into_inner()
                .items;
            for p in pods {
                let _ = rt
                    .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                        pod_sandbox_id: p.id,
                    })
                    .await;
            }
            Some(())
        };
        let _ = tokio::time::timeout(HANG_GUARD, fut).await;
    });
}

/// Kills processes rooted or working under `dir` (shims, infra
/// processes: all started by the test's daemon) and unmounts everything
/// mounted below it.
fn sweep(dir: &Path) {
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let under = |link: &str| {
            std::fs::read_link(entry.path().join(link))
                .map(|p| p.starts_with(dir))
                .unwrap_or(false)
        };
        if under("cwd") || under("root") {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    points.reverse();
    for p in points {
        let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
    }
    // Pod cgroups the daemon made (no cgroup_parent given): deepest first.
    for pod in std::fs::read_dir(dir.join("state/pods"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let id = pod.file_name().to_string_lossy().into_owned();
        for h in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let pod_cg = h.path().join("carapace").join(format!("pod-{id}"));
            let _ = std::fs::remove_dir(pod_cg.join(&id));
            let _ = std::fs::remove_dir(&pod_cg);
        }
    }
}

/// Distinguishes the networks of the daemons one test binary starts.
static NETWORK_SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Daemon {
    /// A daemon whose CNI conf dir holds a bridge + host-local + portmap
    /// network of its own (a private bridge and /24, removed on drop),
    /// with `extra_plugins` (JSON objects) appended to the chain.
    pub fn start_with_network(extra: &str, extra_plugins: &[serde_json::Value]) -> Daemon {
        let seq = NETWORK_SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let pid = std::process::id();
        let bridge = format!("cb{}x{seq}", pid % 100000);
        let octet = (pid.wrapping_mul(7).wrapping_add(seq)) % 250 + 1;
        let mut d = Daemon::start(extra);
        let mut plugins = vec![
            serde_json::json!({
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": format!("10.97.{octet}.0/24")}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": d.dir.path().join("ipam"),
                }
            }),
            serde_json::json!({"type": "portmap", "capabilities": {"portMappings": true}}),
        ];
        plugins.extend(extra_plugins.iter().cloned());
        let conf = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": format!("e2e-{seq}"),
            "plugins": plugins,
        });
        std::fs::write(
            d.cni_dir().join("10-e2e.conflist"),
            serde_json::to_vec_pretty(&conf).expect("json"),
        )
        .expect("write conflist");
        d.bridge = Some(bridge);
        d
    }

    /// The gateway address of the network of [`Daemon::start_with_network`].
    pub fn gateway(&self) -> String {
        let conf: serde_json::Value = serde_json::from_slice(
            &std::fs::read(self.cni_dir().join("10-e2e.conflist")).expect("read conflist"),
        )
        .expect("conflist json");
        let subnet = conf["plugins"][0]["ipam"]["ranges"][0][0]["subnet"]
            .as_str()
            .expect("subnet")
            .to_string();
        subnet.replace(".0/24", ".1")
    }

    /// The directory of extra CNI plugins (first in bin_dirs).
    pub fn cni_bin_dir(&self) -> PathBuf {
        self.dir.path().join("cnibin")
    }

    /// The daemon's state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Where carapace-shim serves task `id` of this daemon: `<state>/s/`
    /// and the shim crate's SHA-256 of `<CRI socket>/k8s.io/<id>`, worked
    /// out here on its own rather than by the daemon's code under test.
    pub fn shim_socket(&self, id: &str) -> PathBuf {
        use sha2::{Digest, Sha256};
        let key = self.socket().join("k8s.io").join(id);
        let name =
            carapace_cri::image::content::hex(&Sha256::digest(key.to_string_lossy().as_bytes()));
        self.state_dir().join("s").join(name)
    }

    /// The daemon's PID.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).expect("running")
    }
}

/// A pod config as kubelet sends it: metadata, a log directory, labels.
pub fn pod_config(name: &str) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.to_string(),
            uid: format!("uid-{name}"),
            namespace: "e2e".into(),
            attempt: 0,
        }),
        hostname: name.to_string(),
        labels: [("app".to_string(), name.to_string())].into(),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption::default()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The verbose `info` document of a pod's status.
pub async fn pod_info(
    rt: &mut RuntimeServiceClient<Channel>,
    id: &str,
) -> (cri::PodSandboxStatus, serde_json::Value) {
    let r = rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.to_string(),
            verbose: true,
        })
        .await
        .expect("pod sandbox status")
        .into_inner();
    let info = serde_json::from_str(r.info.get("info").expect("info key")).expect("info json");
    (r.status.expect("status"), info)
}

/// Runs `f` on a thread inside the network namespace at `netns`.
pub fn in_netns<T: Send + 'static>(
    netns: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let ns = std::fs::File::open(netns).expect("open netns");
    std::thread::spawn(move || {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
}

/// The inode of a namespace file (its identity).
pub fn ns_inode(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).expect("stat namespace").ino()
}

/// Mount points under `dir` now.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(dir))
        .map(str::to_string)
        .collect()
}

/// `q`-quantile (nearest rank) of sorted milliseconds, for the benches.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() as f64) * q).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1]
}

/// Prints a bench measure as the bench scripts read it:
/// `<name> <median ms> <p95 ms>`.
pub fn report(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    println!(
        "{name} {:.2} {:.2}",
        quantile(&ms, 0.5),
        quantile(&ms, 0.95)
    );
}

/// The test registries' state directory (hack/registry.sh's default).
pub const REGISTRY_DIR: &str = "/var/tmp/carapace-registry";

/// Fails with instructions unless both test registries answer.
pub fn require_registry() {
    for port in [5000, 5001] {
        let ok = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        assert!(
            ok,
            "the test registry on 127.0.0.1:{port} is not up: run `sudo hack/registry.sh start` \
             (hack/test.sh does)"
        );
    }
}

/// The digest hack/registry.sh recorded for `name` (busybox, layered, …).
pub fn registry_digest(name: &str) -> String {
    let text = std::fs::read_to_string(Path::new(REGISTRY_DIR).join("digests"))
        .expect("registry digests file: run `sudo hack/registry.sh start`");
    text.lines()
        .find_map(|l| {
            let (n, d) = l.split_once(' ')?;
            (n == name).then(|| d.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no digest for {name} in the registry digests file"))
}

/// A daemon on the test network whose extra runtime handler `name` runs the
/// shell script `body` (written executable into `tools`, with its state
/// under `tools/state`), for tests that need a runtime which misbehaves or
/// lacks a feature. The insecure test registry is configured.
pub fn start_with_script_handler(tools: &Path, name: &str, body: &str) -> Daemon {
    use std::os::unix::fs::PermissionsExt;
    let runtime = tools.join(format!("{name}-runtime"));
    std::fs::write(&runtime, body).expect("write runtime script");
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o755))
        .expect("chmod runtime script");
    Daemon::start_with_network(
        &format!(
            "[registry]\ninsecure = [\"127.0.0.1:5000\"]\n\
             [runtime_handlers.{name}]\npath = \"{}\"\nroot = \"{}\"\n",
            runtime.display(),
            tools.join("state").display()
        ),
        &[],
    )
}
