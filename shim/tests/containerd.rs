//! The shim as a containerd runtime: Debian's containerd (1.6, Task API v2)
//! runs a busybox image with `ctr run --runtime io.containerd.carapace.v2`
//! through `containerd-shim-carapace-v2` (our binary) on its PATH.
//! Needs root, containerd and ctr (hack/install-deps.sh); fails without.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A private containerd: own root, state and socket; killed on drop.
struct Containerd {
    dir: tempfile::TempDir,
    child: Child,
}

impl Containerd {
    fn start() -> Containerd {
        for bin in ["containerd", "ctr"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {bin}")])
                .output()
                .is_ok_and(|o| o.status.success());
            assert!(
                found,
                "{bin} not found: install Debian's containerd (hack/install-deps.sh)"
            );
        }
        // Not under /tmp's usual tempdir names only: containerd's overlay
        // snapshots need a file system that takes overlay mounts (ext4 here).
        let dir = tempfile::Builder::new()
            .prefix("ctd-")
            .tempdir_in("/var/tmp")
            .expect("tempdir");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).expect("mkdir bin");
        std::os::unix::fs::symlink(common::shim_bin(), bin.join("containerd-shim-carapace-v2"))
            .expect("symlink shim");
        let config = format!(
            "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{0}/c.sock\"\n",
            dir.path().display()
        );
        std::fs::write(dir.path().join("config.toml"), config).expect("write config");
        let log = std::fs::File::create(dir.path().join("containerd.log")).expect("log");
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.path().join("config.toml"))
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn containerd");
        let c = Containerd { dir, child };
        let deadline = Instant::now() + common::HANG_GUARD;
        while !c.ctr(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "containerd did not come up: {}",
                c.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("c.sock")
    }

    fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("--address")
            .arg(self.socket())
            .args(["--namespace", "carapace-test"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ctr")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Snapshots containerd left mounted (only on failure) come off
        // before the directory goes.
        if let Ok(m) = std::fs::read_to_string("/proc/self/mountinfo") {
            let root = self.dir.path().to_string_lossy().into_owned();
            let mut points: Vec<&str> = m
                .lines()
                .filter_map(|l| l.split_whitespace().nth(4))
                .filter(|p| p.starts_with(&root))
                .collect();
            points.sort_by_key(|p| std::cmp::Reverse(p.len()));
            for p in points {
                let _ = nix::mount::umount2(Path::new(p), nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
}

#[test]
fn ctr_runs_a_container_with_the_carapace_shim() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "containerd tests need root (CI runs them as root)"
    );
    let ctd = Containerd::start();
    let archive = ctd.dir.path().join("busybox.tar");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack/build-oci-archive.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg(common::rootfs())
        .arg(&archive)
        .arg("carapace.test/busybox:latest")
        .output()
        .expect("run build-oci-archive.sh");
    assert!(
        out.status.success(),
        "build-oci-archive: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ctd.ctr(&["images", "import", &archive.to_string_lossy()]);
    assert!(
        out.status.success(),
        "ctr images import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = format!("ctr-{}", std::process::id());
    let out = ctd.ctr(&[
        "run",
        "--rm",
        "--runtime",
        "io.containerd.carapace.v2",
        "carapace.test/busybox:latest",
        &id,
        "echo",
        "hello",
    ]);
    assert!(
        out.status.success(),
        "ctr run failed: {}\ncontainerd log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        ctd.log()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello");
    // A long-running task: containerd decodes our Stats (cgroup metrics),
    // then kills and deletes it through the shim.
    let bg = format!("{id}-bg");
    let out = ctd.ctr(&[
        "run",
        "-d",
        "--runtime",
        "io.containerd.carapace.v2",
        "carapace.test/busybox:latest",
        &bg,
        "sleep",
        "1000",
    ]);
    assert!(
        out.status.success(),
        "ctr run -d: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ctd.ctr(&["task", "metrics", &bg]);
    assert!(
        out.status.success(),
        "ctr task metrics: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        ctd.log()
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("memory.usage_in_bytes") || text.contains("memory.current"),
        "{text}"
    );
    let out = ctd.ctr(&["task", "kill", "--signal", "SIGKILL", &bg]);
    assert!(
        out.status.success(),
        "ctr task kill: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + common::HANG_GUARD;
    loop {
        let out = ctd.ctr(&["task", "delete", &bg]);
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "task never stopped: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = ctd.ctr(&["containers", "delete", &bg]);
    assert!(
        out.status.success(),
        "ctr containers delete: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // --rm deleted the container: no task, no container left.
    let out = ctd.ctr(&["containers", "list", "--quiet"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "",
        "container left behind"
    );
}
