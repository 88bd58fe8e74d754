//! CVE-2019-5736 defence, the part both the runtime and its caller need:
//! a process that enters a container must run from a copy of the runtime
//! binary the container cannot write, so that a container process that
//! reaches /proc/PID/exe of it (or execs it) can never overwrite the
//! binary on the host.
//!
//! Preferred (runc ≥ 1.2 does the same): the binary's own directory as
//! the lower layer of a read-only overlayfs with no upper layer, mounted
//! with the new mount API and never attached to any namespace. No copy is
//! made (page cache is shared with the real file) and writes through the
//! mount fail with EROFS whatever the mount flags say. Fallback where
//! overlayfs or the mount API is missing: a sealed memfd copy.
//!
//! The runtime re-executes itself from such a copy unless it already runs
//! from one ([`is_protected`]). That re-exec is a whole second process
//! start, so a long-lived caller (the shim) makes one overlay copy with
//! [`overlay_copy`] and executes the runtime from it every time.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::fcntl::{FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};

/// A failed step of making a protected copy.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct Error {
    /// The step, with its path.
    pub what: String,
    /// What the kernel said.
    #[source]
    pub source: std::io::Error,
}

fn err(what: impl Into<String>, e: impl Into<std::io::Error>) -> Error {
    Error {
        what: what.into(),
        source: e.into(),
    }
}

fn required_seals() -> SealFlag {
    SealFlag::F_SEAL_SEAL | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE
}

/// Is `exe` a copy the container cannot write: a sealed memfd, or a file
/// on a read-only overlayfs?
pub fn is_protected(exe: &File) -> bool {
    if let Ok(bits) = nix::fcntl::fcntl(exe.as_fd(), FcntlArg::F_GET_SEALS) {
        return SealFlag::from_bits_truncate(bits).contains(required_seals());
    }
    let Ok(fs) = nix::sys::statfs::fstatfs(exe) else {
        return false;
    };
    let ro = nix::sys::statvfs::fstatvfs(exe)
        .is_ok_and(|v| v.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY));
    fs.filesystem_type() == nix::sys::statfs::OVERLAYFS_SUPER_MAGIC && ro
}

fn sys(ret: libc::c_long, what: &str) -> Result<RawFd, Error> {
    if ret < 0 {
        Err(err(what, std::io::Error::last_os_error()))
    } else {
        Ok(ret as RawFd)
    }
}

/// Opens `exe` (an absolute path) through a detached read-only overlayfs
/// of its directory. The fd can be executed (`fexecve`, or the path
/// /proc/self/fd/N) and what runs from it passes [`is_protected`].
pub fn overlay_copy(exe: &Path) -> Result<OwnedFd, Error> {
    let dir = exe.parent().unwrap_or(Path::new("/"));
    let name = exe.file_name().ok_or_else(|| {
        err(
            format!("runtime binary {}", exe.display()),
            std::io::ErrorKind::InvalidInput,
        )
    })?;
    // overlayfs without an upper layer needs two non-overlapping lower
    // layers: the binary's directory over an empty one. An empty detached
    // tmpfs leaves nothing behind, but older kernels (Debian 12's 6.1)
    // take only layers mounted in the caller's namespace and answer
    // EINVAL: there, an empty temporary directory, removed once mounted
    // (a removed directory stays empty for the overlay).
    let empty = detached_mount("tmpfs", &[], 0)?;
    let mnt = match overlay_of(dir, &format!("/proc/self/fd/{}", empty.as_raw_fd())) {
        Err(e) if e.source.raw_os_error() == Some(libc::EINVAL) => {
            let tmp = nix::unistd::mkdtemp(&std::env::temp_dir().join("carapace-exe.XXXXXX"))
                .map_err(|e| err("make an empty directory for the overlay", e))?;
            let r = match tmp.to_str() {
                Some(t) => overlay_of(dir, t),
                None => Err(err(
                    format!("temporary directory {}", tmp.display()),
                    std::io::ErrorKind::InvalidInput,
                )),
            };
            let _ = std::fs::remove_dir(&tmp);
            r?
        }
        other => other?,
    };
    nix::fcntl::openat(
        mnt.as_fd(),
        name,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| {
        err(
            format!("open {} in the read-only overlay", exe.display()),
            e,
        )
    })
}

/// A detached read-only overlayfs of `dir` over the empty directory
/// `empty`.
fn overlay_of(dir: &Path, empty: &str) -> Result<OwnedFd, Error> {
    const MOUNT_ATTR_RDONLY: u32 = 0x1;
    const MOUNT_ATTR_NODEV: u32 = 0x4;
    let lower = format!("{}:{empty}", dir.display());
    // Both separate options or layers in overlayfs's option string.
    if dir.to_string_lossy().contains([',', ':']) || empty.contains([',', ':']) {
        return Err(err(
            format!("a ',' or ':' in an overlay layer's path {lower}"),
            std::io::ErrorKind::InvalidInput,
        ));
    }
    detached_mount(
        "overlay",
        &[("lowerdir", &lower)],
        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV,
    )
}

