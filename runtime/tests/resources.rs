//! cgroup limits of real containers (cgroup v1 on this machine; the qemu
//! lane runs the same tests on v2): memory with a visible OOM kill, cpu
//! quota, pids, live `update`, pause/resume.

mod common;

use common::Bundle;
use serde_json::json;

/// The container's cgroup directory for `controller`, v1 or v2.
fn cg(controller: &str, id: &str) -> std::path::PathBuf {
    common::cgroup_dir(controller, &format!("/carapace/{id}"))
}

fn read(p: std::path::PathBuf) -> String {
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

fn is_v2() -> bool {
    common::is_cgroup_v2()
}

#[test]
fn memory_limit_is_enforced_and_the_oom_kill_is_visible() {
    // `tail /dev/zero` buffers an endless line: it grows until killed.
    let mut b = Bundle::new("oom", &["tail", "/dev/zero"]);
    b.config["linux"]["resources"] =
        json!({"memory": {"limit": 16 * 1024 * 1024, "swap": 16 * 1024 * 1024}});
    b.write();
    let id = b.id("c");
    b.start_detached(&id);
    let limit_file = if is_v2() {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    assert_eq!(
        read(cg("memory", &id).join(limit_file)),
        (16 * 1024 * 1024).to_string()
    );
    b.wait_stopped(&id);
    let events = if is_v2() {
        read(cg("memory", &id).join("memory.events"))
    } else {
        read(cg("memory", &id).join("memory.oom_control"))
    };
    let kills: u64 = events
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no oom_kill counter in {events}"));
    assert!(kills >= 1, "no OOM kill recorded: {events}");
    b.ok(&["delete", &id]);
    assert!(!cg("memory", &id).exists());
}

#[test]
fn cpu_quota_and_pids_limit_land_in_the_cgroup() {
    let mut b = Bundle::new("cpupids", &["sleep", "1000"]);
    b.config["linux"]["resources"] = json!({
        "cpu": {"quota": 50000, "period": 100000, "shares": 512},
        "pids": {"limit": 42}
    });
    b.write();
    let id = b.id("c");
    b.start_detached(&id);
    if is_v2() {
        assert_eq!(read(cg("cpu", &id).join("cpu.max")), "50000 100000");
    } else {
        assert_eq!(read(cg("cpu", &id).join("cpu.cfs_quota_us")), "50000");
        assert_eq!(read(cg("cpu", &id).join("cpu.cfs_period_us")), "100000");
        assert_eq!(read(cg("cpu", &id).join("cpu.shares")), "512");
    }
    assert_eq!(read(cg("pids", &id).join("pids.max")), "42");
    // The pids limit is enforced: a fork bomb stops at the limit.
    let out = b.rt(&[
        "exec",
        &b.id("c"),
        "sh",
        "-c",
        "for i in $(seq 1 60); do sleep 100 >/dev/null 2>&1 & done; true",
    ]);
    let text = String::from_utf8_lossy(&out.stderr);
    let pids: Vec<i32> = serde_json::from_str(&b.ok(&["ps", "--format", "json", &id])).expect("ps");
    assert!(
        pids.len() <= 42,
        "pids limit not enforced: {} processes ({text})",
        pids.len()
    );
    // Live update.
    b.ok(&["update", "--pids-limit", "100", "--cpu-quota", "20000", &id]);
    assert_eq!(read(cg("pids", &id).join("pids.max")), "100");
    let quota = if is_v2() {
        read(cg("cpu", &id).join("cpu.max"))
    } else {
        read(cg("cpu", &id).join("cpu.cfs_quota_us"))
    };
    assert!(quota.starts_with("20000"), "{quota}");
    let res = b.path().join("res.json");
    std::fs::write(
        &res,
        json!({"memory": {"limit": 64 * 1024 * 1024}}).to_string(),
    )
    .expect("write");
    b.ok(&["update", "--resources", res.to_str().expect("utf8"), &id]);
    let lim = if is_v2() {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    assert_eq!(
        read(cg("memory", &id).join(lim)),
        (64 * 1024 * 1024).to_string()
    );
    b.destroy(&id);
}

#[test]
fn pause_and_resume_freeze_the_container() {
    let b = Bundle::new("pause", &["sleep", "1000"]);
    let id = b.id("c");
    let pid = b.start_detached(&id);
    b.ok(&["pause", &id]);
    assert_eq!(b.state_of(&id)["status"], "paused");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let _ = stat; // state letter of a frozen task varies by kernel (S or D)
                  // exec into a paused container is refused.
    assert!(!b.rt(&["exec", &id, "true"]).status.success());
    b.ok(&["resume", &id]);
    assert_eq!(b.state_of(&id)["status"], "running");
    // A paused container can be force-deleted.
    b.ok(&["pause", &id]);
    b.ok(&["delete", "--force", &id]);
    assert!(!cg("freezer", &id).exists());
}

#[test]
fn terminal_master_is_sent_over_the_console_socket() {
    use std::io::Read;
    use std::os::fd::FromRawFd;
    let mut b = Bundle::new("tty", &["sh", "-c", "tty; echo tty-ok"]);
    b.config["process"]["terminal"] = json!(true);
    b.write();
    let sock_path = b.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock_path).expect("bind");
    let id = b.id("c");
    let o = b.rt(&[
        "create",
        "--bundle",
        b.path().to_str().expect("utf8"),
        "--console-socket",
        sock_path.to_str().expect("utf8"),
        &id,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (conn, _) = listener.accept().expect("accept");
    let mut buf = [0u8; 256];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let msg = nix::sys::socket::recvmsg::<()>(
        std::os::fd::AsRawFd::as_raw_fd(&conn),
        &mut iov,
        Some(&mut space),
        nix::sys::socket::MsgFlags::empty(),
    )
    .expect("recvmsg");
    let mut master = None;
    for c in msg.cmsgs().expect("cmsgs") {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
            master = fds.first().copied();
        }
    }
    let master = master.expect("no fd received");
    b.ok(&["start", &id]);
    // SAFETY: the fd was just received over SCM_RIGHTS and is ours.
    let mut f = unsafe { std::fs::File::from_raw_fd(master) };
    let mut out = String::new();
    let mut chunk = [0u8; 512];
    for _ in 0..100 {
        match f.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.push_str(&String::from_utf8_lossy(&chunk[..n])),
        }
        if out.contains("tty-ok") {
            break;
        }
    }
    assert!(out.contains("/dev/pts/0"), "{out}");
    assert!(out.contains("tty-ok"), "{out}");
    b.destroy(&id);
}

#[test]
fn hooks_run_at_their_stages_with_the_state() {
    let mut b = Bundle::new("hooks", &["true"]);
    let marks = b.path().join("marks");
    let hook = |stage: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat > /dev/null; echo {stage} >> {}", marks.display())]});
    // createContainer runs inside the container's mount namespace (before
    // pivot_root, so host paths still resolve): it records the state it got.
    let state_file = b.path().join("cc-state.json");
    let cc =
        json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}", state_file.display())]});

    b.config["hooks"] = json!({
        "createRuntime": [hook("createRuntime")],
        "createContainer": [cc],
        "poststart": [hook("poststart")],
        "poststop": [hook("poststop")]
    });
    b.write();
    let (code, _, err) = b.run(&b.id("c"));
    assert_eq!(code, 0, "{err}");
    let got = std::fs::read_to_string(&marks).expect("marks");
    assert_eq!(
        got.lines().collect::<Vec<_>>(),
        vec!["createRuntime", "poststart", "poststop"]
    );
    let st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_file).expect("createContainer state"))
            .expect("json");
    assert_eq!(st["id"], json!(b.id("c")));
    assert_eq!(st["bundle"], json!(b.path()));
    assert!(
        st["pid"].as_i64().is_some_and(|p| p > 1),
        "host pid expected: {st}"
    );
    // A failing createRuntime hook fails create and leaves nothing.
    b.config["hooks"] = json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "echo hook-broke >&2; exit 1"]}]});
    b.write();
    let id = b.id("bad");
    let (code, _, err) = b.run(&id);
    assert_ne!(code, 0);
    assert!(err.contains("hook-broke"), "{err}");
    assert!(!b.state.join(&id).exists());
}

/// A runtime never hangs: when cgroup setup fails (here a hugepage limit
/// of a page size no machine has), `create` fails at once with a message
/// and leaves no container, state or process behind. It used to wait
/// forever for its child, which kept the parent's end of their channel.
#[test]
fn a_cgroup_setup_failure_fails_create_fast_and_leaves_nothing() {
    let mut b = Bundle::new("cgfail", &["true"]);
    b.config["linux"]["resources"]["hugepageLimits"] =
        json!([{"pageSize": "3MB", "limit": 1048576}]);
    b.write();
    let id = b.id("c");
    let mut child = b
        .cmd()
        .args(["create", "--bundle", b.path().to_str().expect("utf8"), &id])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run create");
    let status = common::wait_bounded(&mut child, std::time::Duration::from_secs(30))
        .expect("create hung on a cgroup setup failure");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("read stderr");
    assert!(!status.success(), "create succeeded");
    assert!(
        err.contains("hugetlb") || err.contains("hugepage") || err.contains("3MB"),
        "{err}"
    );
    assert!(
        !b.rt(&["state", &id]).status.success(),
        "container left behind"
    );
}
