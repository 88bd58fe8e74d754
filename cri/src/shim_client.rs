//! The daemon's side of a container's shim: starting `carapace-shim` for a
//! bundle (the containerd shim v2 `start` protocol), and the Task API calls
//! the daemon makes over its ttrpc socket. The shim outlives the daemon, so
//! a restarted daemon reconnects by address.

use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_shim_protos::api;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::oci::Options;
use containerd_shim_protos::shim_async::Client;
use containerd_shim_protos::ttrpc;

use carapace_shim::proto::io::{AttachInput, AttachOutput, ReopenLogRequest};
use carapace_shim::proto::io_ttrpc::IoClient;

use crate::task_api::TaskApi;

/// The containerd namespace the daemon's shims run in (as containerd's CRI
/// plugin uses).
pub const NAMESPACE: &str = "k8s.io";

/// Hang guard on calls that should answer promptly; not a performance bound.
const CALL_GUARD: Duration = Duration::from_secs(60);

/// Why a shim could not be started or answered badly.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// The shim binary could not be run.
    #[error("run {binary}: {source}")]
    Spawn {
        /// The shim binary.
        binary: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `start` failed; its stderr says why.
    #[error("shim start for {id} failed: {message}")]
    Start {
        /// The container or sandbox ID.
        id: String,
        /// The shim's stderr, or its exit status.
        message: String,
    },
    /// Its socket could not be connected.
    #[error("connect to shim {address}: {source}")]
    Connect {
        /// The shim's address.
        address: String,
        /// ttrpc's error.
        source: ttrpc::Error,
    },
    /// The connection to the shim broke during a call (closed, reset,
    /// end of stream): the shim is gone, and its task with it.
    #[error("shim {method}: connection lost: {source}")]
    Lost {
        /// The Task method.
        method: &'static str,
        /// ttrpc's error.
        source: ttrpc::Error,
    },
    /// The shim did not answer within the call guard: it may still run.
    #[error("shim {method}: no answer within {}s", CALL_GUARD.as_secs())]
    Timeout {
        /// The Task method.
        method: &'static str,
    },
    /// A Task call failed: the shim answered with a status.
    #[error("shim {method}: {message}")]
    Call {
        /// The Task method.
        method: &'static str,
        /// The gRPC status code the shim answered with (or Unknown).
        code: ttrpc::Code,
        /// The shim's message.
        message: String,
    },
}

impl ShimError {
    /// Whether the shim said the task or process does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            ShimError::Call {
                code: ttrpc::Code::NOT_FOUND,
                ..
            }
        )
    }

    /// Whether the shim is gone (its socket refuses or the connection
    /// dropped): its container exited with it. Decided by the kind of
    /// failure, never by the words of a message; a shim that is only slow
    /// ([`ShimError::Timeout`]) is not gone.
    pub fn is_gone(&self) -> bool {
        matches!(self, ShimError::Connect { .. } | ShimError::Lost { .. })
    }
}

/// Classifies a failed call by ttrpc's error kind: a status is the shim's
/// answer; anything else is the connection failing under the call. ttrpc
/// reports a closed connection as `Others` too ("reserve channel capacity
/// failed: channel closed"), and its one `Others` that is not — the
/// request deadline — never fires first: [`guard`] times calls out before
/// it, as a typed [`ShimError::Timeout`].
fn call_err(method: &'static str, e: ttrpc::Error) -> ShimError {
    match e {
        ttrpc::Error::RpcStatus(s) => ShimError::Call {
            method,
            code: s.code(),
            message: s.message,
        },
        _ => ShimError::Lost { method, source: e },
    }
}

/// A Task call bounded by [`CALL_GUARD`]: past it, a typed
/// [`ShimError::Timeout`] (the shim may be alive, only slow).
async fn guard<T>(
    method: &'static str,
    call: impl std::future::Future<Output = Result<T, ttrpc::Error>>,
) -> Result<T, ShimError> {
    guard_for(CALL_GUARD, method, call).await
}

async fn guard_for<T>(
    limit: Duration,
    method: &'static str,
    call: impl std::future::Future<Output = Result<T, ttrpc::Error>>,
) -> Result<T, ShimError> {
    match tokio::time::timeout(limit, call).await {
        Ok(r) => r.map_err(|e| call_err(method, e)),
        Err(_) => Err(ShimError::Timeout { method }),
    }
}

