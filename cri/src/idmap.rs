//! Idmapped mounts for pods in a user namespace of their own.
//!
//! A file owned by host root appears in such a pod as owned by nobody, so
//! its image layers and volumes would be read-only to the container's own
//! root. An idmapped mount (Linux 5.12, mount_setattr with
//! `MOUNT_ATTR_IDMAP`) shows a tree through the pod's mapping instead:
//! host uid 0 reads as the container's 0, and the container's writes land
//! on disk as host uid 0 — nothing is chowned.
//!
//! Only a process privileged over the filesystem (host root) may idmap a
//! host mount, and the runtime's container init has already entered the
//! pod's user namespace when it mounts. So the daemon makes the idmapped
//! mounts itself, on the host, and hands the runtime plain bind sources —
//! which also works for runc and crun handlers.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use k8s_cri::v1 as cri;
use nix::errno::Errno;
use nix::mount::{umount2, MntFlags};

/// Why an idmapped mount could not be made or removed; every variant names
/// the path, so the failing mount can be found.
#[derive(Debug, thiserror::Error)]
pub enum IdmapError {
    /// A step of making the mount failed (EINVAL from mount_setattr: the
    /// filesystem cannot be idmapped on this kernel).
    #[error("idmapped mount of {src} at {target}: {step}: {errno}")]
    Mount {
        /// What is being mapped.
        src: PathBuf,
        /// Where it goes.
        target: PathBuf,
        /// The syscall that failed.
        step: &'static str,
        /// The kernel's answer.
        errno: Errno,
    },
    /// A path holds a NUL byte.
    #[error("path {0:?} holds a NUL byte")]
    BadPath(PathBuf),
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The host uid and gid of the container's root under a pod's mappings
/// (which [`check_mappings`] has accepted): the owner the pod's own files
/// (hosts, resolv.conf, /dev/shm) get.
pub fn root_ids(u: &cri::UserNamespace) -> (u32, u32) {
    let host0 = |m: &[cri::IdMapping]| {
        m.iter()
            .find(|m| m.container_id == 0)
            .map(|m| m.host_id)
            .unwrap_or(0)
    };
    (host0(&u.uids), host0(&u.gids))
}

/// The user namespace a pod (or container) asks for, None for the host's
/// (no options, or mode NODE). Only POD is supported, with one mapping
/// each of uids and gids from container ID 0 ([`check_mappings`]), as the
/// CRI says (CONTAINER and TARGET are not user namespace modes). Shared
/// by RunPodSandbox and the container spec, so both refuse alike.
pub fn requested_userns(
    opts: Option<&cri::UserNamespace>,
) -> Result<Option<&cri::UserNamespace>, String> {
    let Some(u) = opts else {
        return Ok(None);
    };
    match cri::NamespaceMode::try_from(u.mode) {
        Ok(cri::NamespaceMode::Node) => Ok(None),
        Ok(cri::NamespaceMode::Pod) => {
            check_mappings(u)?;
            Ok(Some(u))
        }
        Ok(m) => Err(format!(
            "unsupported user namespace mode {}",
            m.as_str_name()
        )),
        Err(_) => Err(format!("unknown user namespace mode {}", u.mode)),
    }
}

/// The mappings a pod user namespace accepts, as kubelet sends them and
/// containerd checks them: one uid and one gid range, each mapping the
/// container's ID 0, of a non-zero length that does not wrap.
pub fn check_mappings(u: &cri::UserNamespace) -> Result<(), String> {
    for (what, m) in [("uid", &u.uids), ("gid", &u.gids)] {
        let [one] = m.as_slice() else {
            return Err(format!(
                "a pod user namespace takes exactly one {what} mapping, got {}",
                m.len()
            ));
        };
        if one.container_id != 0 {
            return Err(format!(
                "the {what} mapping must start at container ID 0 (got {}): an unmapped \
                 root cannot own the container's files",
                one.container_id
            ));
        }
        if one.length == 0 || one.host_id.checked_add(one.length - 1).is_none() {
            return Err(format!(
                "{what} mapping {}:{}:{} is empty or wraps",
                one.container_id, one.host_id, one.length
            ));
        }
    }
    Ok(())
}

fn c_path(p: &Path) -> Result<CString, IdmapError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| IdmapError::BadPath(p.to_path_buf()))
}

