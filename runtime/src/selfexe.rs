//! CVE-2019-5736 defence: before any command that lets a process enter a
//! container's namespaces (create, run, exec), the runtime re-executes
//! itself from a copy the container cannot write, so a container process
//! that reaches /proc/PID/exe of a runtime process (or execs it) can never
//! overwrite the binary on the host.
//!
//! Preferred (runc ≥ 1.2 does the same): the binary's own directory as the
//! lower layer of a read-only overlayfs mounted with the new mount API and
//! never attached to any namespace; the binary is re-executed from there.
//! No copy is made (page cache is shared with the real file) and writes
//! through the mount fail with EROFS. Fallback where overlayfs or the mount
//! API is missing: a sealed memfd copy (F_SEAL_WRITE and friends).

use std::ffi::{CStr, CString};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};

use crate::error::{Context, Error, Result};

fn required_seals() -> SealFlag {
    SealFlag::F_SEAL_SEAL | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE
}

/// Are we already running from a copy the container cannot write: a
/// sealed memfd, or a file on a read-only overlayfs?
pub fn is_protected() -> bool {
    let Ok(exe) = File::open("/proc/self/exe") else {
        return false;
    };
    if let Ok(bits) = nix::fcntl::fcntl(exe.as_fd(), FcntlArg::F_GET_SEALS) {
        return SealFlag::from_bits_truncate(bits).contains(required_seals());
    }
    let Ok(fs) = nix::sys::statfs::fstatfs(&exe) else {
        return false;
    };
    let ro = nix::sys::statvfs::fstatvfs(&exe)
        .is_ok_and(|v| v.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY));
    fs.filesystem_type() == nix::sys::statfs::OVERLAYFS_SUPER_MAGIC && ro
}

/// Re-exec from a protected copy unless already done. Returns only when
/// already protected; otherwise it replaces the process (or fails).
pub fn ensure_sealed() -> Result<()> {
    if is_protected() {
        return Ok(());
    }
    let fd = match overlay_copy() {
        Ok(fd) => fd,
        Err(e) => {
            crate::logging::debug(&format!(
                "read-only overlay of the runtime binary: {e}; using a sealed memfd"
            ));
            memfd_copy()?
        }
    };
    reexec(fd.as_fd())
}

fn sys(ret: libc::c_long, what: &str) -> Result<RawFd> {
    if ret < 0 {
        Err(nix::Error::last()).ctx(|| what.to_string())
    } else {
        Ok(ret as RawFd)
    }
}

/// Open the running binary through a detached read-only overlayfs.
fn overlay_copy() -> Result<OwnedFd> {
    const MOUNT_ATTR_RDONLY: u32 = 0x1;
    const MOUNT_ATTR_NODEV: u32 = 0x4;
    let exe: PathBuf = std::fs::read_link("/proc/self/exe").ctx(|| "readlink /proc/self/exe")?;
    let dir = exe.parent().unwrap_or(Path::new("/"));
    let name = exe
        .file_name()
        .ok_or_else(|| Error::Init(format!("runtime binary {} has no file name", exe.display())))?;
    // overlayfs without an upper layer needs two non-overlapping lower
    // layers: the binary's directory over an empty, detached tmpfs.
    let empty = detached_mount("tmpfs", &[], 0)?;
    let lower = format!("{}:/proc/self/fd/{}", dir.display(), empty.as_raw_fd());
    if lower.contains(',') {
        return Err(Error::Unsupported(
            "a ',' in the runtime binary's directory".into(),
        ));
    }
    let mnt = detached_mount(
        "overlay",
        &[("lowerdir", &lower)],
        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV,
    )?;
    let f = nix::fcntl::openat(
        mnt.as_fd(),
        name,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(|| format!("open {} in the read-only overlay", exe.display()))?;
    Ok(f)
}

/// A new mount of `fstype` with string `options`, attached nowhere
/// (fsopen, fsconfig, fsmount).
fn detached_mount(fstype: &str, options: &[(&str, &str)], attrs: u32) -> Result<OwnedFd> {
    const FSOPEN_CLOEXEC: u32 = 1;
    const FSCONFIG_SET_STRING: u32 = 1;
    const FSCONFIG_CMD_CREATE: u32 = 6;
    const FSMOUNT_CLOEXEC: u32 = 1;
    let c = |s: &str| CString::new(s).map_err(|_| Error::InvalidArgument(format!("NUL in {s:?}")));
    let t = c(fstype)?;
    // SAFETY: fsopen with a valid C string; returns a new fd we own.
    let fsfd = sys(
        unsafe { libc::syscall(libc::SYS_fsopen, t.as_ptr(), FSOPEN_CLOEXEC) },
        "fsopen",
    )?;
    // SAFETY: the kernel just gave us fsfd.
    let fsfd = unsafe { OwnedFd::from_raw_fd(fsfd) };
    for (k, v) in options {
        let (key, value) = (c(k)?, c(v)?);
        // SAFETY: fsconfig on our fs context with valid key and value strings.
        sys(
            unsafe {
                libc::syscall(
                    libc::SYS_fsconfig,
                    fsfd.as_raw_fd(),
                    FSCONFIG_SET_STRING,
                    key.as_ptr(),
                    value.as_ptr(),
                    0,
                )
            },
            &format!("fsconfig {fstype} {k}"),
        )?;
    }
    // SAFETY: fsconfig CMD_CREATE takes no key or value.
    sys(
        unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fsfd.as_raw_fd(),
                FSCONFIG_CMD_CREATE,
                std::ptr::null::<libc::c_char>(),
                std::ptr::null::<libc::c_char>(),
                0,
            )
        },
        &format!("fsconfig {fstype} create"),
    )?;
    // SAFETY: fsmount of a created context; returns a detached mount fd.
    let m = sys(
        unsafe { libc::syscall(libc::SYS_fsmount, fsfd.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) },
        "fsmount",
    )?;
    // SAFETY: a fresh fd from the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(m) })
}

/// Copy the running binary into a sealed memfd.
fn memfd_copy() -> Result<OwnedFd> {
    const MFD_EXEC: u32 = 0x10;
    let name: &CStr = c"carapace-runtime";
    let base = MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING;
    // Newer kernels want executable memfds asked for explicitly (MFD_EXEC);
    // older ones do not know the flag.
    let fd = match memfd_create(name, base | MFdFlags::from_bits_retain(MFD_EXEC)) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::EINVAL) => memfd_create(name, base).ctx(|| "memfd_create")?,
        Err(e) => return Err(e).ctx(|| "memfd_create"),
    };
    let mut src = File::open("/proc/self/exe").ctx(|| "open /proc/self/exe")?;
    let mut dst = File::from(fd);
    std::io::copy(&mut src, &mut dst).ctx(|| "copy the runtime binary into a memfd")?;
    nix::fcntl::fcntl(dst.as_fd(), FcntlArg::F_ADD_SEALS(required_seals()))
        .ctx(|| "seal the memfd")?;
    Ok(dst.into())
}

fn reexec(fd: std::os::fd::BorrowedFd<'_>) -> Result<()> {
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.into_encoded_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| Error::InvalidArgument("argument with a NUL byte".into()))?;
    let env: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.into_encoded_bytes();
            kv.push(b'=');
            kv.extend(v.into_encoded_bytes());
            CString::new(kv).ok()
        })
        .collect();
    nix::unistd::fexecve(fd, &args, &env).ctx(|| "re-exec from the protected copy")?;
    Err(Error::Init("fexecve returned".into()))
}