/// Which shim runs a task: the daemon's own `carapace-shim` (the default,
/// and what every record written before shim v2 handlers existed means),
/// or a containerd shim v2 binary of a `runtime_type` handler — one shim
/// per pod, grouped by the spec's sandbox annotations, whose stdio are
/// FIFOs the daemon reads ([`crate::container::fifo_io`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShimKind {
    /// The shim v2 binary; empty for carapace-shim.
    #[serde(default)]
    pub binary: PathBuf,
    /// Whether that shim takes runc's options (`containerd.runc.v1.Options`:
    /// runtime binary, root, cgroup driver). carapace-shim always does.
    #[serde(default)]
    pub runc_options: bool,
}

impl ShimKind {
    /// Whether a third-party shim v2 runs the task.
    pub fn is_v2(&self) -> bool {
        !self.binary.as_os_str().is_empty()
    }

    /// Whether the shim is given runc's options at Create.
    pub fn takes_runc_options(&self) -> bool {
        !self.is_v2() || self.runc_options
    }

    /// Where the runtime keeps its state for the handler's `root`: the
    /// runc shim runs runc with `--root <root>/<namespace>`, carapace-shim
    /// with `root` itself. Teardown's last `runtime delete` looks there.
    pub fn runtime_state_root(&self, root: &Path) -> PathBuf {
        if self.is_v2() && self.runc_options {
            root.join(NAMESPACE)
        } else {
            root.to_path_buf()
        }
    }
}

/// How to start a shim.
#[derive(Clone, Debug)]
pub struct Launch<'a> {
    /// The shim binary: `carapace-shim`, or a handler's shim v2.
    pub binary: &'a Path,
    /// Whether `binary` is a third-party shim v2 (it then logs to a `log`
    /// FIFO in its bundle, which must have a reader before it serves).
    pub v2: bool,
    /// Container or sandbox ID (the shim's `-id`).
    pub id: &'a str,
    /// The bundle directory (`start` runs there).
    pub bundle: &'a Path,
    /// The daemon's CRI socket: mixed into the shim's socket name.
    pub daemon_address: &'a Path,
    /// The daemon's events endpoint (`unix://…`), TTRPC_ADDRESS.
    pub events_address: &'a str,
    /// Where shim sockets live.
    pub socket_dir: &'a Path,
}

/// The address carapace-shim serves task `l.id` on: `<socket_dir>/<hash>`,
/// the shim crate's SHA-256 of `<daemon socket>/<namespace>/<id>`. The
/// daemon can find that socket without the address the shim wrote, which
/// is gone once the task is settled or not there yet when the daemon died
/// mid-launch. None for a handler's shim v2, whose sockets are its own.
pub fn own_socket_address(l: &Launch<'_>) -> Option<String> {
    use sha2::{Digest, Sha256};
    if l.v2 {
        return None;
    }
    let key = l.daemon_address.join(NAMESPACE).join(l.id);
    let hash = crate::image::content::hex(&Sha256::digest(key.as_os_str().as_encoded_bytes()));
    Some(format!(
        "unix://{}/{hash}",
        l.socket_dir.to_string_lossy().trim_end_matches('/')
    ))
}

