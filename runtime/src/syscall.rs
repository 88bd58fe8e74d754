//! Thin, safe wrappers for the few system calls that neither `nix` nor `std`
//! offer. Each unsafe block is one syscall with its arguments checked here.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;

fn cstr(p: &Path) -> Result<CString, Errno> {
    CString::new(p.as_os_str().as_encoded_bytes()).map_err(|_| Errno::EINVAL)
}

fn check(ret: libc::c_long) -> Result<libc::c_long, Errno> {
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}

/// A pidfd lets us wait for and signal a process that is not our child
/// (the container init belongs to the shim) without pid-reuse races.
pub fn pidfd_open(pid: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_open takes a pid and flags; it returns a new fd we own.
    let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: the kernel just returned this fd to us and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Send a signal through a pidfd (no pid-reuse race).
pub fn pidfd_send_signal(fd: &OwnedFd, sig: i32) -> Result<(), Errno> {
    // SAFETY: valid pidfd, a signal number, null siginfo, no flags.
    check(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })
    .map(|_| ())
}

/// pivot_root(2): `nix` has it, but we call it with "." twice (runc's trick
/// that needs no temporary directory inside the rootfs).
pub fn pivot_root(new_root: &Path, put_old: &Path) -> Result<(), Errno> {
    let a = cstr(new_root)?;
    let b = cstr(put_old)?;
    // SAFETY: two valid NUL-terminated paths.
    check(unsafe { libc::syscall(libc::SYS_pivot_root, a.as_ptr(), b.as_ptr()) }).map(|_| ())
}

/// Resolve `path` inside the directory `dirfd` as if it were the root
/// (RESOLVE_IN_ROOT): `..` and absolute symlinks cannot leave it. This is
/// the defence against CVE-2021-30465-style symlink races on mount targets.
pub fn openat2_in_root(dirfd: RawFd, path: &Path, flags: i32) -> Result<OwnedFd, Errno> {
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
    const RESOLVE_IN_ROOT: u64 = 0x10;
    let p = cstr(path)?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: dirfd is an open directory, p a valid C string, `how` a
    // correctly sized open_how that lives across the call.
    let fd = check(unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd,
            p.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    })?;
    // SAFETY: a fresh fd from the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sets every signal that can be caught or ignored back to its default
/// action. execve(2) resets handled signals but keeps ignored ones ignored,
/// and this process ignores some (Rust's runtime ignores SIGPIPE at start;
/// callers may pass more down): a container program must not inherit that,
/// or `yes | head` in it never ends. The raw rt_sigaction reaches the two
/// real-time signals glibc reserves and its wrapper refuses. Failures are
/// per signal and not fatal: what could be reset has been.
pub fn default_signal_dispositions() {
    /// The kernel's `struct sigaction` on x86_64 and aarch64; all zero is
    /// SIG_DFL with no flags and an empty mask.
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    let act = KernelSigaction {
        handler: 0,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction only reads `act` (a valid kernel sigaction of
        // the size passed) and is not asked for the old action.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &act as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                std::mem::size_of::<u64>(),
            );
        }
    }
}

/// Mark every fd from `first` up as close-on-exec, so nothing the caller
/// leaked to us reaches the container (CVE-2024-21626 class). Where
/// close_range is refused (kernels before 5.11, or a seccomp profile older
/// than the syscall: EPERM/ENOSYS) the fds are walked in /proc/self/fd, as
/// runc and crun do.
pub fn cloexec_from(first: u32) -> Result<(), Errno> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range with the CLOEXEC flag only changes fd flags.
    let r = check(unsafe {
        libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC)
    });
    match r {
        Ok(_) => Ok(()),
        Err(Errno::EPERM | Errno::ENOSYS | Errno::EINVAL) => cloexec_walk(first),
        Err(e) => Err(e),
    }
}

/// The fallback of `cloexec_from`: FD_CLOEXEC on every fd listed in
/// /proc/self/fd from `first` up.
pub fn cloexec_walk(first: u32) -> Result<(), Errno> {
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd: &i32| *fd >= 0 && *fd as u32 >= first)
        .collect();
    for fd in fds {
        // SAFETY: F_GETFD/F_SETFD only read and set the fd's flags; an fd
        // that was the directory stream's own and is closed by now fails
        // with EBADF, which is ignored.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags >= 0 {
            // SAFETY: as above.
            unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) };
        }
    }
    Ok(())
}

/// setdomainname(2), missing from nix.
pub fn setdomainname(name: &str) -> Result<(), Errno> {
    // SAFETY: pointer and length of a valid byte slice.
    check(unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) as libc::c_long })
        .map(|_| ())
}

/// Is the process `pid` still alive (not exited, not a zombie)?
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => match proc_stat_fields(&s) {
            Some(f) => f.first().is_some_and(|st| *st != "Z" && *st != "X"),
            None => false,
        },
        Err(_) => false,
    }
}

/// Start time of `pid` in clock ticks since boot (field 22 of
/// /proc/PID/stat); with the pid it identifies a process across pid reuse.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f = proc_stat_fields(&s)?;
    // Fields after the comm: state is field 3, starttime is field 22.
    f.get(22 - 3)?.parse().ok()
}

/// Split /proc/PID/stat after the `(comm)` field, which may hold spaces.
fn proc_stat_fields(s: &str) -> Option<Vec<&str>> {
    let end = s.rfind(')')?;
    Some(s.get(end + 2..)?.split_whitespace().collect())
}

/// mount_setattr(2) with AT_RECURSIVE: make a mount and all its submounts
/// read-only (OCI `rro`, CRI `recursive_read_only`). Needs Linux 5.12.
pub fn mount_setattr_recursive_readonly(fd: RawFd) -> Result<(), Errno> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let empty = c"";
    // SAFETY: fd is an open O_PATH fd of the mount, the path is empty with
    // AT_EMPTY_PATH, and attr is a correctly sized mount_attr.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            empty.as_ptr(),
            (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_skip_comm_with_spaces() {
        let s = "42 (a b) c) S 1 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 777 0";
        let f = proc_stat_fields(s).expect("parse");
        assert_eq!(f[0], "S");
        assert_eq!(f[22 - 3], "777");
    }

    #[test]
    fn own_process_is_alive_and_has_start_time() {
        let me = std::process::id() as i32;
        assert!(process_alive(me));
        assert!(process_start_time(me).is_some());
    }
}
