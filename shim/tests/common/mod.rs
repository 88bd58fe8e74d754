//! Drives a real `carapace-shim` the way the daemon (or containerd) does:
//! `start` in the bundle with TTRPC_ADDRESS pointing at an events server we
//! run, then the Task API over ttrpc, with `carapace-runtime` as the OCI
//! runtime and a busybox rootfs. Needs root; fails loudly without it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use containerd_shim_protos::api;
use containerd_shim_protos::events::task::TaskExit;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::shim::oci::Options;
use containerd_shim_protos::shim_async::{create_events, Client, Events, TaskClient};
use containerd_shim_protos::ttrpc;
use containerd_shim_protos::ttrpc::r#async::TtrpcContext;
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// Hang guard for waits on the shim: not a performance bound.
pub const HANG_GUARD: Duration = Duration::from_secs(60);

/// The namespace events are published under.
pub const NAMESPACE: &str = "carapace-test";

/// The shim binary under test: the one cargo built with the tests, or the
/// one `CARAPACE_TEST_SHIM` names, so hack/test.sh can run these tests again
/// against the shim as shipped (hack/build-shim.sh: static musl, other
/// profile), which is a different executable from the one cargo tests link.
pub fn shim_bin() -> PathBuf {
    match std::env::var_os("CARAPACE_TEST_SHIM") {
        Some(p) => {
            let p = PathBuf::from(p);
            assert!(
                p.is_file(),
                "CARAPACE_TEST_SHIM={} is not a file",
                p.display()
            );
            p
        }
        None => PathBuf::from(env!("CARGO_BIN_EXE_carapace-shim")),
    }
}

/// carapace-runtime from the same build (cargo builds every workspace
/// binary for `cargo test --workspace`; build it first otherwise).
pub fn runtime_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir of the test binary");
    let p = dir.join("carapace-runtime");
    assert!(
        p.is_file(),
        "{} missing: run `cargo build -p carapace-runtime` (hack/test.sh does)",
        p.display()
    );
    p
}

/// The busybox rootfs hack/test.sh builds (CARAPACE_TEST_ROOTFS).
pub fn rootfs() -> PathBuf {
    let p = PathBuf::from(
        std::env::var("CARAPACE_TEST_ROOTFS")
            .expect("CARAPACE_TEST_ROOTFS must name a busybox rootfs (hack/test.sh sets it)"),
    );
    assert!(
        p.join("bin/busybox").exists(),
        "{} has no bin/busybox: run hack/build-rootfs.sh",
        p.display()
    );
    p
}

/// Every event the shim published, by topic.
#[derive(Clone)]
struct Collector {
    tx: mpsc::UnboundedSender<(String, Any)>,
}

#[async_trait]
impl Events for Collector {
    async fn forward(&self, _ctx: &TtrpcContext, req: ForwardRequest) -> ttrpc::Result<api::Empty> {
        let env = req.envelope.unwrap_or_default();
        let _ = self
            .tx
            .send((env.topic.clone(), env.event.unwrap_or_default()));
        Ok(api::Empty::new())
    }
}

/// One test's bundle, events server and shim.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub id: String,
    pub config: Value,
    pub events: mpsc::UnboundedReceiver<(String, Any)>,
    pub address: String,
    client: Option<TaskClient>,
    raw: Option<Client>,
    _server: ttrpc::r#async::Server,
    shim_pid: Option<i32>,
}