/// Runs `<shim> … start` in the bundle (carapace-shim, or a handler's
/// shim v2, whose `log` FIFO gets its reader first) and returns the
/// address it answers on. The shim detaches itself; this returns once it
/// listens. A grouped task's `start` answers with its sandbox's shim.
pub async fn launch(l: &Launch<'_>) -> Result<String, ShimError> {
    let log = if l.v2 {
        Some(
            crate::shim_log::open(l.bundle).map_err(|e| ShimError::Start {
                id: l.id.to_string(),
                message: format!("shim log FIFO in {}: {e}", l.bundle.display()),
            })?,
        )
    } else {
        None
    };
    let out = tokio::process::Command::new(l.binary)
        .args(["-namespace", NAMESPACE, "-id", l.id, "-address"])
        .arg(l.daemon_address)
        .args(["-publish-binary", "/bin/false", "start"])
        .current_dir(l.bundle)
        .env("TTRPC_ADDRESS", l.events_address)
        .env("CARAPACE_SHIM_SOCKET_DIR", l.socket_dir)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|source| ShimError::Spawn {
            binary: l.binary.to_path_buf(),
            source,
        })?;
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // containerd 2.x shims print bootstrap parameters as JSON; 1.x shims
    // (and carapace-shim) the bare address.
    let (text, version) = match bootstrap(&printed) {
        Some((address, version)) => (address, version),
        None => (printed, if l.v2 { 2 } else { 3 }),
    };
    if !out.status.success() || !text.starts_with("unix://") {
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(ShimError::Start {
            id: l.id.to_string(),
            message: if err.is_empty() {
                format!("{} (output {text:?})", out.status)
            } else {
                err
            },
        });
    }
    if l.v2 {
        crate::task_api::note(&text, version, l.bundle).map_err(|e| ShimError::Start {
            id: l.id.to_string(),
            message: format!("record the shim's Task API in {}: {e}", l.bundle.display()),
        })?;
    }
    if let Some(rx) = log {
        // A grouped task joins the sandbox's shim, which logs to the
        // sandbox bundle's FIFO: this one then has no writer to wait for.
        if serves_from(&text, l.id, l.bundle).await {
            crate::shim_log::drain(rx, l.id, &text);
        }
    }
    Ok(text)
}

/// Whether the shim at `address` runs in `bundle` (it was started there,
/// so its `log` is that bundle's FIFO) rather than in the sandbox's
/// bundle a grouped task joined.
async fn serves_from(address: &str, id: &str, bundle: &Path) -> bool {
    let Ok(shim) = Shim::connect(address).await else {
        return false;
    };
    let Ok(pid) = shim.pid(id).await else {
        return false;
    };
    std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == bundle)
}

/// The address and Task API version of a shim's JSON bootstrap
/// parameters (`{"version":3,"address":"unix://…","protocol":"ttrpc"}`);
/// None for anything else (a bare address).
fn bootstrap(printed: &str) -> Option<(String, u32)> {
    let v: serde_json::Value = serde_json::from_str(printed).ok()?;
    let address = v["address"].as_str()?.to_string();
    let version = u32::try_from(v["version"].as_u64()?).ok()?;
    let ttrpc = v["protocol"].as_str().is_none_or(|p| p == "ttrpc");
    (ttrpc && (2..=3).contains(&version)).then_some((address, version))
}

/// Which OCI runtime the shim drives, and its state root.
#[derive(Clone, Debug)]
pub struct RuntimeOptions {
    /// runc-compatible binary.
    pub binary: PathBuf,
    /// Its `--root`.
    pub root: PathBuf,
    /// Run it with `--systemd-cgroup` (the daemon's systemd cgroup driver):
    /// the task's cgroup is then a systemd scope.
    pub systemd_cgroup: bool,
    /// CRIU images to restore the task from (CreateContainer from a
    /// checkpoint archive): the shim then runs `runtime restore`.
    pub restore_from: Option<PathBuf>,
    /// Send these as runc's options (false for shims with their own
    /// configuration, such as Kata's or gVisor's).
    pub runc_options: bool,
}

/// A process's stdio as the shim takes it ("" for none).
#[derive(Clone, Debug, Default)]
pub struct Stdio {
    /// stdin source.
    pub stdin: String,
    /// stdout sink (FIFO path, `file://`, `crilog://`).
    pub stdout: String,
    /// stderr sink.
    pub stderr: String,
    /// Whether the process has a terminal.
    pub terminal: bool,
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Exit {
    /// Exit status (128 + signal when killed).
    pub status: u32,
    /// When, in nanoseconds since the epoch.
    pub at_ns: i64,
}

fn exit_of(
    status: u32,
    at: Option<&containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp>,
) -> Exit {
    Exit {
        status,
        at_ns: at
            .map(|t| t.seconds.saturating_mul(1_000_000_000) + i64::from(t.nanos))
            .unwrap_or(0),
    }
}

/// A connection to one shim.
#[derive(Clone)]
pub struct Shim {
    address: String,
    task: TaskApi,
    io: IoClient,
}

impl std::fmt::Debug for Shim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shim")
            .field("address", &self.address)
            .finish()
    }
}

fn ctx() -> ttrpc::context::Context {
    // A backstop for the shim's side: the daemon's own guard fires first.
    ttrpc::context::with_timeout((CALL_GUARD + Duration::from_secs(5)).as_nanos() as i64)
}

