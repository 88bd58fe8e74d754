//! Security behaviour of real containers: capabilities, read-only rootfs,
//! masked and read-only paths, user namespaces, seccomp, oom_score_adj,
//! and attempts at the known runtime escapes, which must fail.

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use common::Bundle;
use serde_json::json;

fn status_field(out: &str, key: &str) -> u64 {
    let line = out
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("{key} missing in {out}"));
    u64::from_str_radix(line.split_whitespace().nth(1).expect("value"), 16).expect("hex")
}

#[test]
fn capabilities_are_exactly_the_configured_sets() {
    let mut b = Bundle::new("caps", &["grep", "^Cap", "/proc/self/status"]);
    let set = json!(["CAP_NET_BIND_SERVICE", "CAP_CHOWN"]);
    b.config["process"]["capabilities"] = json!({
        "bounding": set, "effective": set, "permitted": set, "inheritable": [], "ambient": []
    });
    b.write();
    let (code, out, err) = b.run(&b.id("c"));
    assert_eq!(code, 0, "{err}");
    let want = (1u64 << 10) | 1; // NET_BIND_SERVICE (10) + CHOWN (0)
    assert_eq!(status_field(&out, "CapEff:"), want, "{out}");
    assert_eq!(status_field(&out, "CapPrm:"), want, "{out}");
    assert_eq!(status_field(&out, "CapBnd:"), want, "{out}");
    assert_eq!(status_field(&out, "CapInh:"), 0, "{out}");
    assert_eq!(status_field(&out, "CapAmb:"), 0, "{out}");
}

#[test]
fn non_root_user_and_groups_are_applied() {
    let mut b = Bundle::new("user", &["sh", "-c", "id -u; id -g; id -G; umask"]);
    b.config["process"]["user"] =
        json!({"uid": 33, "gid": 33, "additionalGids": [44, 55], "umask": 23});
    b.write();
    let (code, out, err) = b.run(&b.id("c"));
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "33");
    assert_eq!(lines[1], "33");
    assert!(lines[2].contains("44") && lines[2].contains("55"), "{out}");
    assert_eq!(lines[3], "0027");
}

#[test]
fn readonly_rootfs_masked_and_readonly_paths() {
    let mut b = Bundle::new("ro", &["sh", "-c", "touch /newfile 2>&1; echo rc=$?; wc -c < /proc/kcore; ls /proc/acpi 2>&1 | wc -l; echo 1 > /proc/sys/kernel/domainname 2>&1; echo sys=$?"]);
    b.config["root"]["readonly"] = json!(true);
    b.config["linux"]["maskedPaths"] = json!(["/proc/kcore", "/proc/acpi", "/does/not/exist"]);
    b.config["linux"]["readonlyPaths"] = json!(["/proc/sys"]);
    b.write();
    let (code, out, err) = b.run(&b.id("c"));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Read-only file system"),
        "rootfs writable: {out}"
    );
    assert!(!out.contains("rc=0"), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.contains(&"0"), "kcore not masked: {out}");
    assert!(
        out.contains("sys=1") || out.contains("Read-only"),
        "/proc/sys writable: {out}"
    );
    assert!(!common::shared_rootfs().join("newfile").exists());
}

#[test]
fn user_namespace_maps_ids() {
    let mut b = Bundle::new(
        "userns",
        &[
            "sh",
            "-c",
            "cat /proc/self/uid_map /proc/self/gid_map; id -u",
        ],
    );
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .expect("ns")
        .push(json!({"type": "user"}));
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.write();
    let id = b.id("c");
    let (code, out, err) = b.run(&id);
    assert_eq!(code, 0, "stderr: {err}");
    let maps: Vec<Vec<&str>> = out
        .lines()
        .take(2)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(maps[0], vec!["0", "100000", "65536"], "{out}");
    assert_eq!(maps[1], vec!["0", "100000", "65536"], "{out}");
    assert_eq!(out.lines().nth(2), Some("0"));
    // Without mappings a new user namespace is refused up front.
    b.config["linux"]["uidMappings"] = json!([]);
    b.write();
    let (code, _, err) = b.run(&b.id("nomap"));
    assert_ne!(code, 0);
    assert!(err.contains("uidMappings"), "{err}");
}

