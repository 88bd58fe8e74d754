//! Open paths inside the container's rootfs without ever leaving it: every
//! lookup is RESOLVE_IN_ROOT, so `..` and absolute or relative symlinks
//! planted in the image resolve inside the rootfs (CVE-2021-30465 class).
//! Mounts then target `/proc/self/fd/N` of the opened fd, so the path cannot
//! be swapped between the check and the mount.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::error::{Context, Result};
use crate::syscall;

/// What to create when the target does not exist yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A directory (mount targets of directories and filesystems).
    Dir,
    /// An empty regular file (bind mounts of files).
    File,
}

/// The components of `path` relative to the root, with `.` and the leading
/// `/` dropped (`..` is kept: the kernel clamps it at the root).
pub fn relative(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_) | Component::ParentDir))
        .collect()
}

/// Open `path` inside `root` as O_PATH, resolving within the root.
pub fn open_in_root(root: &OwnedFd, path: &Path) -> Result<OwnedFd, Errno> {
    let rel = relative(path);
    let rel = if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    };
    syscall::openat2_in_root(root.as_raw_fd(), &rel, libc::O_PATH)
}

/// Open `path` inside `root`, creating missing parents as directories and
/// the last component as `kind`. Returns an O_PATH fd of the target.
pub fn ensure_in_root(root: &OwnedFd, path: &Path, kind: Kind) -> Result<OwnedFd> {
    match open_in_root(root, path) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(e).ctx(|| format!("open {} in rootfs", path.display())),
    }
    let rel = relative(path);
    let comps: Vec<_> = rel.components().collect();
    let mut prefix = PathBuf::new();
    for (i, c) in comps.iter().enumerate() {
        let parent = prefix.clone();
        prefix.push(c);
        match open_in_root(root, &prefix) {
            Ok(_) => continue,
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(e).ctx(|| format!("open {} in rootfs", prefix.display())),
        }
        let pfd =
            open_in_root(root, &parent).ctx(|| format!("open {} in rootfs", parent.display()))?;
        let name = Path::new(c.as_os_str());
        let last = i + 1 == comps.len();
        if last && kind == Kind::File {
            let fd = nix::fcntl::openat(
                pfd.as_raw_fd_borrowed(),
                name,
                OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_WRONLY
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            );
            match fd {
                Ok(_) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(e).ctx(|| format!("create {} in rootfs", prefix.display())),
            }
        } else {
            match nix::sys::stat::mkdirat(
                pfd.as_raw_fd_borrowed(),
                name,
                Mode::from_bits_truncate(0o755),
            ) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(e).ctx(|| format!("mkdir {} in rootfs", prefix.display())),
            }
        }
    }
    open_in_root(root, path).ctx(|| format!("open {} in rootfs", path.display()))
}

/// `/proc/self/fd/N` for an fd: the path mount(2) is given.
pub fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Borrow helper: nix's *at functions take `AsFd`.
trait Borrowed {
    fn as_raw_fd_borrowed(&self) -> std::os::fd::BorrowedFd<'_>;
}

impl Borrowed for OwnedFd {
    fn as_raw_fd_borrowed(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn root_fd(p: &Path) -> OwnedFd {
        std::fs::File::open(p).expect("open root").into()
    }

    #[test]
    fn relative_drops_root_and_dots() {
        assert_eq!(
            relative(Path::new("/a/./b/../c")),
            PathBuf::from("a/b/../c")
        );
        assert_eq!(relative(Path::new("/")), PathBuf::new());
    }

    #[test]
    fn creates_missing_dirs_and_files() {
        let d = tempfile::tempdir().expect("tmp");
        let r = root_fd(d.path());
        ensure_in_root(&r, Path::new("/x/y/z"), Kind::Dir).expect("dir");
        assert!(d.path().join("x/y/z").is_dir());
        ensure_in_root(&r, Path::new("/etc/hosts"), Kind::File).expect("file");
        assert!(d.path().join("etc/hosts").is_file());
    }

    #[test]
    fn symlinks_cannot_escape_the_root() {
        let d = tempfile::tempdir().expect("tmp");
        let outside = tempfile::tempdir().expect("outside");
        symlink(outside.path(), d.path().join("evil")).expect("abs symlink");
        symlink("../../../../../../..", d.path().join("up")).expect("rel symlink");
        let r = root_fd(d.path());
        // A symlink whose target does not exist inside the root is refused
        // or resolved inside; either way nothing appears outside.
        let _ = ensure_in_root(&r, Path::new("/evil/pwned"), Kind::Dir);
        assert!(
            !outside.path().join("pwned").exists(),
            "escaped via absolute symlink"
        );
        ensure_in_root(&r, Path::new("/up/tmp/pwned2"), Kind::Dir).expect("inside");
        assert!(d.path().join("tmp/pwned2").is_dir(), "clamped at root");
        ensure_in_root(&r, Path::new("/../../escape"), Kind::Dir).expect("inside");
        assert!(d.path().join("escape").is_dir());
    }
}