impl Shim {
    /// Connects to the shim at `address`.
    pub async fn connect(address: &str) -> Result<Shim, ShimError> {
        let c = Client::connect(address)
            .await
            .map_err(|source| ShimError::Connect {
                address: address.to_string(),
                source,
            })?;
        Ok(Shim {
            address: address.to_string(),
            task: TaskApi::new(c.clone(), address),
            io: IoClient::new(c),
        })
    }

    /// The shim's own PID (the Task API's Connect).
    pub async fn pid(&self, id: &str) -> Result<u32, ShimError> {
        let req = api::ConnectRequest {
            id: id.to_string(),
            ..Default::default()
        };
        guard("Connect", self.task.connect(ctx(), &req))
            .await
            .map(|r| r.shim_pid)
    }

    /// The address connected to.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Creates the bundle's init process (`runtime create`); its PID.
    pub async fn create(
        &self,
        id: &str,
        bundle: &Path,
        stdio: &Stdio,
        runtime: &RuntimeOptions,
    ) -> Result<u32, ShimError> {
        let o = Options {
            binary_name: runtime.binary.to_string_lossy().into_owned(),
            root: runtime.root.to_string_lossy().into_owned(),
            systemd_cgroup: runtime.systemd_cgroup,
            ..Default::default()
        };
        let mut any = Any::new();
        any.type_url = "containerd.runc.v1.Options".into();
        any.value = o.write_to_bytes().map_err(|e| ShimError::Call {
            method: "Create",
            code: ttrpc::Code::INTERNAL,
            message: format!("encode options: {e}"),
        })?;
        let req = api::CreateTaskRequest {
            id: id.to_string(),
            bundle: bundle.to_string_lossy().into_owned(),
            stdin: stdio.stdin.clone(),
            stdout: stdio.stdout.clone(),
            stderr: stdio.stderr.clone(),
            terminal: stdio.terminal,
            options: runtime.runc_options.then_some(any).into(),
            checkpoint: runtime
                .restore_from
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
            ..Default::default()
        };
        let r = guard("Create", self.task.create(ctx(), &req)).await?;
        Ok(r.pid)
    }

    /// Checkpoints the running task with CRIU into `images` (it runs on),
    /// within `limit` (a dump writes the container's memory out).
    pub async fn checkpoint(
        &self,
        id: &str,
        images: &Path,
        limit: Duration,
    ) -> Result<(), ShimError> {
        let req = api::CheckpointTaskRequest {
            id: id.to_string(),
            path: images.to_string_lossy().into_owned(),
            ..Default::default()
        };
        guard_for(limit, "Checkpoint", self.task.checkpoint(ctx(), &req))
            .await
            .map(drop)
    }

    /// Starts a created process (`exec_id` "" for the init); its PID.
    pub async fn start(&self, id: &str, exec_id: &str) -> Result<u32, ShimError> {
        let req = api::StartRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        let r = guard("Start", self.task.start(ctx(), &req)).await?;
        Ok(r.pid)
    }

