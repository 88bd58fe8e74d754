//! Lifecycle and isolation of real containers: create/start/state/kill/
//! delete, PID 1, hostname, mount table, exec, bad input, nothing left over.

mod common;

use common::{cgroup_dir, Bundle};
use serde_json::json;
use std::process::Stdio;

#[test]
fn container_is_pid1_with_own_hostname_and_mount_table() {
    let b = Bundle::new(
        "isolation",
        &[
            "sh",
            "-c",
            "echo pid=$$; hostname; cat /proc/self/mountinfo",
        ],
    );
    let (code, out, err) = b.run(&b.id("c"));
    assert_eq!(code, 0, "stderr: {err}");
    assert!(out.contains("pid=1\n"), "{out}");
    assert!(out.contains("isolation\n"), "{out}");
    let host_hostname = nix::unistd::gethostname().expect("hostname");
    assert_ne!(host_hostname.to_string_lossy(), "isolation");
    // Only the container's own mount points are visible: / and what the
    // spec mounts; no host path such as the bundle directory.
    let mountpoints: Vec<&str> = out.lines().filter_map(|l| l.split(' ').nth(4)).collect();
    assert!(mountpoints.contains(&"/"), "{out}");
    assert!(mountpoints.contains(&"/proc"), "{out}");
    for mp in &mountpoints {
        assert!(
            !mp.starts_with(b.path().to_str().expect("utf8")),
            "host path {mp} visible in the container"
        );
        assert!(
            !mp.starts_with("/work") && !mp.starts_with("/home"),
            "host mount {mp} visible"
        );
    }
}