/// A new mount of `fstype` with string `options`, attached nowhere
/// (fsopen, fsconfig, fsmount).
fn detached_mount(fstype: &str, options: &[(&str, &str)], attrs: u32) -> Result<OwnedFd, Error> {
    const FSOPEN_CLOEXEC: u32 = 1;
    const FSCONFIG_SET_STRING: u32 = 1;
    const FSCONFIG_CMD_CREATE: u32 = 6;
    const FSMOUNT_CLOEXEC: u32 = 1;
    let c = |s: &str| {
        CString::new(s).map_err(|_| err(format!("NUL in {s:?}"), std::io::ErrorKind::InvalidInput))
    };
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

/// Copies `src` (the running binary) into a sealed memfd.
pub fn memfd_copy(src: &mut File) -> Result<OwnedFd, Error> {
    const MFD_EXEC: u32 = 0x10;
    let name: &CStr = c"carapace-runtime";
    let base = MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING;
    // Newer kernels want executable memfds asked for explicitly (MFD_EXEC);
    // older ones do not know the flag.
    let fd = match memfd_create(name, base | MFdFlags::from_bits_retain(MFD_EXEC)) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::EINVAL) => {
            memfd_create(name, base).map_err(|e| err("memfd_create", e))?
        }
        Err(e) => return Err(err("memfd_create", e)),
    };
    let mut dst = File::from(fd);
    std::io::copy(src, &mut dst).map_err(|e| err("copy the runtime binary into a memfd", e))?;
    nix::fcntl::fcntl(dst.as_fd(), FcntlArg::F_ADD_SEALS(required_seals()))
        .map_err(|e| err("seal the memfd", e))?;
    Ok(dst.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A private executable to copy: this test program in a directory of
    /// its own (a standalone ELF everywhere, where /bin/true may be a
    /// busybox applet that goes by its name).
    fn program(dir: &Path) -> std::path::PathBuf {
        let p = dir.join("prog");
        std::fs::copy(std::env::current_exe().expect("test exe"), &p).expect("copy");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        p
    }

    /// Runs the copy: the test harness lists its tests and exits 0.
    fn runs(path: &Path) -> bool {
        std::process::Command::new(path)
            .arg("--list")
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn require_root() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the mount API needs root (CI runs the tests as root)"
        );
    }

    #[test]
    fn an_overlay_copy_is_protected_runs_and_cannot_be_written() {
        require_root();
        let dir = tempfile::tempdir().expect("tempdir");
        let prog = program(dir.path());
        let plain = File::open(&prog).expect("open");
        assert!(!is_protected(&plain), "a plain file passes as protected");
        let fd = overlay_copy(&prog).expect("overlay copy");
        let copy = File::from(fd);
        assert!(is_protected(&copy));
        let path = std::path::PathBuf::from(format!("/proc/self/fd/{}", copy.as_raw_fd()));
        assert!(runs(&path), "{} does not run", path.display());
        let w = std::fs::OpenOptions::new().write(true).open(&path);
        assert_eq!(
            w.map(drop).map_err(|e| e.raw_os_error()),
            Err(Some(libc::EROFS)),
            "the copy opened for writing"
        );
    }

    /// The fallback for kernels that refuse detached layers: an attached
    /// empty directory, removed as soon as the overlay is made.
    #[test]
    fn an_overlay_over_a_removed_empty_directory_serves_the_binary() {
        require_root();
        let dir = tempfile::tempdir().expect("tempdir");
        program(dir.path());
        let empty = tempfile::tempdir().expect("tempdir");
        let mnt = overlay_of(dir.path(), empty.path().to_str().expect("utf8")).expect("overlay");
        std::fs::remove_dir(empty.path()).expect("remove the empty layer");
        let fd = nix::fcntl::openat(
            mnt.as_fd(),
            "prog",
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .expect("open the binary in the overlay");
        let copy = File::from(fd);
        assert!(is_protected(&copy));
        let path = std::path::PathBuf::from(format!("/proc/self/fd/{}", copy.as_raw_fd()));
        assert!(runs(&path), "{} does not run", path.display());
    }

    #[test]
    fn layer_paths_that_would_split_the_options_are_refused() {
        for (dir, empty) in [("/a,b", "/e"), ("/a:b", "/e"), ("/a", "/e:f")] {
            let e = overlay_of(Path::new(dir), empty).expect_err(dir);
            assert_eq!(
                e.source.kind(),
                std::io::ErrorKind::InvalidInput,
                "{dir} {empty}"
            );
        }
    }

    #[test]
    fn a_memfd_copy_is_protected_and_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let prog = program(dir.path());
        let fd = memfd_copy(&mut File::open(&prog).expect("open")).expect("memfd copy");
        let copy = File::from(fd);
        assert!(is_protected(&copy));
        let path = std::path::PathBuf::from(format!("/proc/self/fd/{}", copy.as_raw_fd()));
        assert!(runs(&path), "{} does not run", path.display());
        // A sealed memfd opens for writing; the seal refuses the write.
        if let Ok(mut w) = std::fs::OpenOptions::new().write(true).open(&path) {
            use std::io::Write;
            assert!(w.write_all(b"pwned").is_err(), "wrote to the sealed copy");
        }
    }

    #[test]
    fn a_path_without_a_file_name_is_refused() {
        let e = overlay_copy(Path::new("/")).expect_err("/ has no file name");
        assert_eq!(e.source.kind(), std::io::ErrorKind::InvalidInput);
    }
}
