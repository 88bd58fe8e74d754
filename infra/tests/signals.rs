//! The infra process ends cleanly on SIGTERM, ignores other signals, and
//! does so as a PID namespace's init too (where unhandled signals would
//! otherwise be dropped).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn infra() -> &'static str {
    env!("CARGO_BIN_EXE_carapace-infra")
}

/// Hang guard, not a performance bound.
const GUARD: Duration = Duration::from_secs(30);

fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return st;
        }
        assert!(start.elapsed() < GUARD, "process did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn is_a_static_executable() {
    let out = Command::new("file").arg(infra()).output();
    let out = out.expect("`file` must be installed (hack/install-deps.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("statically linked"), "{text}");
}

#[test]
fn exits_zero_on_sigterm_and_survives_other_signals() {
    let mut child = Command::new(infra()).spawn().expect("spawn infra");
    let pid = Pid::from_raw(child.id() as i32);
    std::thread::sleep(Duration::from_millis(100));
    for sig in [
        Signal::SIGCHLD,
        Signal::SIGUSR1,
        Signal::SIGHUP,
        Signal::SIGPIPE,
    ] {
        kill(pid, sig).expect("signal");
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(child.try_wait().expect("try_wait").is_none(), "died early");
    kill(pid, Signal::SIGTERM).expect("sigterm");
    let st = wait_exit(&mut child);
    assert_eq!(st.code(), Some(0), "{st:?}");
}

#[test]
fn exits_zero_on_sigterm_as_pid_namespace_init() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "needs root for a PID namespace (CI runs as root)"
    );
    let mut unshare = Command::new("unshare")
        .args(["--pid", "--fork"])
        .arg(infra())
        .stdin(Stdio::null())
        .spawn()
        .expect("unshare must be installed (util-linux)");
    // The infra is unshare's only child.
    let start = Instant::now();
    let infra_pid = loop {
        let children = std::fs::read_to_string(format!(
            "/proc/{}/task/{}/children",
            unshare.id(),
            unshare.id()
        ))
        .unwrap_or_default();
        if let Some(p) = children.split_whitespace().next() {
            break p.parse::<i32>().expect("pid");
        }
        assert!(start.elapsed() < GUARD, "infra never started");
        std::thread::sleep(Duration::from_millis(10));
    };
    std::thread::sleep(Duration::from_millis(100));
    kill(Pid::from_raw(infra_pid), Signal::SIGTERM).expect("sigterm");
    let st = wait_exit(&mut unshare);
    assert_eq!(st.code(), Some(0), "{st:?}");
}