#[test]
fn create_start_state_kill_delete_leave_nothing_behind() {
    let b = Bundle::new("lifecycle", &["sleep", "1000"]);
    let id = b.id("c");
    let pidfile = b.path().join("init.pid");
    b.ok(&[
        "create",
        "--bundle",
        b.path().to_str().expect("utf8"),
        "--pid-file",
        pidfile.to_str().expect("utf8"),
        &id,
    ]);
    let st = b.state_of(&id);
    assert_eq!(st["status"], "created");
    let pid = st["pid"].as_i64().expect("pid");
    assert_eq!(
        std::fs::read_to_string(&pidfile).expect("pid file").trim(),
        pid.to_string()
    );
    // The init is not the runtime CLI's child (the caller reaps it).
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let ppid: i32 = stat
        .rsplit(')')
        .next()
        .and_then(|s| s.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("ppid");
    assert_ne!(ppid, std::process::id() as i32);
    let cg = cgroup_dir("memory", &format!("/carapace/{id}"));
    assert!(cg.exists(), "cgroup {} missing", cg.display());
    b.ok(&["start", &id]);
    assert_eq!(b.state_of(&id)["status"], "running");
    // start twice is refused.
    assert!(!b.rt(&["start", &id]).status.success());
    // delete of a running container without --force is refused.
    let o = b.rt(&["delete", &id]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("running"));
    b.ok(&["kill", &id, "KILL"]);
    b.wait_stopped(&id);
    assert_eq!(b.state_of(&id)["pid"], 0);
    b.ok(&["delete", &id]);
    assert!(!b.state.join(&id).exists(), "state dir left behind");
    for c in [
        "memory", "cpu", "pids", "freezer", "devices", "cpuset", "blkio",
    ] {
        assert!(
            !cgroup_dir(c, &format!("/carapace/{id}")).exists(),
            "{c} cgroup left behind"
        );
    }
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists() || !common_alive(pid as i32));
    // Deleting again: the container does not exist.
    let o = b.rt(&["delete", &id]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not exist"));
}

fn common_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

#[test]
fn exec_joins_every_namespace_of_the_container() {
    let b = Bundle::new("exec", &["sleep", "1000"]);
    let id = b.id("c");
    let pid = b.start_detached(&id);
    let out = b.ok(&[
        "exec",
        &id,
        "sh",
        "-c",
        "for n in ipc mnt net pid uts; do echo $n $(readlink /proc/self/ns/$n); done; echo me=$$",
    ]);
    for n in ["ipc", "mnt", "net", "pid", "uts"] {
        let init_ns = std::fs::read_link(format!("/proc/{pid}/ns/{n}")).expect("ns link");
        assert!(
            out.contains(&format!("{n} {}", init_ns.display())),
            "{n}: {out}"
        );
    }
    assert!(!out.contains("me=1\n"), "exec must not be pid 1: {out}");
    let o = b.rt(&["exec", &id, "sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7));
    let o = b.rt(&["exec", &id, "no-such-binary"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no-such-binary"));
    b.destroy(&id);
}

/// An exec that cannot join the container's cgroup fails with the reason
/// and returns: its namespace-joining child, still waiting for the
/// go-ahead, must see the channel close (it once kept `exec` waiting for
/// it forever, with SIGTERM blocked for forwarding).
#[test]
fn exec_that_cannot_join_the_cgroup_fails_and_returns() {
    let b = Bundle::new("execcg", &["sleep", "1000"]);
    let id = b.id("c");
    b.start_detached(&id);
    let state_file = b.state.join(&id).join("state.json");
    let saved = std::fs::read(&state_file).expect("read state.json");
    let mut st: serde_json::Value = serde_json::from_slice(&saved).expect("state json");
    st["cgroup_path"] = json!(format!("/carapace-test-gone/{id}"));
    std::fs::write(&state_file, st.to_string()).expect("write state.json");
    let err = b.path().join("execcg.err");
    let mut child = b
        .cmd()
        .args(["exec", &id, "true"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("spawn exec");
    let status = common::wait_bounded(&mut child, std::time::Duration::from_secs(60));
    let msg = std::fs::read_to_string(&err).unwrap_or_default();
    std::fs::write(&state_file, &saved).expect("restore state.json");
    b.destroy(&id);
    let status = status.expect("exec did not return within 60 s");
    assert!(!status.success(), "exec succeeded outside its cgroup");
    assert!(msg.contains("carapace-test-gone"), "{msg}");
}

#[test]
fn joined_network_namespace_is_really_shared() {
    let b = Bundle::new("joinns", &["sleep", "1000"]);
    let a = b.id("a");
    let pid_a = b.start_detached(&a);
    let mut b2 = Bundle::new("joinns2", &["readlink", "/proc/self/ns/net"]);
    let nss = b2.config["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces");
    for n in nss.iter_mut() {
        if n["type"] == "network" {
            n["path"] = json!(format!("/proc/{pid_a}/ns/net"));
        }
    }
    b2.write();
    let (code, out, err) = b2.run(&b2.id("b"));
    assert_eq!(code, 0, "{err}");
    let want = std::fs::read_link(format!("/proc/{pid_a}/ns/net")).expect("ns");
    assert_eq!(out.trim(), want.to_str().expect("utf8"));
    b.destroy(&a);
}

/// Mount points at or below `dir` in our mount namespace.
fn mounts_below(dir: &std::path::Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let dir = dir.to_str().expect("utf8");
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(dir))
        .map(str::to_string)
        .collect()
}

/// A spec that lists no mount namespace inherits the runtime's, as the
/// runtime spec says (runtime-tools linux_ns_itype; refused before): the
/// container runs chrooted in its rootfs, exec enters that root too, and
/// delete unmounts what the init mounted in our namespace.
#[test]
fn a_container_without_a_mount_namespace_shares_ours_and_delete_unmounts() {
    let mut b = Bundle::new("nomntns", &["sleep", "1000"]);
    let rootfs = b.private_rootfs();
    std::fs::write(rootfs.join("marker"), "inside").expect("plant marker");
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
        .retain(|n| n["type"] != "mount");
    b.write();
    let id = b.id("c");
    let pid = b.start_detached(&id);
    let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/mnt")).expect("mnt ns");
    assert_eq!(ns(&pid.to_string()), ns("self"), "not our mount namespace");
    let root = std::fs::read_link(format!("/proc/{pid}/root")).expect("root");
    assert_eq!(root, rootfs.canonicalize().expect("rootfs"));
    assert!(
        mounts_below(&rootfs).iter().any(|m| m.ends_with("/proc")),
        "the container's /proc is not mounted below its rootfs"
    );
    let out = b.ok(&["exec", &id, "cat", "/marker"]);
    assert_eq!(out, "inside", "exec did not enter the container's root");
    b.ok(&["delete", "--force", &id]);
    let left = mounts_below(&rootfs);
    assert!(left.is_empty(), "delete left mounts: {left:?}");
}

/// A mount namespace given by path is joined and set up like one of the
/// container's own (runtime-tools linux_ns_path, mnt).
#[test]
fn a_mount_namespace_given_by_path_is_joined() {
    let holder = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sleep", "1000"])
        .spawn()
        .expect("unshare (util-linux)");
    let path = format!("/proc/{}/ns/mnt", holder.id());
    // unshare execs sleep once the namespace is made.
    for _ in 0..500 {
        if std::fs::read_link(&path).ok() != std::fs::read_link("/proc/self/ns/mnt").ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let want = std::fs::read_link(&path).expect("holder's mnt ns");
    assert_ne!(
        Some(&want),
        std::fs::read_link("/proc/self/ns/mnt").ok().as_ref(),
        "unshare did not make a mount namespace: the test would prove nothing"
    );
    let mut b = Bundle::new("joinmnt", &["readlink", "/proc/self/ns/mnt"]);
    for n in b.config["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
    {
        if n["type"] == "mount" {
            n["path"] = json!(path);
        }
    }
    b.write();
    let (code, out, err) = b.run(&b.id("c"));
    let mut holder = holder;
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), want.to_str().expect("utf8"));
}

/// `start` returns, and runs the poststart hooks, only once the
/// container's program is executing (runtime spec; runtime-tools
/// poststart): the hook finds the init's command line already the
/// program's, no longer the runtime's.
#[test]
fn poststart_hooks_run_once_the_program_executes() {
    let mut b = Bundle::new("poststart", &["sleep", "1000"]);
    let out = b.path().join("seen");
    let script = format!(
        "pid=$(sed 's/.*\"pid\":\\([0-9]*\\).*/\\1/'); tr '\\0' ' ' < /proc/$pid/cmdline > {}",
        out.display()
    );
    // A slow startContainer hook (run by the init, in the container, right
    // before the execve) opens the window a `start` that returned early
    // would show.
    b.config["hooks"] = json!({
        "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "sleep 0.3"]}],
        "poststart": [{"path": "/bin/sh", "args": ["sh", "-c", script]}]
    });
    let id = b.id("c");
    for _ in 0..2 {
        b.start_detached(&id);
        let seen = std::fs::read_to_string(&out).expect("the hook ran");
        assert_eq!(
            seen.trim(),
            "sleep 1000",
            "poststart ran before the program"
        );
        b.destroy(&id);
    }
}

/// `rootfsPropagation: unbindable` holds for the container's `/` itself
/// (runtime-tools linux_rootfs_propagation; it was private).
#[test]
fn an_unbindable_rootfs_propagation_holds_for_the_new_root() {
    let mut b = Bundle::new(
        "unbindable",
        &["sh", "-c", "awk '$5 == \"/\"' /proc/self/mountinfo"],
    );
    b.config["linux"]["rootfsPropagation"] = json!("unbindable");
    b.write();
    let (code, out, err) = b.run(&b.id("c"));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(" unbindable "),
        "the root mount is not unbindable: {out}"
    );
}

#[test]
fn bad_input_fails_with_one_line_and_leaves_nothing() {
    let mut b = Bundle::new("badinput", &["true"]);
    let id = b.id("c");
    // Unknown container.
    for args in [
        vec!["state", "nope"],
        vec!["start", "nope"],
        vec!["kill", "nope", "KILL"],
        vec!["delete", "nope"],
    ] {
        let o = b.rt(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("does not exist"), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    // Invalid ID.
    let o = b.rt(&[
        "create",
        "--bundle",
        b.path().to_str().expect("utf8"),
        "../escape",
    ]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid container id"));
    // Bad signal.
    let pid_id = b.id("sig");
    b.config["process"]["args"] = json!(["sleep", "100"]);
    b.start_detached(&pid_id);
    let o = b.rt(&["kill", &pid_id, "SIGNOPE"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid signal"));
    // Duplicate ID.
    let o = b.rt(&[
        "create",
        "--bundle",
        b.path().to_str().expect("utf8"),
        &pid_id,
    ]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already exists"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    b.destroy(&pid_id);
    // Broken config.json.
    std::fs::write(b.path().join("config.json"), "{not json").expect("write");
    let o = b
        .cmd()
        .args(["create", "--bundle", b.path().to_str().expect("utf8"), &id])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("config.json"));
    assert!(!b.state.join(&id).exists());
    // Missing rootfs.
    b.config["root"]["path"] = json!("/nonexistent/rootfs");
    let o = b.rt(&["create", "--bundle", b.path().to_str().expect("utf8"), &id]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/rootfs"));
    assert!(!b.state.join(&id).exists());
    // Missing program: create fails, nothing is left (no state, no cgroup).
    b.config["root"]["path"] = json!(common::shared_rootfs());
    b.config["process"]["args"] = json!(["/bin/does-not-exist"]);
    let o = b.rt(&["create", "--bundle", b.path().to_str().expect("utf8"), &id]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("does-not-exist"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!b.state.join(&id).exists(), "state left behind");
    assert!(
        !cgroup_dir("memory", &format!("/carapace/{id}")).exists(),
        "cgroup left behind"
    );
}

#[test]
fn state_and_list_are_runc_shaped() {
    let b = Bundle::new("statelist", &["sleep", "1000"]);
    let id = b.id("c");
    b.start_detached(&id);
    let st = b.state_of(&id);
    for k in [
        "ociVersion",
        "id",
        "pid",
        "status",
        "bundle",
        "rootfs",
        "created",
    ] {
        assert!(st.get(k).is_some(), "missing {k} in {st}");
    }
    let list: serde_json::Value =
        serde_json::from_str(&b.ok(&["list", "--format", "json"])).expect("json");
    assert_eq!(list.as_array().map(|a| a.len()), Some(1));
    let pids: Vec<i32> =
        serde_json::from_str(&b.ok(&["ps", "--format", "json", &id])).expect("ps json");
    assert_eq!(pids, vec![st["pid"].as_i64().expect("pid") as i32]);
    b.destroy(&id);
}

#[test]
fn foreground_run_forwards_signals_and_returns_the_exit_code() {
    let b = Bundle::new(
        "fwd",
        &[
            "sh",
            "-c",
            "trap 'exit 3' TERM; touch /dev/shm/ready; sleep 100 & wait",
        ],
    );
    let id = b.id("c");
    let mut child = b
        .cmd()
        .args(["run", "--bundle", b.path().to_str().expect("utf8"), &id])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn run");
    // Wait until the container's shell has installed its trap (it says so
    // with a file we see through /proc/PID/root), then signal the runtime.
    let mut ready = false;
    for _ in 0..1000 {
        let o = b.rt(&["state", &id]);
        let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        if let Some(pid) = st["pid"].as_i64().filter(|p| *p > 0) {
            if std::path::Path::new(&format!("/proc/{pid}/root/dev/shm/ready")).exists() {
                ready = true;
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(ready, "container never became ready");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("kill");
    let status = child.wait().expect("wait");
    assert_eq!(
        status.code(),
        Some(3),
        "SIGTERM not forwarded to the container"
    );
    // `run` deleted the container after it exited.
    assert!(!b.state.join(&id).exists());
}

#[test]
fn container_process_starts_with_no_blocked_signals() {
    // A foreground `run` blocks the signals it forwards; none of that may
    // leak into the container's process.
    let b = Bundle::new("sigmask", &["grep", "SigBlk", "/proc/self/status"]);
    let (code, out, err) = b.run(&b.id("c"));
    assert_eq!(code, 0, "{err}");
    let mask = out.split_whitespace().nth(1).expect("mask");
    assert_eq!(u64::from_str_radix(mask, 16).expect("hex"), 0, "{out}");
}

#[test]
fn kill_all_reaches_processes_that_outlive_a_stopped_init() {
    // No PID namespace of its own: the init's children survive it.
    let mut b = Bundle::new("killall", &["sh", "-c", "sleep 1000 & sleep 1000"]);
    let ns: Vec<serde_json::Value> = b.config["linux"]["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .filter(|n| n["type"] != "pid")
        .cloned()
        .collect();
    b.config["linux"]["namespaces"] = serde_json::json!(ns);
    let id = b.id("c");
    b.ok(&["create", "--bundle", b.path().to_str().expect("utf8"), &id]);
    let _cleanup = ForceDelete(&b, id.clone());
    b.ok(&["start", &id]);
    let procs = cgroup_dir("pids", &format!("/carapace/{id}")).join("cgroup.procs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let read_pids = || -> Vec<i32> {
        std::fs::read_to_string(&procs)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    };
    // busybox sh execs its last command: the init and the background sleep.
    while read_pids().len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "children never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let init = b.state_of(&id)["pid"].as_i64().expect("pid") as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(init),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill init");
    b.wait_stopped(&id);
    let left: Vec<i32> = read_pids()
        .into_iter()
        .filter(|p| common_alive(*p))
        .collect();
    assert!(
        !left.is_empty(),
        "nothing outlived the init: the test proves nothing"
    );
    // As runc: `kill --all` still signals them through the cgroup.
    b.ok(&["kill", "--all", &id, "KILL"]);
    while read_pids().iter().any(|p| common_alive(*p)) {
        assert!(
            std::time::Instant::now() < deadline,
            "kill --all left {:?}",
            read_pids()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // Without --all a stopped container is refused, as runc does.
    assert!(!b.rt(&["kill", &id, "KILL"]).status.success());
    b.ok(&["delete", &id]);
}

/// Deletes a container with --force when a test ends, passed or failed, so
/// a failure leaves no process or cgroup behind.
struct ForceDelete<'a>(&'a Bundle, String);

impl Drop for ForceDelete<'_> {
    fn drop(&mut self) {
        let _ = self.0.rt(&["delete", "--force", &self.1]);
    }
}
