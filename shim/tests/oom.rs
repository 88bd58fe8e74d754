//! Kernel test of the OOM-kill watcher on the host's own cgroup hierarchy
//! through `Manager::new` (cgroup v1 on the development host, v2 in the VM
//! lane). Needs root, /bin/busybox and the memory controller; fails (does
//! not skip) without them.
//!
//! Only cgroups named `/carapace-oomtest-<pid>-<n>` are created, and a guard
//! kills their processes and removes them even when a test fails.

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use carapace_cgroups::{Hierarchy, Manager};
use carapace_shim::oom::{self, OomError};
use oci_spec::runtime::{LinuxMemoryBuilder, LinuxResources, LinuxResourcesBuilder};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::timeout;

const BUSYBOX: &str = "/bin/busybox";
const MIB: i64 = 1024 * 1024;
/// Hang guard only: how long a kernel event may take to reach us before the
/// test gives up. Not a performance assertion.
const HANG_GUARD: Duration = Duration::from_secs(30);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Our own test cgroup and the children spawned into it; dropping it kills
/// them and removes the cgroup.
struct TestCgroup {
    mgr: Manager,
    children: Vec<Child>,
}

impl TestCgroup {
    /// Creates `/carapace-oomtest-<pid>-<n>` with a 16 MiB memory limit and
    /// no swap, failing loudly when a prerequisite is missing.
    fn create() -> TestCgroup {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the OOM watcher kernel test must run as root"
        );
        assert!(
            Path::new(BUSYBOX).is_file(),
            "{BUSYBOX} is missing: install busybox-static"
        );
        let name = format!(
            "/carapace-oomtest-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let mgr = Manager::new(Some(&name), "x", false).expect("cgroup manager");
        let dir = mgr.path_for("memory").unwrap_or_else(|| {
            panic!("the memory cgroup controller is not mounted: cannot test OOM kill reporting")
        });
        // From here on the guard removes whatever create() made.
        let t = TestCgroup {
            mgr,
            children: Vec::new(),
        };
        t.mgr.create().expect("create the test cgroup");
        let events = match t.mgr.hierarchy() {
            Hierarchy::V1 => dir.join("memory.oom_control"),
            Hierarchy::V2 => dir.join("memory.events"),
        };
        assert!(
            events.is_file(),
            "{} is missing: the memory controller is not available to {name}",
            events.display()
        );
        t.mgr
            .apply(&memory(16 * MIB, 16 * MIB))
            .expect("apply a 16 MiB memory limit");
        t
    }

    /// Starts `busybox sh -c 'read _; <script>'`, moves it into the cgroup
    /// before it does anything, then releases it. Returns its index.
    fn run(&mut self, script: &str) -> usize {
        let mut child = Command::new(BUSYBOX)
            .args(["sh", "-c", &format!("read _; {script}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn busybox");
        let mut stdin = child.stdin.take().expect("child stdin");
        let pid = child.id() as i32;
        self.children.push(child);
        self.mgr
            .add_process(pid)
            .expect("move the child into the cgroup");
        stdin.write_all(b"go\n").expect("release the child");
        self.children.len() - 1
    }

    /// Waits for child `idx` and returns the signal that ended it.
    fn wait_signal(&mut self, idx: usize) -> Option<i32> {
        self.children[idx].wait().expect("wait child").signal()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
        }
        let _ = self.mgr.kill_all(libc::SIGKILL);
        for c in &mut self.children {
            let _ = c.wait();
        }
        if let Err(e) = self.mgr.destroy() {
            eprintln!("cleanup of test cgroup failed: {e}");
        }
    }
}

fn memory(limit: i64, swap: i64) -> LinuxResources {
    LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(limit)
                .swap(swap)
                .build()
                .expect("memory resources"),
        )
        .build()
        .expect("resources")
}

/// Next report, or None when the stream ended; panics on a hang.
async fn next(rx: &mut UnboundedReceiver<u64>, what: &str) -> Option<u64> {
    timeout(HANG_GUARD, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("no {what} within {HANG_GUARD:?}"))
}

/// `tail` buffers /dev/zero forever looking for a newline: it grows until
/// the 16 MiB limit has it OOM-killed.
const HOG: &str = "exec /bin/busybox tail /dev/zero";

#[tokio::test(flavor = "current_thread")]
async fn oom_kills_are_reported_and_removal_ends_the_stream() {
    let mut t = TestCgroup::create();
    let mut rx = oom::watch(t.mgr.clone()).expect("watch");

    let first = t.run(HOG);
    let count = next(&mut rx, "OOM kill report")
        .await
        .expect("stream ended before reporting the OOM kill");
    assert!(count >= 1, "reported count {count}");
    assert_eq!(t.wait_signal(first), Some(libc::SIGKILL));

    // A second kill is reported with a higher count.
    let second = t.run(HOG);
    let again = next(&mut rx, "second OOM kill report")
        .await
        .expect("stream ended before reporting the second OOM kill");
    assert!(again > count, "second report {again} after {count}");
    assert_eq!(t.wait_signal(second), Some(libc::SIGKILL));
    assert_eq!(t.mgr.oom_kill_count().expect("oom_kill count"), again);

    t.mgr.destroy().expect("destroy the test cgroup");
    assert_eq!(next(&mut rx, "end of stream after removal").await, None);
}

#[tokio::test(flavor = "current_thread")]
async fn a_plain_kill_is_not_reported_and_removal_ends_the_stream() {
    let mut t = TestCgroup::create();
    let mut rx = oom::watch(t.mgr.clone()).expect("watch");
    let child = t.run("exec /bin/busybox sleep 1000");
    t.mgr.kill_all(libc::SIGKILL).expect("kill_all");
    assert_eq!(t.wait_signal(child), Some(libc::SIGKILL));
    t.mgr.destroy().expect("destroy the test cgroup");
    // Reports are sent before the stream ends, so a spurious one shows here.
    assert_eq!(next(&mut rx, "end of stream after removal").await, None);
}

#[tokio::test(flavor = "current_thread")]
async fn watching_a_missing_cgroup_fails() {
    let name = format!("/carapace-oomtest-{}-missing", std::process::id());
    let mgr = Manager::new(Some(&name), "x", false).expect("cgroup manager");
    assert!(!mgr.exists());
    match oom::watch(mgr) {
        Err(OomError::NotFound { path }) => assert!(path.ends_with(&name[1..]), "{path:?}"),
        Err(OomError::NoMemoryController { .. }) => {
            panic!("the memory cgroup controller is not mounted")
        }
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("watching a missing cgroup succeeded"),
    }
}

#[test]
fn watch_outside_a_runtime_fails() {
    let mgr = Manager::new(Some("/carapace-oomtest-unused"), "x", false).expect("manager");
    assert!(matches!(oom::watch(mgr), Err(OomError::NoRuntime { .. })));
}