    /// Registers an extra process in the running container (`runtime exec`
    /// happens at [`Shim::start`]); `process` is the OCI runtime-spec
    /// Process as JSON.
    pub async fn exec(
        &self,
        id: &str,
        exec_id: &str,
        stdio: &Stdio,
        process: Vec<u8>,
    ) -> Result<(), ShimError> {
        let mut any = Any::new();
        any.type_url = "types.containerd.io/opencontainers/runtime-spec/1/Process".into();
        any.value = process;
        let req = api::ExecProcessRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            stdin: stdio.stdin.clone(),
            stdout: stdio.stdout.clone(),
            stderr: stdio.stderr.clone(),
            terminal: stdio.terminal,
            spec: Some(any).into(),
            ..Default::default()
        };
        guard("Exec", self.task.exec(ctx(), &req)).await.map(|_| ())
    }

    /// Sends `signal` to a process (to every process of the container with
    /// `all`).
    pub async fn kill(
        &self,
        id: &str,
        exec_id: &str,
        signal: u32,
        all: bool,
    ) -> Result<(), ShimError> {
        let req = api::KillRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            signal,
            all,
            ..Default::default()
        };
        guard("Kill", self.task.kill(ctx(), &req)).await.map(|_| ())
    }

    /// Waits for a process to exit, however long that takes.
    pub async fn wait(&self, id: &str, exec_id: &str) -> Result<Exit, ShimError> {
        let req = api::WaitRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        let r = self
            .task
            .wait(ttrpc::context::Context::default(), &req)
            .await
            .map_err(|e| call_err("Wait", e))?;
        Ok(exit_of(r.exit_status, r.exited_at.as_ref()))
    }

    /// The state of a process: running (with its PID) or its exit.
    pub async fn state(&self, id: &str, exec_id: &str) -> Result<api::StateResponse, ShimError> {
        let req = api::StateRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        guard("State", self.task.state(ctx(), &req)).await
    }

    /// Deletes a stopped process (`runtime delete` for the init).
    pub async fn delete(&self, id: &str, exec_id: &str) -> Result<Exit, ShimError> {
        let req = api::DeleteRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        let r = guard("Delete", self.task.delete(ctx(), &req)).await?;
        Ok(exit_of(r.exit_status, r.exited_at.as_ref()))
    }

    /// Resizes a process's terminal.
    pub async fn resize_pty(
        &self,
        id: &str,
        exec_id: &str,
        width: u32,
        height: u32,
    ) -> Result<(), ShimError> {
        let req = api::ResizePtyRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            width,
            height,
            ..Default::default()
        };
        guard("ResizePty", self.task.resize_pty(ctx(), &req))
            .await
            .map(|_| ())
    }

    /// Closes a process's stdin for good (a shim v2 holds the stdin FIFO
    /// open itself, so the caller's close alone is no end of input).
    pub async fn close_stdin(&self, id: &str, exec_id: &str) -> Result<(), ShimError> {
        let req = api::CloseIORequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            stdin: true,
            ..Default::default()
        };
        guard("CloseIO", self.task.close_io(ctx(), &req))
            .await
            .map(|_| ())
    }

    /// Applies new cgroup limits to the running container (`runtime
    /// update`); `resources` is the OCI LinuxResources as JSON.
    pub async fn update(&self, id: &str, resources: Vec<u8>) -> Result<(), ShimError> {
        let mut any = Any::new();
        any.type_url = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into();
        any.value = resources;
        let req = api::UpdateTaskRequest {
            id: id.to_string(),
            resources: Some(any).into(),
            ..Default::default()
        };
        guard("Update", self.task.update(ctx(), &req))
            .await
            .map(|_| ())
    }

    /// Makes the shim reopen a process's CRI log file at its path, after
    /// kubelet renamed it away for rotation (our `carapace.shim.v1.Io`).
    pub async fn reopen_log(&self, id: &str, exec_id: &str) -> Result<(), ShimError> {
        let req = ReopenLogRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        guard("ReopenLog", self.io.reopen_log(ctx(), &req))
            .await
            .map(|_| ())
    }

    /// Attaches to a process's live stdio (our `carapace.shim.v1.Io`):
    /// the stream carries stdin, stdin close and resizes in, output out.
    pub async fn attach(
        &self,
        id: &str,
        exec_id: &str,
        streams: (bool, bool, bool),
    ) -> Result<ttrpc::r#async::ClientStream<AttachInput, AttachOutput>, ShimError> {
        let stream = self
            .io
            .attach(ttrpc::context::Context::default())
            .await
            .map_err(|e| call_err("Attach", e))?;
        let first = AttachInput {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            stdin: streams.0,
            stdout: streams.1,
            stderr: streams.2,
            ..Default::default()
        };
        stream
            .send(&first)
            .await
            .map_err(|e| call_err("Attach", e))?;
        Ok(stream)
    }

    /// Asks the shim to exit (it does once it holds no process).
    pub async fn shutdown(&self, id: &str) -> Result<(), ShimError> {
        let req = api::ShutdownRequest {
            id: id.to_string(),
            ..Default::default()
        };
        match guard("Shutdown", self.task.shutdown(ctx(), &req)).await {
            Ok(_) => Ok(()),
            // The shim exits while answering: a dropped connection is success.
            Err(e) => {
                if e.is_gone() {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }
}

/// Runs `carapace-shim delete` for a bundle whose shim is gone: the shim's
/// cleanup path (force-deletes the runtime's container, reports its exit).
pub async fn cleanup(l: &Launch<'_>) -> Result<(), ShimError> {
    let out = tokio::process::Command::new(l.binary)
        .args(["-namespace", NAMESPACE, "-id", l.id, "-address"])
        .arg(l.daemon_address)
        .args(["-bundle"])
        .arg(l.bundle)
        .arg("delete")
        .current_dir(l.bundle)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|source| ShimError::Spawn {
            binary: l.binary.to_path_buf(),
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ShimError::Start {
            id: l.id.to_string(),
            message: format!("delete: {}", String::from_utf8_lossy(&out.stderr).trim()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The daemon finds carapace-shim's socket by the name the shim crate
    /// gives it when it starts.
    #[test]
    fn the_daemon_names_a_shim_socket_as_the_shim_does() {
        let launch = Launch {
            binary: Path::new("/usr/bin/carapace-shim"),
            v2: false,
            id: "0123abcd",
            bundle: Path::new("/b"),
            daemon_address: Path::new("/run/carapace/carapace.sock"),
            events_address: "unix:///run/carapace/events.sock",
            socket_dir: Path::new("/run/carapace/s/"),
        };
        let opts = containerd_shim::StartOpts {
            id: launch.id.to_string(),
            address: "/run/carapace/carapace.sock".to_string(),
            namespace: NAMESPACE.to_string(),
            socket_dir: Some("/run/carapace/s/".to_string()),
            ..Default::default()
        };
        assert_eq!(
            own_socket_address(&launch).as_deref(),
            Some(opts.socket_address(launch.id).as_str())
        );
        assert_eq!(own_socket_address(&Launch { v2: true, ..launch }), None);
    }

    fn status(code: ttrpc::Code, message: &str) -> ttrpc::Error {
        ttrpc::Error::RpcStatus(ttrpc::get_status(code, message))
    }

    /// "Gone" comes from the kind of failure: a broken connection is a
    /// gone shim, whatever an answer's words say.
    #[test]
    fn a_shim_is_gone_by_the_kind_of_failure_not_by_words() {
        for e in [
            ttrpc::Error::Socket("reset".into()),
            ttrpc::Error::RemoteClosed,
            ttrpc::Error::LocalClosed,
            ttrpc::Error::Eof,
            ttrpc::Error::Others("reserve channel capacity failed: channel closed".into()),
        ] {
            let shown = e.to_string();
            assert!(call_err("Kill", e).is_gone(), "{shown}");
        }
        for e in [
            status(ttrpc::Code::UNAVAILABLE, "socket closed"),
            status(ttrpc::Code::UNKNOWN, "write: Broken pipe"),
            status(ttrpc::Code::NOT_FOUND, "container does not exist"),
        ] {
            let shown = e.to_string();
            assert!(!call_err("Kill", e).is_gone(), "{shown}");
        }
        assert!(call_err("Kill", status(ttrpc::Code::NOT_FOUND, "x")).is_not_found());
    }

    /// containerd 2.x shims answer `start` with JSON; only ttrpc ones of a
    /// known Task API version are taken.
    #[test]
    fn bootstrap_parameters_give_address_and_version() {
        assert_eq!(
            bootstrap(r#"{"version":3,"address":"unix:///run/x","protocol":"ttrpc"}"#),
            Some(("unix:///run/x".to_string(), 3))
        );
        assert_eq!(
            bootstrap(r#"{"version":2,"address":"unix:///run/y"}"#),
            Some(("unix:///run/y".to_string(), 2))
        );
        assert_eq!(
            bootstrap(r#"{"version":3,"address":"unix:///z","protocol":"grpc"}"#),
            None
        );
        assert_eq!(bootstrap(r#"{"version":9,"address":"unix:///z"}"#), None);
        assert_eq!(bootstrap("unix:///run/containerd/s/abc"), None);
    }

    /// A shim that does not answer is not taken for gone (teardown would
    /// then force-delete a container whose shim still holds it).
    #[tokio::test]
    async fn a_call_with_no_answer_is_a_timeout_not_a_gone_shim() {
        let never = std::future::pending::<Result<(), ttrpc::Error>>();
        let e = guard_for(Duration::from_millis(10), "State", never)
            .await
            .expect_err("no answer");
        assert!(matches!(e, ShimError::Timeout { method: "State" }), "{e}");
        assert!(!e.is_gone());
    }
}