impl Harness {
    /// A bundle running `args` in the busybox rootfs (new pid, mount, ipc,
    /// uts, net namespaces), an events server, and a started shim.
    pub async fn new(name: &str, args: &[&str]) -> Harness {
        assert!(
            nix::unistd::geteuid().is_root(),
            "shim integration tests need root (CI runs them as root)"
        );
        let dir = tempfile::Builder::new()
            .prefix("cs-")
            .tempdir()
            .expect("tempdir");
        let out = Command::new(runtime_bin())
            .args(["spec", "--bundle"])
            .arg(dir.path())
            .output()
            .expect("runtime spec");
        assert!(out.status.success(), "spec: {:?}", out);
        let mut config: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).expect("read"))
                .expect("parse config");
        config["root"] = json!({"path": rootfs(), "readonly": true});
        config["process"]["terminal"] = json!(false);
        config["process"]["args"] = json!(args);
        config["hostname"] = json!(name);
        let id = format!("{name}-{}", std::process::id());
        // A cgroup of its own, with no parent shared with another test: a
        // test removing a shared parent once empty raced another test's
        // runtime between its mkdir of the parent and of the child.
        config["linux"]["cgroupsPath"] = json!(format!("/carapace-shimtest-{id}"));

        let (tx, events) = mpsc::unbounded_channel();
        let ev_sock = dir.path().join("ev.sock");
        let mut server = ttrpc::r#async::Server::new()
            .bind(&format!("unix://{}", ev_sock.display()))
            .expect("bind events")
            .register_service(create_events(Arc::new(Collector { tx })));
        server.start().await.expect("start events server");

        let mut h = Harness {
            dir,
            id,
            config,
            events,
            address: String::new(),
            client: None,
            raw: None,
            _server: server,
            shim_pid: None,
        };
        h.write_config();
        h.start_shim().await;
        h
    }

    /// The bundle directory.
    pub fn bundle(&self) -> &Path {
        self.dir.path()
    }

    /// Writes config.json from `self.config`.
    pub fn write_config(&self) {
        std::fs::write(
            self.bundle().join("config.json"),
            serde_json::to_vec_pretty(&self.config).expect("json"),
        )
        .expect("write config");
    }

    /// Runs `carapace-shim ... start` and connects to the address it prints.
    async fn start_shim(&mut self) {
        let out = Command::new(shim_bin())
            .args(["-namespace", NAMESPACE, "-id", &self.id])
            .args(["-address", "/run/carapace-test-none.sock"])
            .args(["-publish-binary", "/bin/false", "start"])
            .current_dir(self.bundle())
            .env(
                "TTRPC_ADDRESS",
                format!("unix://{}", self.bundle().join("ev.sock").display()),
            )
            .env("CARAPACE_SHIM_SOCKET_DIR", self.bundle())
            .stdin(Stdio::null())
            .output()
            .expect("run shim start");
        assert!(
            out.status.success(),
            "shim start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let address = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["address"].as_str().map(str::to_string))
            .unwrap_or(text);
        assert!(address.starts_with("unix://"), "address {address:?}");
        self.address = address;
        self.reconnect().await;
        let r = self
            .client()
            .connect(ctx(), &api::ConnectRequest::new())
            .await
            .expect("connect");
        self.shim_pid = Some(r.shim_pid as i32);
    }

    /// A fresh ttrpc connection, as a restarted daemon makes.
    pub async fn reconnect(&mut self) {
        let c = Client::connect(&self.address)
            .await
            .expect("connect to shim");
        self.client = Some(TaskClient::new(c.clone()));
        self.raw = Some(c);
    }

    /// The Task API client.
    pub fn client(&self) -> &TaskClient {
        self.client.as_ref().expect("connected to the shim")
    }

    /// A client of the shim's own Io service.
    pub fn io_client(&self) -> carapace_shim::proto::io_ttrpc::IoClient {
        carapace_shim::proto::io_ttrpc::IoClient::new(
            self.raw.clone().expect("connected to the shim"),
        )
    }

    /// The shim's PID.
    pub fn shim_pid(&self) -> i32 {
        self.shim_pid.expect("shim started")
    }

    /// Runtime options naming our carapace-runtime and a private root.
    pub fn options(&self) -> Any {
        self.options_for(&runtime_bin())
    }

    /// Runtime options naming `binary` and a private root.
    pub fn options_for(&self, binary: &Path) -> Any {
        let o = Options {
            binary_name: binary.to_string_lossy().into_owned(),
            root: self.bundle().join("state").to_string_lossy().into_owned(),
            ..Default::default()
        };
        let mut any = Any::new();
        any.type_url = "containerd.runc.v1.Options".into();
        any.value = o.write_to_bytes().expect("encode options");
        any
    }

    /// CreateTask with the given stdio.
    pub async fn create(
        &self,
        stdout: &str,
        stderr: &str,
        terminal: bool,
    ) -> ttrpc::Result<api::CreateTaskResponse> {
        self.create_with_stdin("", stdout, stderr, terminal).await
    }

    /// CreateTask with the given stdio, stdin included.
    pub async fn create_with_stdin(
        &self,
        stdin: &str,
        stdout: &str,
        stderr: &str,
        terminal: bool,
    ) -> ttrpc::Result<api::CreateTaskResponse> {
        let req = api::CreateTaskRequest {
            id: self.id.clone(),
            bundle: self.bundle().to_string_lossy().into_owned(),
            stdin: stdin.into(),
            stdout: stdout.into(),
            stderr: stderr.into(),
            terminal,
            options: Some(self.options()).into(),
            ..Default::default()
        };
        self.client().create(ctx(), &req).await
    }

    /// Start (exec_id "" for the init).
    pub async fn start(&self, exec_id: &str) -> ttrpc::Result<api::StartResponse> {
        let req = api::StartRequest {
            id: self.id.clone(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        self.client().start(ctx(), &req).await
    }

    /// Wait, bounded by the hang guard.
    pub async fn wait(&self, exec_id: &str) -> api::WaitResponse {
        let req = api::WaitRequest {
            id: self.id.clone(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        tokio::time::timeout(HANG_GUARD, self.client().wait(ctx(), &req))
            .await
            .expect("wait hung")
            .expect("wait")
    }

    /// State of a process.
    pub async fn state(&self, exec_id: &str) -> ttrpc::Result<api::StateResponse> {
        let req = api::StateRequest {
            id: self.id.clone(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        self.client().state(ctx(), &req).await
    }

    /// Kill a process.
    pub async fn kill(&self, exec_id: &str, signal: u32) -> ttrpc::Result<api::Empty> {
        let req = api::KillRequest {
            id: self.id.clone(),
            exec_id: exec_id.into(),
            signal,
            ..Default::default()
        };
        self.client().kill(ctx(), &req).await
    }

    /// Delete a process.
    pub async fn delete(&self, exec_id: &str) -> ttrpc::Result<api::DeleteResponse> {
        let req = api::DeleteRequest {
            id: self.id.clone(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        self.client().delete(ctx(), &req).await
    }

    /// Exec a process with `args`.
    pub async fn exec(
        &self,
        exec_id: &str,
        args: &[&str],
        stdout: &str,
        terminal: bool,
    ) -> ttrpc::Result<api::Empty> {
        let mut process = self.config["process"].clone();
        process["args"] = json!(args);
        process["terminal"] = json!(terminal);
        let mut spec = Any::new();
        spec.type_url = "types.containerd.io/opencontainers/runtime-spec/1/Process".into();
        spec.value = serde_json::to_vec(&process).expect("process json");
        let req = api::ExecProcessRequest {
            id: self.id.clone(),
            exec_id: exec_id.into(),
            stdout: stdout.into(),
            terminal,
            spec: Some(spec).into(),
            ..Default::default()
        };
        self.client().exec(ctx(), &req).await
    }

    /// Waits for the next event on `topic`, skipping others.
    pub async fn event(&mut self, topic: &str) -> Any {
        let deadline = tokio::time::Instant::now() + HANG_GUARD;
        loop {
            let next = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("no {topic} event"))
                .expect("events channel open");
            if next.0 == topic {
                return next.1;
            }
        }
    }

    /// The TaskExit event's payload.
    pub async fn exit_event(&mut self) -> TaskExit {
        let any = self.event("/tasks/exit").await;
        // The name containerd decodes the payload by.
        assert_eq!(any.type_url, "containerd.events.TaskExit");
        TaskExit::parse_from_bytes(&any.value).expect("decode TaskExit")
    }

    /// Reads a log file.
    pub fn read(&self, name: &str) -> String {
        String::from_utf8_lossy(&std::fs::read(self.bundle().join(name)).unwrap_or_default())
            .into_owned()
    }

    /// A crilog:// URI for a file in the bundle.
    pub fn crilog(&self, name: &str) -> String {
        format!("crilog://{}", self.bundle().join(name).display())
    }

    /// Stats of the container.
    pub async fn stats(&self) -> ttrpc::Result<api::StatsResponse> {
        let req = api::StatsRequest {
            id: self.id.clone(),
            ..Default::default()
        };
        self.client().stats(ctx(), &req).await
    }

    /// Shutdown; the shim exits when it holds no container.
    pub async fn shutdown(&self) {
        let req = api::ShutdownRequest {
            id: self.id.clone(),
            ..Default::default()
        };
        let _ = self.client().shutdown(ctx(), &req).await;
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        // Whatever the test did, leave no container, cgroup or shim behind.
        let state = self.bundle().join("state");
        let _ = Command::new(runtime_bin())
            .arg("--root")
            .arg(&state)
            .args(["delete", "--force", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // The runtime removes the container's cgroup on delete; a test that
        // never got that far leaves it to this.
        let own = format!("carapace-shimtest-{}", self.id);
        for entry in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_dir(entry.path().join(&own));
        }
        let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(&own));
        if let Some(pid) = self.shim_pid {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Whether `pid` is a live process (not gone, not a zombie).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

/// Waits (bounded by the hang guard) until `pid` is no longer alive.
pub async fn wait_gone(pid: i32, what: &str) {
    let deadline = std::time::Instant::now() + HANG_GUARD;
    while alive(pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} ({pid}) still alive"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A ttrpc context without deadline.
pub fn ctx() -> ttrpc::context::Context {
    ttrpc::context::Context::default()
}

/// The records of a CRI log: (stream, tag, content).
pub fn records(log: &str) -> Vec<(String, String, String)> {
    log.lines()
        .map(|l| {
            let mut it = l.splitn(4, ' ');
            let _ts = it.next().unwrap_or_default();
            (
                it.next().unwrap_or_default().to_string(),
                it.next().unwrap_or_default().to_string(),
                it.next().unwrap_or_default().to_string(),
            )
        })
        .collect()
}