#[test]
fn seccomp_denies_the_configured_syscall() {
    let mut b = Bundle::new(
        "seccomp",
        &[
            "sh",
            "-c",
            "mkdir /dev/sc-test 2>&1; echo rc=$?; echo still-alive",
        ],
    );
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    });
    b.write();
    let (code, out, err) = b.run(&b.id("c"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Operation not permitted"), "{out}");
    assert!(out.contains("rc=1"), "{out}");
    // Same with no_new_privs (the filter is then loaded right before exec).
    b.config["process"]["noNewPrivileges"] = json!(true);
    b.write();
    let (code, out, err) = b.run(&b.id("nnp"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Operation not permitted"), "{out}");
    // An unknown action is a config error reported by create.
    b.config["linux"]["seccomp"]["defaultAction"] = json!("SCMP_ACT_BOGUS");
    b.write();
    let (code, _, err) = b.run(&b.id("bad"));
    assert_ne!(code, 0);
    assert!(err.contains("config") || err.contains("seccomp"), "{err}");
}

#[test]
fn oom_score_adj_is_clamped_without_cap_sys_resource() {
    let mut b = Bundle::new("oomadj", &["cat", "/proc/self/oom_score_adj"]);
    b.config["process"]["oomScoreAdj"] = json!(-999);
    b.write();
    let log = b.path().join("log.json");
    let o = b.rt(&[
        "--log",
        log.to_str().expect("utf8"),
        "--log-format",
        "json",
        "run",
        "--bundle",
        b.path().to_str().expect("utf8"),
        &b.id("c"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got: i32 = String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .expect("number");
    let have_sys_resource = caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_SYS_RESOURCE,
    )
    .expect("caps");
    if have_sys_resource {
        assert_eq!(got, -999);
    } else {
        let ours: i32 = std::fs::read_to_string("/proc/self/oom_score_adj")
            .expect("read")
            .trim()
            .parse()
            .expect("num");
        assert_eq!(got, ours.max(-999), "clamped to the caller's value");
        let l = std::fs::read_to_string(&log).expect("log");
        assert!(
            l.contains("\"level\":\"warning\"") && l.contains("oom_score_adj"),
            "{l}"
        );
    }
    // A value above the caller's is always honoured exactly.
    b.config["process"]["oomScoreAdj"] = json!(500);
    b.write();
    let (code, out, _) = b.run(&b.id("up"));
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "500");
}

/// CVE-2021-30465 class: a symlink planted in the image must not redirect a
/// mount outside the rootfs.
#[test]
fn mount_through_symlink_stays_inside_rootfs() {
    let mut b = Bundle::new(
        "symlinkmnt",
        &["sh", "-c", "ls /evil/ >/dev/null; echo done"],
    );
    let rootfs = b.private_rootfs();
    let outside = tempfile::tempdir().expect("outside");
    std::fs::write(outside.path().join("keep"), "host data").expect("write");
    symlink(outside.path(), rootfs.join("evil")).expect("abs symlink");
    symlink("../../../../../../../..", rootfs.join("up")).expect("rel symlink");
    b.config["mounts"].as_array_mut().expect("mounts").push(
        json!({"destination": "/evil", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]}),
    );
    b.config["mounts"]
        .as_array_mut()
        .expect("mounts")
        .push(json!({"destination": "/up/etc-over", "type": "tmpfs", "source": "tmpfs"}));
    b.write();
    let (code, out, err) = b.run(&b.id("c"));
    // Whether the runtime refuses or mounts inside, the host is untouched.
    assert!(code == 0 || !err.is_empty(), "{out}{err}");
    assert_eq!(
        std::fs::read_to_string(outside.path().join("keep")).expect("host file"),
        "host data"
    );
    assert!(
        !std::path::Path::new("/etc-over").exists(),
        "mount target created on the host"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mounts.contains(outside.path().to_str().expect("utf8")),
        "mount landed on the host path"
    );
}

/// CVE-2024-21626 class: an fd the caller leaks to the runtime (here a host
/// directory) must not reach the container, even as its cwd.
#[test]
fn leaked_host_fd_does_not_reach_the_container() {
    let host_dir = std::fs::File::open("/").expect("open /");
    let raw = host_dir.as_raw_fd();
    // Clear CLOEXEC so the runtime really inherits it.
    nix::fcntl::fcntl(
        &host_dir,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .expect("fcntl");
    let mut b = Bundle::new(
        "fdleak",
        &["sh", "-c", "ls /proc/self/fd; echo ---; ls /proc/1/fd"],
    );
    b.write();
    let (code, out, err) = b.run(&b.id("c"));
    assert_eq!(code, 0, "{err}");
    for l in out.lines().filter(|l| *l != "---") {
        let n: i32 = l.trim().parse().unwrap_or(0);
        assert!(n <= 3, "fd {n} leaked into the container: {out}");
    }
    // As cwd: /proc/self/fd/N of the leaked fd must not become the cwd.
    b.config["process"]["cwd"] = json!(format!("/proc/self/fd/{raw}"));
    b.config["process"]["args"] = json!(["sh", "-c", "pwd; ls"]);
    b.write();
    let (code, out, _) = b.run(&b.id("cwd"));
    assert!(
        code != 0 || !out.contains("work"),
        "host root reached through a leaked fd: {out}"
    );
    drop(host_dir);
}

/// CVE-2019-5736 class: a process in the container must not be able to
/// overwrite the runtime binary through /proc/PID/exe of the runtime's
/// processes (here the created container's init, before `start`).
#[test]
fn container_cannot_overwrite_the_runtime_binary() {
    let bin = common::runtime_bin();
    let before = std::fs::read(&bin).expect("read runtime");
    let mut b = Bundle::new("exeattack", &["true"]);
    // Give the attacker every capability we have (a privileged container).
    let all: Vec<String> = caps::read(None, caps::CapSet::Permitted)
        .expect("caps")
        .iter()
        .map(|c| c.to_string())
        .collect();
    b.config["process"]["capabilities"] =
        json!({"bounding": all, "effective": all, "permitted": all});
    b.write();
    let id = b.id("c");
    b.ok(&["create", "--bundle", b.path().to_str().expect("utf8"), &id]);
    // The init (PID 1 in the container) is still the runtime: attack it.
    let out = b.rt(&["exec", &id, "sh", "-c", "readlink /proc/1/exe; echo pwned > /proc/1/exe && echo WROTE; cat /proc/1/exe > /dev/null && echo READ"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("WROTE"),
        "container wrote through /proc/1/exe: {text}"
    );
    // The init's exe is a protected copy (a sealed memfd, or the file on a
    // detached read-only overlay: another device), never the host binary,
    // and even host root cannot open it for writing.
    let pid = b.state_of(&id)["pid"].as_i64().expect("pid");
    let exe = format!("/proc/{pid}/exe");
    let (m_exe, m_bin) = (
        std::fs::metadata(&exe).expect("stat exe"),
        std::fs::metadata(&bin).expect("stat bin"),
    );
    use std::os::unix::fs::MetadataExt;
    assert_ne!(
        (m_exe.dev(), m_exe.ino()),
        (m_bin.dev(), m_bin.ino()),
        "the init runs the host binary itself"
    );
    assert!(
        std::fs::OpenOptions::new().write(true).open(&exe).is_err(),
        "{exe} is writable"
    );
    assert_eq!(
        std::fs::read(&bin).expect("read runtime"),
        before,
        "runtime binary changed"
    );
    b.destroy(&id);
}

/// The shim runs the runtime from a read-only overlay copy
/// (`carapace_exe::overlay_copy`) so that it need not re-execute itself
/// from one: started so, it does not; started from the plain file, it
/// does (what the init then runs from: the test above).
#[test]
fn a_runtime_started_from_a_protected_copy_runs_the_command_itself() {
    let bin = std::fs::canonicalize(common::runtime_bin()).expect("canonical runtime");
    let copy = carapace_exe::overlay_copy(&bin).expect("overlay copy of the runtime");
    let b = Bundle::new("protected", &["echo", "ran"]);
    b.write();
    let bundle = b.path().to_str().expect("utf8").to_string();
    let run = |exe: &Path, id: &str| -> String {
        let log = b.path().join(format!("{id}.log"));
        let out = std::process::Command::new(exe)
            .args([
                "--root",
                b.state.to_str().expect("utf8"),
                "--debug",
                "--log",
            ])
            .arg(&log)
            .args(["run", "--bundle", &bundle, id])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run the runtime");
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("ran"),
            "{}: {}{}",
            exe.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(&log).unwrap_or_default()
    };
    let fd_path = PathBuf::from(format!("/proc/self/fd/{}", copy.as_raw_fd()));
    let log = run(&fd_path, &b.id("copy"));
    assert!(
        !log.contains("re-executing"),
        "re-executed from a protected copy: {log}"
    );
    let log = run(&bin, &b.id("plain"));
    assert!(
        log.contains("re-executing"),
        "no re-exec from the plain binary: {log}"
    );
}

/// The program starts with every signal at its default action and none
/// blocked. The runtime ignores SIGPIPE (as every Rust program does at
/// start) and execve keeps ignored signals ignored: without the reset a
/// container's `yes | head` never ends.
#[test]
fn the_program_starts_with_default_signal_actions() {
    let b = Bundle::new(
        "signals",
        &[
            "sh",
            "-c",
            "grep -E '^Sig(Ign|Blk)' /proc/self/status; yes | head -c 3",
        ],
    );
    b.write();
    let (code, out, err) = b.run(&b.id("c"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(status_field(&out, "SigIgn:"), 0, "{out}");
    assert_eq!(status_field(&out, "SigBlk:"), 0, "{out}");
    assert!(out.ends_with("y\ny"), "{out}");
}

/// A profile that lets everything through but mkdir, which fails with EPERM.
fn deny_mkdir_profile() -> serde_json::Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    })
}

/// What an exec'd shell prints to show its filter: the Seccomp mode of
/// /proc/self/status and whether mkdir was refused.
const SHOW_FILTER: &str =
    "grep Seccomp: /proc/self/status; mkdir /tmp/sc-$$ 2>/dev/null; echo mkdir-rc=$?";

fn assert_filtered(what: &str, out: &str) {
    assert!(
        out.lines()
            .any(|l| l.starts_with("Seccomp:") && l.trim_end().ends_with('2')),
        "{what}: no seccomp filter: {out}"
    );
    assert!(
        out.contains("mkdir-rc=1"),
        "{what}: mkdir was not refused: {out}"
    );
}

/// Receive the pty master a `--console-socket` listener gets.
fn recv_master(listener: &std::os::unix::net::UnixListener) -> std::fs::File {
    use std::os::fd::FromRawFd;
    let (conn, _) = listener.accept().expect("accept");
    let mut buf = [0u8; 256];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let msg = nix::sys::socket::recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        nix::sys::socket::MsgFlags::empty(),
    )
    .expect("recvmsg");
    for c in msg.cmsgs().expect("cmsgs") {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
            let fd = *fds.first().expect("an fd");
            // SAFETY: the fd was just received over SCM_RIGHTS and is ours.
            return unsafe { std::fs::File::from_raw_fd(fd) };
        }
    }
    panic!("no fd received on the console socket");
}

/// Every process the runtime starts in a container carries the container's
/// seccomp filter: the init and every exec, with a terminal or without,
/// whether or not the process has no_new_privs (with it the filter is
/// loaded last, right before exec: it used to be forgotten on exec).
#[test]
fn every_exec_carries_the_container_seccomp_filter() {
    use std::io::Read;
    for nnp in [false, true] {
        let mut b = Bundle::new(&format!("execsc-{nnp}"), &["sleep", "1000"]);
        b.config["linux"]["seccomp"] = deny_mkdir_profile();
        b.config["process"]["noNewPrivileges"] = json!(nnp);
        b.write();
        let id = b.id("c");
        let pid = b.start_detached(&id);
        let init = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("init status");
        assert!(
            init.lines()
                .any(|l| l.starts_with("Seccomp:") && l.ends_with('2')),
            "nnp={nnp}: init unfiltered: {init}"
        );
        let out = b.ok(&["exec", &id, "sh", "-c", SHOW_FILTER]);
        assert_filtered(&format!("exec nnp={nnp}"), &out);
        let out = b.ok(&["exec", "--no-new-privs", &id, "sh", "-c", SHOW_FILTER]);
        assert_filtered(&format!("exec --no-new-privs (container nnp={nnp})"), &out);

        let sock = b.path().join("exec-console.sock");
        let _ = std::fs::remove_file(&sock);
        let listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
        let o = b.rt(&[
            "exec",
            "--tty",
            "--detach",
            "--console-socket",
            sock.to_str().expect("utf8"),
            &id,
            "sh",
            "-c",
            &format!("{SHOW_FILTER}; echo tty-done; sleep 1"),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let mut master = recv_master(&listener);
        let mut out = String::new();
        let mut chunk = [0u8; 512];
        while !out.contains("tty-done") {
            match master.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.push_str(&String::from_utf8_lossy(&chunk[..n])),
            }
        }
        assert_filtered(&format!("exec --tty nnp={nnp}"), &out.replace('\r', ""));
        b.destroy(&id);
    }
}

/// The init stays non-dumpable from setup until it execs the program:
/// between create and start a process of the container's uid must not be
/// able to ptrace it (its /proc/PID entries then belong to root). The
/// program itself, exec'd without privilege change, is dumpable again.
#[test]
fn init_is_not_dumpable_between_create_and_start() {
    use std::os::unix::fs::MetadataExt;
    let mut b = Bundle::new("dumpable", &["sleep", "1000"]);
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    b.write();
    let id = b.id("c");
    let o = b.rt(&["create", "--bundle", b.path().to_str().expect("utf8"), &id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let pid = b.state_of(&id)["pid"].as_i64().expect("pid");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    assert!(
        status.contains("Uid:\t1000"),
        "identity not set yet: {status}"
    );
    let owner = std::fs::metadata(format!("/proc/{pid}/status"))
        .expect("stat")
        .uid();
    assert_eq!(
        owner, 0,
        "the created init is dumpable (its /proc is uid {owner}'s)"
    );
    b.ok(&["start", &id]);
    let mut owner = 0;
    for _ in 0..200 {
        owner = std::fs::metadata(format!("/proc/{pid}/status"))
            .expect("stat")
            .uid();
        if owner == 1000 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(owner, 1000, "the started program should be dumpable");
    b.destroy(&id);
}

/// CVE-2019-16884 class after symlink resolution: the image has
/// `/p -> /proc`, and a mount at `/p/self/oom_score_adj` would land on
/// procfs. The lexical check passes it; the resolved target is refused, as
/// runc's checkProcMount does, and nothing is left behind.
#[test]
fn mount_over_proc_through_an_image_symlink_is_refused() {
    for (which, mount) in [
        (
            "bind",
            json!({"destination": "/p/self/oom_score_adj", "type": "bind", "options": ["bind"]}),
        ),
        (
            "tmpfs",
            json!({"destination": "/p/sys/kernel", "type": "tmpfs", "source": "tmpfs"}),
        ),
    ] {
        let mut b = Bundle::new(&format!("procsym-{which}"), &["true"]);
        let rootfs = b.private_rootfs();
        symlink("/proc", rootfs.join("p")).expect("symlink");
        let mut mount = mount;
        if which == "bind" {
            let src = b.path().join("fake");
            std::fs::write(&src, "-1000").expect("fake");
            mount["source"] = json!(src);
        }
        b.config["mounts"]
            .as_array_mut()
            .expect("mounts")
            .push(mount);
        b.write();
        let id = b.id("c");
        let (code, out, err) = b.run(&id);
        assert_ne!(code, 0, "{which} mount over procfs accepted: {out}{err}");
        assert!(err.contains("procfs"), "{which}: {err}");
        assert!(
            !b.rt(&["state", &id]).status.success(),
            "{which}: a failed create left the container behind"
        );
    }
    // A symlink to a directory that is not /proc still works.
    let mut b = Bundle::new(
        "procsym-ok",
        &[
            "sh",
            "-c",
            "grep -q ' /data/t ' /proc/self/mountinfo && echo mounted",
        ],
    );
    let rootfs = b.private_rootfs();
    std::fs::create_dir_all(rootfs.join("data")).expect("mkdir");
    symlink("/data", rootfs.join("d")).expect("symlink");
    b.config["mounts"]
        .as_array_mut()
        .expect("mounts")
        .push(json!({"destination": "/d/t", "type": "tmpfs", "source": "tmpfs"}));
    b.write();
    let (code, out, err) = b.run(&b.id("c"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("mounted"), "{out}{err}");
}

/// A spec with sysctls and a read-only /proc/sys (containerd puts the pod's
/// sysctls into every container spec, and CRI-O's and containerd's specs
/// make /proc/sys read-only) must get its sysctls: they are written before
/// the read-only paths are applied.
#[test]
fn sysctls_apply_before_readonly_paths() {
    let mut b = Bundle::new(
        "sysctlro",
        &[
            "sh",
            "-c",
            "cat /proc/sys/kernel/shmmni; echo 1 > /proc/sys/kernel/shmmni 2>/dev/null; echo rc=$?",
        ],
    );
    b.config["linux"]["sysctl"] = json!({"kernel.shmmni": "1234"});
    b.config["linux"]["readonlyPaths"] = json!(["/proc/sys"]);
    b.write();
    let (code, out, err) = b.run(&b.id("c"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().next(), Some("1234"), "{out}");
    assert!(out.contains("rc=1"), "/proc/sys stayed writable: {out}");
}

/// A seccomp profile older than close_range (most before 2020, the OCI
/// validation suite's own) makes it fail with EPERM inside the init: the
/// fds are then marked close-on-exec by walking /proc/self/fd, as runc
/// and crun do, instead of the container never starting. Both with the
/// filter loaded early (no no_new_privs) and last (no_new_privs).
#[test]
fn a_profile_without_close_range_still_starts_the_container() {
    for nnp in [false, true] {
        let mut b = Bundle::new(&format!("closerange-{nnp}"), &["sh", "-c", "echo started"]);
        b.config["process"]["noNewPrivileges"] = json!(nnp);
        b.config["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": ["close_range"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        });
        b.write();
        let (code, out, err) = b.run(&b.id("c"));
        assert_eq!(code, 0, "nnp={nnp}: {err}");
        assert!(out.contains("started"), "nnp={nnp}: {out}{err}");
    }
}

/// An unknown capability name fails create with a message naming it and
/// leaves no container behind (runtime-tools process_capabilities_fail;
/// runc accepts it).
#[test]
fn an_unknown_capability_fails_create_naming_it() {
    let mut b = Bundle::new("badcap", &["true"]);
    b.config["process"]["capabilities"]["bounding"] = json!(["CAP_CHOWN", "CAP_TEST"]);
    b.write();
    let id = b.id("c");
    let o = b.rt(&["create", "--bundle", b.path().to_str().expect("utf8"), &id]);
    assert!(!o.status.success(), "created with CAP_TEST");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("CAP_TEST"), "{err}");
    let o = b.rt(&["state", &id]);
    assert!(!o.status.success(), "a container is left behind");
}
