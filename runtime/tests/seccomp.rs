//! Seccomp filters in the real kernel: each test compiles a profile in the
//! test process, forks, loads the filter in the child and has the child
//! report what its syscalls returned through its exit status. The child only
//! makes raw syscalls (the test harness is multi-threaded, so it must not
//! allocate after fork). Needs root (CAP_SYS_ADMIN to load a filter without
//! no_new_privs, CAP_SYS_PTRACE for pidfd_getfd).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use carapace_runtime::seccomp::{compile, Filter};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use oci_spec::runtime::LinuxSeccomp;
use serde_json::json;

/// Exit code of a child whose `load()` failed.
const LOAD_FAILED: i32 = 200;

fn filter(profile: serde_json::Value) -> Filter {
    let p: LinuxSeccomp = serde_json::from_value(profile).expect("profile parses");
    compile(&p).expect("profile compiles")
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Fork; in the child load `f`, run `body` and exit with its result.
fn spawn(f: &Filter, body: impl FnOnce() -> i32) -> Pid {
    // SAFETY: the child only makes raw syscalls and exits.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            let code = match f.load() {
                Ok(()) => body(),
                Err(_) => LOAD_FAILED,
            };
            // SAFETY: leave without running the parent's atexit handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => child,
    }
}

fn wait(child: Pid) -> WaitStatus {
    waitpid(child, None).expect("waitpid")
}

fn exit_code(f: &Filter, body: impl FnOnce() -> i32) -> i32 {
    match wait(spawn(f, body)) {
        WaitStatus::Exited(_, code) => code,
        other => panic!("child did not exit: {other:?}"),
    }
}

fn mkdirat() -> i32 {
    // SAFETY: raw syscall with a static path.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mkdirat,
            libc::AT_FDCWD,
            c"/tmp/carapace-seccomp-test-never-created".as_ptr(),
            0o700,
        )
    };
    if r == 0 {
        -1
    } else {
        errno()
    }
}

fn socket(domain: i32, ty: i32) -> Result<(), i32> {
    // SAFETY: plain syscall; the fd is closed right away.
    let fd = unsafe { libc::socket(domain, ty, 0) };
    if fd < 0 {
        return Err(errno());
    }
    // SAFETY: fd was just opened.
    unsafe { libc::close(fd) };
    Ok(())
}

#[test]
fn mkdir_gets_errno_ret_and_other_syscalls_pass() {
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
    }));
    let code = exit_code(&f, || {
        // SAFETY: getpid cannot fail.
        if unsafe { libc::getpid() } <= 0 {
            return 1;
        }
        mkdirat()
    });
    assert_eq!(code, libc::ENOSYS);
}

#[test]
fn socket_is_denied_only_for_the_matching_family() {
    // Two conditions on arg 0: split into two rules, either one denies.
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 123,
                      "args": [{"index": 0, "value": libc::AF_PACKET, "op": "SCMP_CMP_EQ"},
                               {"index": 0, "value": libc::AF_NETLINK, "op": "SCMP_CMP_EQ"}]}]
    }));
    let code = exit_code(&f, || {
        if socket(libc::AF_UNIX, libc::SOCK_STREAM).is_err() {
            return 1;
        }
        match (
            socket(libc::AF_PACKET, libc::SOCK_RAW),
            socket(libc::AF_NETLINK, libc::SOCK_RAW),
        ) {
            (Err(123), Err(123)) => 0,
            _ => 2,
        }
    });
    assert_eq!(code, 0);
}

#[test]
fn conditions_on_different_arguments_must_all_match() {
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 123,
                      "args": [{"index": 0, "value": libc::AF_UNIX, "op": "SCMP_CMP_EQ"},
                               {"index": 1, "value": libc::SOCK_DGRAM, "op": "SCMP_CMP_EQ"}]}]
    }));
    let code = exit_code(&f, || {
        match (
            socket(libc::AF_UNIX, libc::SOCK_DGRAM),
            socket(libc::AF_UNIX, libc::SOCK_STREAM),
        ) {
            (Err(123), Ok(())) => 0,
            (Ok(()), _) => 1,
            _ => 2,
        }
    });
    assert_eq!(code, 0);
}