/// Attaches at `target` (an existing directory, or file for a file
/// source) a copy of the mount tree at `src` seen through the user
/// namespace `userns`; `recursive` takes the submounts too (an `rbind`).
/// The mount at `src` itself is not changed.
pub fn attach(
    src: &Path,
    userns: BorrowedFd<'_>,
    target: &Path,
    recursive: bool,
) -> Result<(), IdmapError> {
    let err = |step: &'static str| {
        move |errno| IdmapError::Mount {
            src: src.to_path_buf(),
            target: target.to_path_buf(),
            step,
            errno,
        }
    };
    let csrc = c_path(src)?;
    let ctarget = c_path(target)?;
    let rec = if recursive { libc::AT_RECURSIVE } else { 0 };
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    // SAFETY: open_tree(2) with a NUL-terminated path; the returned fd, if
    // any, is owned by us from here on.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            csrc.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | rec as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(err("open_tree")(Errno::last()));
    }
    // SAFETY: fd is a fresh descriptor returned above, owned by nobody else.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as i32) };

    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: mount_setattr(2) on the detached tree's fd with an empty
    // path and AT_EMPTY_PATH; attr is a correctly sized mount_attr.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            (libc::AT_EMPTY_PATH | rec) as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(err("mount_setattr idmap")(Errno::last()));
    }
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
    // SAFETY: move_mount(2) of the detached tree (empty path) onto the
    // NUL-terminated target path.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            ctarget.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(err("move_mount")(Errno::last()));
    }
    Ok(())
}

/// Opens a pinned (or /proc) user namespace file for [`attach`].
pub fn open_userns(path: &Path) -> Result<OwnedFd, IdmapError> {
    std::fs::File::open(path)
        .map(OwnedFd::from)
        .map_err(|source| IdmapError::Io {
            what: "open user namespace",
            path: path.to_path_buf(),
            source,
        })
}

/// Makes an empty mount point at `target` of the kind of `src`: a
/// directory for a directory, an empty file otherwise.
pub fn mount_point_for(src: &Path, target: &Path) -> Result<(), IdmapError> {
    let io = |what| {
        move |source| IdmapError::Io {
            what,
            path: target.to_path_buf(),
            source,
        }
    };
    let meta = std::fs::metadata(src).map_err(|source| IdmapError::Io {
        what: "stat mount source",
        path: src.to_path_buf(),
        source,
    })?;
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(io("create"))?;
    }
    if meta.is_dir() {
        std::fs::create_dir_all(target).map_err(io("create"))
    } else {
        std::fs::File::create(target)
            .map(drop)
            .map_err(io("create"))
    }
}

/// Detaches every mount at or below `dir` and removes `dir`; missing is
/// fine. For the idmapped clones a container or a half-made rootfs left.
pub fn detach_all(dir: &Path) -> Result<(), IdmapError> {
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(|source| IdmapError::Io {
            what: "read",
            path: "/proc/self/mountinfo".into(),
            source,
        })?;
    let mut points: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    // Deepest first; a point stacked twice appears twice.
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        match umount2(&p, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
            Err(errno) => {
                return Err(IdmapError::Mount {
                    src: p.clone(),
                    target: p,
                    step: "umount",
                    errno,
                })
            }
        }
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(IdmapError::Io {
            what: "remove",
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space, and so on).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(uids: &[(u32, u32, u32)], gids: &[(u32, u32, u32)]) -> cri::UserNamespace {
        let m = |v: &[(u32, u32, u32)]| {
            v.iter()
                .map(|&(c, h, l)| cri::IdMapping {
                    container_id: c,
                    host_id: h,
                    length: l,
                })
                .collect()
        };
        cri::UserNamespace {
            mode: cri::NamespaceMode::Pod as i32,
            uids: m(uids),
            gids: m(gids),
        }
    }

    #[test]
    fn one_mapping_from_container_root_is_accepted() {
        let u = ns(&[(0, 100000, 65536)], &[(0, 200000, 65536)]);
        assert_eq!(check_mappings(&u), Ok(()));
        assert_eq!(root_ids(&u), (100000, 200000));
    }

    #[test]
    fn several_unrooted_empty_or_wrapping_mappings_are_refused() {
        let two = ns(&[(0, 100000, 10), (10, 300000, 10)], &[(0, 1, 1)]);
        assert!(check_mappings(&two)
            .unwrap_err()
            .contains("exactly one uid"));
        let unrooted = ns(&[(0, 1, 1)], &[(1, 100000, 10)]);
        assert!(check_mappings(&unrooted)
            .unwrap_err()
            .contains("container ID 0"));
        let empty = ns(&[(0, 100000, 0)], &[(0, 1, 1)]);
        assert!(check_mappings(&empty)
            .unwrap_err()
            .contains("empty or wraps"));
        let wraps = ns(&[(0, u32::MAX, 2)], &[(0, 1, 1)]);
        assert!(check_mappings(&wraps).is_err());
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape(r"/a\040b\011c"), "/a b\tc");
        assert_eq!(unescape(r"/plain\0"), r"/plain\0");
    }
}
