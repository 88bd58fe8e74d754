//! Shared helpers of the runtime's integration tests: a busybox rootfs, a
//! bundle per test with a config.json we edit as JSON, a private state root,
//! and the `carapace-runtime` binary driven exactly as a shim drives runc.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::{json, Value};

/// The runtime binary under test: the one cargo built with the tests, or
/// the one `CARAPACE_TEST_RUNTIME` names, so hack/test.sh can run these
/// tests again against the runtime as shipped (hack/build-runtime.sh:
/// static-pie, libseccomp linked in, its own profile), which is a different
/// executable from the one cargo tests link.
pub fn runtime_bin() -> PathBuf {
    match std::env::var_os("CARAPACE_TEST_RUNTIME") {
        Some(p) => {
            let p = PathBuf::from(p);
            assert!(
                p.is_file(),
                "CARAPACE_TEST_RUNTIME={} is not a file",
                p.display()
            );
            p
        }
        None => PathBuf::from(env!("CARGO_BIN_EXE_carapace-runtime")),
    }
}

/// The shared busybox rootfs. hack/test.sh builds it and exports
/// CARAPACE_TEST_ROOTFS; otherwise build it here with the same script.
/// A missing busybox-static fails loudly, never skips.
pub fn shared_rootfs() -> PathBuf {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS
        .get_or_init(|| {
            if let Ok(p) = std::env::var("CARAPACE_TEST_ROOTFS") {
                let p = PathBuf::from(p);
                assert!(
                    p.join("bin/busybox").exists(),
                    "CARAPACE_TEST_ROOTFS={} has no bin/busybox: run hack/build-rootfs.sh",
                    p.display()
                );
                return p;
            }
            let dir = std::env::temp_dir().join(format!("carapace-rootfs-{}", std::process::id()));
            build_rootfs(&dir);
            dir
        })
        .clone()
}

/// Build a fresh busybox rootfs at `dir` with hack/build-rootfs.sh.
pub fn build_rootfs(dir: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack/build-rootfs.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(dir)
        .output()
        .expect("run hack/build-rootfs.sh");
    assert!(
        out.status.success(),
        "hack/build-rootfs.sh failed (is busybox-static installed?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Fail loudly unless we are root: these tests create namespaces and cgroups.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "runtime integration tests need root (CI runs them as root)"
    );
}

static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One test's bundle, state root and container-ID prefix.
pub struct Bundle {
    /// Kept alive for the test's duration.
    pub dir: tempfile::TempDir,
    /// `--root` for every command.
    pub state: PathBuf,
    /// config.json as JSON, edited by the test, written by `write`.
    pub config: Value,
    /// Unique-ish prefix for IDs.
    pub name: String,
    /// Pass `--systemd-cgroup` to every command.
    pub systemd_cgroup: bool,
}

impl Bundle {
    /// A bundle running `args` in the shared rootfs with runc's default
    /// spec (new pid/net/ipc/uts/mount namespaces, default mounts).
    pub fn new(name: &str, args: &[&str]) -> Bundle {
        require_root();
        let dir = tempfile::Builder::new()
            .prefix(&format!("crt-{name}-"))
            .tempdir()
            .expect("tempdir");
        let state = dir.path().join("state");
        let out = Command::new(runtime_bin())
            .arg("spec")
            .arg("--bundle")
            .arg(dir.path())
            .output()
            .expect("spec");
        assert!(
            out.status.success(),
            "spec: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut config: Value = serde_json::from_slice(
            &std::fs::read(dir.path().join("config.json")).expect("read config"),
        )
        .expect("parse config");
        config["root"] = json!({"path": shared_rootfs(), "readonly": false});
        config["process"]["terminal"] = json!(false);
        config["process"]["args"] = json!(args);
        config["hostname"] = json!(name.replace('_', "-"));
        let b = Bundle {
            dir,
            state,
            config,
            name: format!("{name}-{}", std::process::id()),
            systemd_cgroup: false,
        };
        b.write();
        b
    }