#[test]
fn allow_list_denies_the_rest_with_eperm_and_newer_syscalls_with_enosys() {
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["exit", "exit_group", "getpid", "close_range"], "action": "SCMP_ACT_ALLOW"}]
    }));
    let code = exit_code(&f, || {
        // SAFETY: getpid cannot fail.
        if unsafe { libc::getpid() } <= 0 {
            return 1;
        }
        if mkdirat() != libc::EPERM {
            return 2;
        }
        // Above the profile's highest syscall (close_range): ENOSYS, so
        // programs fall back as on an older kernel.
        // SAFETY: an unassigned syscall number.
        if unsafe { libc::syscall(1000) } != -1 || errno() != libc::ENOSYS {
            return 3;
        }
        0
    });
    assert_eq!(code, 0);
}

#[test]
fn kill_process_action_kills_with_sigsys() {
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL_PROCESS"}]
    }));
    let status = wait(spawn(&f, || {
        mkdirat();
        0
    }));
    assert!(
        matches!(status, WaitStatus::Signaled(_, Signal::SIGSYS, _)),
        "{status:?}"
    );
}

#[test]
fn loading_leaves_no_new_privs_unset_and_accepts_the_flags() {
    // SAFETY: a query.
    assert_eq!(
        unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) },
        0,
        "test runs with no_new_privs"
    );
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
    }));
    // SAFETY: a query.
    let code = exit_code(&f, || unsafe {
        libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)
    });
    assert_eq!(code, 0);
}

#[test]
fn notify_fd_lets_a_supervisor_answer_the_syscall() {
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": "/run/carapace-test-agent.sock",
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]
    }));
    let (rd, wr) = nix::unistd::pipe().expect("pipe");
    let child = spawn(&f, || {
        let Ok(Some(fd)) = f.notify_fd() else {
            return 1;
        };
        let bytes = fd.to_ne_bytes();
        // SAFETY: writes 4 bytes from a live buffer.
        if unsafe { libc::write(wr.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) } != 4 {
            return 2;
        }
        // Blocks until the supervisor answers.
        // SAFETY: plain syscall.
        match unsafe { libc::getppid() } {
            4242 => 0,
            _ => 3,
        }
    });
    drop(wr);
    let supervise = || -> Result<(), String> {
        let mut buf = [0u8; 4];
        nix::unistd::read(&rd, &mut buf).map_err(|e| format!("read the fd number: {e}"))?;
        let child_fd = i32::from_ne_bytes(buf);
        // SAFETY: raw syscalls; results checked.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.as_raw(), 0) };
        if pidfd < 0 {
            return Err(format!("pidfd_open: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: pidfd was just opened.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
        // SAFETY: raw syscall; result checked.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), child_fd, 0) };
        if fd < 0 {
            return Err(format!("pidfd_getfd: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: fd was just duplicated into this process.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let req = libseccomp::ScmpNotifReq::receive(fd.as_raw_fd())
            .map_err(|e| format!("receive: {e}"))?;
        let getppid = libseccomp::ScmpSyscall::from_name("getppid").expect("getppid");
        if req.data.syscall != getppid {
            return Err(format!("notified about {:?}", req.data.syscall));
        }
        libseccomp::ScmpNotifResp::new_val(req.id, 4242, libseccomp::ScmpNotifRespFlags::empty())
            .respond(fd.as_raw_fd())
            .map_err(|e| format!("respond: {e}"))
    };
    if let Err(e) = supervise() {
        let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
        let _ = wait(child);
        panic!("{e}");
    }
    assert_eq!(wait(child), WaitStatus::Exited(child, 0));
}
