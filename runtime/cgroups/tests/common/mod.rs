//! Shared helpers for the kernel tests: unique cgroup names, a guard that
//! removes everything a test created even when it fails, and child processes
//! that wait on stdin so they can be moved into a cgroup before they act.
//!
//! Tests only ever create cgroups below a directory named
//! `carapace-test-<pid>-<n>` and remove exactly that tree.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use carapace_cgroups::{Hierarchy, Manager};

pub const BUSYBOX: &str = "/bin/busybox";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh `carapace-test-<pid>-<n>` name.
pub fn unique_name() -> String {
    format!(
        "carapace-test-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// Fails loudly when a prerequisite is missing.
pub fn require_root_and_busybox() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "cgroup kernel tests must run as root"
    );
    assert!(
        Path::new(BUSYBOX).is_file(),
        "{BUSYBOX} is missing: install busybox-static"
    );
}

/// A container cgroup `/<unique>/<leaf>` plus its test-only parent, and the
/// children spawned for it. Dropping it kills those children and removes the
/// whole `/<unique>` tree.
pub struct TestCgroup {
    pub mgr: Manager,
    /// Manager for the `/<unique>` parent (only used to clean up).
    pub top: Manager,
    children: Vec<Child>,
}

impl TestCgroup {
    /// On the host's own hierarchy (v1 here, v2 in the VM lane), through
    /// `Manager::new` — exactly what the runtime uses.
    pub fn host(leaf: &str) -> TestCgroup {
        require_root_and_busybox();
        let name = unique_name();
        let top = Manager::new(Some(&format!("/{name}")), &name, false).expect("top manager");
        let mgr =
            Manager::new(Some(&format!("/{name}/{leaf}")), leaf, false).expect("leaf manager");
        TestCgroup {
            mgr,
            top,
            children: Vec::new(),
        }
    }

    /// On a cgroup2 mount (the hybrid /sys/fs/cgroup/unified on v1 hosts,
    /// /sys/fs/cgroup on v2 hosts), rooted at a test directory we create, so
    /// nothing above it is ever written to.
    pub fn unified(leaf: &str) -> TestCgroup {
        require_root_and_busybox();
        let root = unified_root();
        let name = unique_name();
        let top_dir = root.join(&name);
        std::fs::create_dir(&top_dir)
            .unwrap_or_else(|e| panic!("mkdir {}: {e}", top_dir.display()));
        let top = Manager::with_root(&root, Hierarchy::V2, Some(&format!("/{name}")), &name)
            .expect("top manager");
        let mgr = Manager::with_root(&top_dir, Hierarchy::V2, Some(&format!("/{leaf}")), leaf)
            .expect("leaf manager");
        TestCgroup {
            mgr,
            top,
            children: Vec::new(),
        }
    }

    /// Starts `busybox sh -c 'read _; <script>'`, moves it into the cgroup,
    /// then lets it run. Returns its pid.
    pub fn run_in_cgroup(&mut self, script: &str) -> i32 {
        let (pid, mut stdin) = self.spawn_waiting(script);
        self.mgr.add_process(pid).expect("add_process");
        stdin.write_all(b"go\n").expect("release child");
        pid
    }

    /// Starts a child blocked on stdin; the caller moves it and releases it.
    pub fn spawn_waiting(&mut self, script: &str) -> (i32, ChildStdin) {
        let mut child = Command::new(BUSYBOX)
            .args(["sh", "-c", &format!("read _; {script}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn busybox");
        let stdin = child.stdin.take().expect("stdin");
        let pid = child.id() as i32;
        self.children.push(child);
        (pid, stdin)
    }

    /// Starts `busybox sleep 1000` in the cgroup.
    pub fn sleeper(&mut self) -> i32 {
        let child = Command::new(BUSYBOX)
            .args(["sleep", "1000"])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sleep");
        let pid = child.id() as i32;
        self.children.push(child);
        self.mgr.add_process(pid).expect("add_process");
        pid
    }

    /// Waits for the child with `pid` and returns its status and output.
    pub fn wait(&mut self, pid: i32) -> std::process::Output {
        let idx = self
            .children
            .iter()
            .position(|c| c.id() as i32 == pid)
            .expect("known child");
        let child = self.children.remove(idx);
        child.wait_with_output().expect("wait child")
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
        }
        let _ = self.mgr.thaw();
        let _ = self.top.kill_all(libc::SIGKILL);
        for c in &mut self.children {
            let _ = c.wait();
        }
        if let Err(e) = self.top.destroy() {
            eprintln!("cleanup of test cgroup failed: {e}");
        }
    }
}

/// The cgroup2 mount the v2 code paths are tested on.
pub fn unified_root() -> PathBuf {
    let hierarchy = carapace_cgroups::detect().expect("detect");
    let root = match hierarchy {
        Hierarchy::V2 => PathBuf::from("/sys/fs/cgroup"),
        Hierarchy::V1 => PathBuf::from("/sys/fs/cgroup/unified"),
    };
    let st = nix::sys::statfs::statfs(&root)
        .unwrap_or_else(|e| panic!("no cgroup2 mount at {}: {e}", root.display()));
    assert_eq!(
        st.filesystem_type(),
        nix::sys::statfs::CGROUP2_SUPER_MAGIC,
        "{} is not a cgroup2 mount; mount one there (mount -t cgroup2 none {0})",
        root.display()
    );
    root
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}