    /// Use a private copy of the rootfs (for tests that plant things in it).
    pub fn private_rootfs(&mut self) -> PathBuf {
        let p = self.dir.path().join("rootfs");
        let out = Command::new("cp")
            .arg("-a")
            .arg(shared_rootfs())
            .arg(&p)
            .output()
            .expect("run cp");
        assert!(
            out.status.success(),
            "copy rootfs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.config["root"]["path"] = json!(p);
        self.write();
        p
    }

    /// Write config.json.
    pub fn write(&self) {
        std::fs::write(
            self.dir.path().join("config.json"),
            serde_json::to_vec_pretty(&self.config).expect("json"),
        )
        .expect("write config");
    }

    /// The bundle directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A container ID for this test.
    pub fn id(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.name)
    }

    /// A runtime command with `--root` set.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(runtime_bin());
        c.arg("--root").arg(&self.state);
        if self.systemd_cgroup {
            c.arg("--systemd-cgroup");
        }
        c.stdin(Stdio::null());
        c
    }

    /// Run the runtime with `args`, capturing output. Output goes through
    /// files, not pipes: a created container's init inherits the caller's
    /// stdio and keeps it open, so waiting for pipe EOF would hang.
    pub fn rt(&self, args: &[&str]) -> Output {
        self.write();
        let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out_path = self.path().join(format!(".rt-{n}.out"));
        let err_path = self.path().join(format!(".rt-{n}.err"));
        let out = std::fs::File::create(&out_path).expect("stdout file");
        let err = std::fs::File::create(&err_path).expect("stderr file");
        let status = self
            .cmd()
            .args(args)
            .current_dir(self.path())
            .stdout(out)
            .stderr(err)
            .status()
            .expect("run carapace-runtime");
        Output {
            status,
            stdout: std::fs::read(&out_path).unwrap_or_default(),
            stderr: std::fs::read(&err_path).unwrap_or_default(),
        }
    }

    /// Like `rt`, asserting success.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.rt(args);
        assert!(
            o.status.success(),
            "carapace-runtime {args:?} failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `run` the container in the foreground: (exit code, stdout, stderr).
    pub fn run(&self, id: &str) -> (i32, String, String) {
        let o = self.rt(&["run", "--bundle", self.path().to_str().expect("utf8"), id]);
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    /// `create` + `start` with output going to files; returns the init pid.
    pub fn start_detached(&self, id: &str) -> i32 {
        self.write();
        let out = std::fs::File::create(self.path().join(format!("{id}.out"))).expect("out file");
        let status = self
            .cmd()
            .args([
                "create",
                "--bundle",
                self.path().to_str().expect("utf8"),
                id,
            ])
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .status()
            .expect("create");
        assert!(status.success(), "create {id}: {}", self.output_of(id));
        self.ok(&["start", id]);
        self.state_of(id)["pid"].as_i64().expect("pid") as i32
    }

    /// The container's output file written by `start_detached`.
    pub fn output_of(&self, id: &str) -> String {
        std::fs::read_to_string(self.path().join(format!("{id}.out"))).unwrap_or_default()
    }

    /// `state` as JSON.
    pub fn state_of(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).expect("state json")
    }

    /// Kill and delete, ignoring errors (cleanup at the end of a test).
    pub fn destroy(&self, id: &str) {
        let _ = self.rt(&["delete", "--force", id]);
    }

    /// Wait until `state` says stopped (bounded).
    pub fn wait_stopped(&self, id: &str) {
        for _ in 0..500 {
            if self.state_of(id)["status"] == "stopped" {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("container {id} did not stop");
    }
}

/// Wait for `child` at most `limit`: its exit status, or None once the
/// limit passed (the child is then killed and reaped). For tests of a
/// command that once hung, so a regression fails instead of stalling CI.
pub fn wait_bounded(
    child: &mut std::process::Child,
    limit: std::time::Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().expect("wait for the child") {
            return Some(s);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Is the host on the unified (v2) hierarchy? (The qemu lane is.)
pub fn is_cgroup_v2() -> bool {
    nix::sys::statfs::statfs("/sys/fs/cgroup")
        .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false)
}

/// The cgroup directory of `controller` (v1) or the single directory (v2)
/// for a container's cgroupsPath.
pub fn cgroup_dir(controller: &str, path: &str) -> PathBuf {
    let rel = path.trim_start_matches('/');
    if is_cgroup_v2() {
        Path::new("/sys/fs/cgroup").join(rel)
    } else {
        Path::new("/sys/fs/cgroup").join(controller).join(rel)
    }
}
