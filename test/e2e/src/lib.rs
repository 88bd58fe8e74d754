//! End-to-end tests that drive a real `carapace` daemon over its CRI socket
//! as kubelet does. This crate holds their shared helpers: a daemon in
//! temporary directories with its own socket, and generated CRI clients.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

/// How long the daemon may take to serve before a test fails: a hang
/// guard, not a performance bound.
pub const HANG_GUARD: Duration = Duration::from_secs(60);

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

/// A running daemon with private root, state, socket and CNI conf dir;
/// killed (SIGKILL) and cleaned up on drop.
pub struct Daemon {
    /// Root of every directory the daemon uses.
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Daemon {
    /// Writes a config with `extra` TOML appended and starts the daemon.
    pub fn start(extra: &str) -> Daemon {
        assert!(
            nix::unistd::geteuid().is_root(),
            "end-to-end tests need root (CI runs them as root)"
        );
        let dir = tempfile::Builder::new()
            .prefix("cre2e-")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir_all(dir.path().join("cni")).expect("mkdir cni");
        let config = format!(
            "socket = \"{0}/c.sock\"\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n{extra}\n\
             [cni]\nconf_dir = \"{0}/cni\"\n",
            dir.path().display()
        );
        std::fs::write(dir.path().join("config.toml"), config).expect("write config");
        let mut d = Daemon { dir, child: None };
        d.spawn();
        d
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
            .open(self.dir.path().join("daemon.log"))
            .expect("daemon log");
        let child = Command::new(daemon_bin())
            .arg("--config")
            .arg(self.config_path())
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

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// A gRPC channel over the daemon's unix socket.
    pub async fn channel(&self) -> Channel {
        let sock = self.socket();
        Endpoint::try_from("http://[::]:50051")
            .expect("endpoint")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let sock = sock.clone();
                async move {
                    tokio::net::UnixStream::connect(sock)
                        .await
                        .map(TokioIo::new)
                }
            }))
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
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
