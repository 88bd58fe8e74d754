//! Container root filesystems: overlayfs stacks of unpacked layer dirs with
//! a per-container writable upper dir, and read-only views of an image.
//!
//! The legacy mount(2) call copies at most one page of option data, so an
//! image with many layers cannot name them all by absolute path. Layer dirs
//! are siblings (`<root>/layers/<chain id>`), so the long case mounts from a
//! helper thread that has its own working directory, naming lowers relative
//! to their common parent, as containerd's overlay snapshotter does. Stacks
//! too deep even for that (about 60 chain IDs fill the page) are named by
//! short numbered symlinks in a scratch dir beside the target (as docker's
//! overlay2 driver names layers by short links), up to overlayfs' own limit
//! of 500 lowers; the links are only needed while mounting.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

/// Bytes of mount data the kernel copies from user space: one page (4096 on
/// the page sizes we run on), the terminating NUL included.
const MOUNT_DATA_LIMIT: usize = 4096;
/// The most lower dirs overlayfs stacks (the kernel's OVL_MAX_STACK).
const MAX_LOWERS: usize = 500;
/// Filesystem type and source name of overlay mounts.
const OVERLAY: &str = "overlay";

/// Why a root filesystem could not be mounted or unmounted; every variant
/// names the mount target so the failing container can be identified.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// There is nothing to mount.
    #[error("mount at {target}: no lower dirs given")]
    NoLowers {
        /// The mount target.
        target: PathBuf,
    },
    /// A path cannot be passed to overlayfs.
    #[error("mount at {target}: path {path:?} {reason}")]
    BadPath {
        /// The mount target.
        target: PathBuf,
        /// The offending path.
        path: PathBuf,
        /// Why it cannot be used.
        reason: &'static str,
    },
    /// The overlay option string does not fit the mount data page.
    #[error(
        "overlay mount at {target}: options are {len} bytes, over the {MOUNT_DATA_LIMIT}-byte \
         mount data limit ({detail})"
    )]
    OptionsTooLong {
        /// The mount target.
        target: PathBuf,
        /// Length of the shortest option string we could build.
        len: usize,
        /// Why the relative form did not help.
        detail: &'static str,
    },
    /// A directory could not be created.
    #[error("mount at {target}: create {path}: {source}")]
    CreateDir {
        /// The mount target.
        target: PathBuf,
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A syscall on the way to the mount failed.
    #[error("{op} for mount at {target}: {source}")]
    Mount {
        /// The mount target.
        target: PathBuf,
        /// What was attempted, e.g. "mount overlay", "remount read-only".
        op: String,
        /// The errno.
        source: Errno,
    },
    /// The helper thread for a relative-path mount could not run.
    #[error("mount at {target}: helper thread: {reason}")]
    Helper {
        /// The mount target.
        target: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The target could not be unmounted.
    #[error("unmount {target}: {source}")]
    Unmount {
        /// The mount target.
        target: PathBuf,
        /// The errno.
        source: Errno,
    },
}

/// Mounts `lowers` (topmost first, i.e. the image's last layer first) with a
/// writable `upper` and `work` at `target`, as a container's root
/// filesystem. `upper`, `work` and `target` are created if missing. Where
/// SELinux is on, `context` is the container's mount label: the whole
/// rootfs is labelled with it (`context=`, as containerd's snapshotters
/// mount it).
pub fn mount_overlay(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
    context: Option<&str>,
) -> Result<(), RootfsError> {
    check_lowers(lowers, target)?;
    check_option_path(upper, target)?;
    check_option_path(work, target)?;
    let tail = overlay_tail(upper, work, context, target)?;
    let options = OverlayOptions::new(lowers, &tail, target)?;
    for dir in [upper, work, target] {
        create_dir(dir, target)?;
    }
    options.mount(target, MsFlags::empty())
}

/// The options after the lower dirs: the upper and work dirs, and the
/// SELinux `context=` (quoted: a level holds commas).
fn overlay_tail(
    upper: &Path,
    work: &Path,
    context: Option<&str>,
    target: &Path,
) -> Result<Vec<u8>, RootfsError> {
    let mut tail = b",upperdir=".to_vec();
    tail.extend_from_slice(upper.as_os_str().as_bytes());
    tail.extend_from_slice(b",workdir=");
    tail.extend_from_slice(work.as_os_str().as_bytes());
    if let Some(label) = context {
        if label.contains('"') {
            return Err(RootfsError::BadPath {
                target: target.to_path_buf(),
                path: PathBuf::from(label),
                reason: "is an SELinux label holding a quote",
            });
        }
        tail.extend_from_slice(format!(",context=\"{label}\"").as_bytes());
    }
    Ok(tail)
}

/// Mounts `lowers` (topmost first) read-only at `target`, for looking into
/// an image without a container. One lower is bind-mounted read-only, since
/// overlayfs needs two lowers when there is no upper dir.
pub fn mount_readonly(lowers: &[PathBuf], target: &Path) -> Result<(), RootfsError> {
    check_lowers(lowers, target)?;
    if let [only] = lowers {
        create_dir(target, target)?;
        let err = |op: &str| {
            let op = op.to_owned();
            move |source| RootfsError::Mount {
                target: target.to_path_buf(),
                op,
                source,
            }
        };
        mount(
            Some(only.as_path()),
            target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(err("bind mount"))?;
        // MS_RDONLY is ignored on the initial bind; it takes a remount.
        let remount = mount(
            None::<&str>,
            target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        );
        if let Err(e) = remount {
            if let Err(undo) = umount2(target, MntFlags::MNT_DETACH) {
                tracing::warn!(target = %target.display(), error = %undo, "undoing writable bind mount");
            }
            return Err(err("remount read-only")(e));
        }
        return Ok(());
    }
    let options = OverlayOptions::new(lowers, b"", target)?;
    create_dir(target, target)?;
    options.mount(target, MsFlags::MS_RDONLY)
}

/// Unmounts everything stacked on `target`; a target that is not mounted
/// (or does not exist) is fine, so teardown can be retried. A busy mount is
/// detached lazily rather than failing the container's removal.
pub fn unmount(target: &Path) -> Result<(), RootfsError> {
    loop {
        match umount2(target, MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) => {}
            // EINVAL: not a mount point (any more).
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => return Ok(()),
            Err(Errno::EBUSY) => {
                tracing::warn!(target = %target.display(), "rootfs busy; detaching lazily");
                umount2(target, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW).map_err(
                    |source| RootfsError::Unmount {
                        target: target.to_path_buf(),
                        source,
                    },
                )?;
            }
            Err(source) => {
                return Err(RootfsError::Unmount {
                    target: target.to_path_buf(),
                    source,
                })
            }
        }
    }
}

fn check_lowers(lowers: &[PathBuf], target: &Path) -> Result<(), RootfsError> {
    if lowers.is_empty() {
        return Err(RootfsError::NoLowers {
            target: target.to_path_buf(),
        });
    }
    if !target.is_absolute() {
        return Err(RootfsError::BadPath {
            target: target.to_path_buf(),
            path: target.to_path_buf(),
            reason: "must be absolute",
        });
    }
    lowers
        .iter()
        .try_for_each(|lower| check_option_path(lower, target))
}

/// Overlayfs splits its options on `,` and lowerdir on `:` and treats `\`
/// as an escape; rather than escape, such paths are refused (ours never
/// contain them). Paths must be absolute because a relative-path mount runs
/// in another working directory.
fn check_option_path(path: &Path, target: &Path) -> Result<(), RootfsError> {
    let bad = |reason| {
        Err(RootfsError::BadPath {
            target: target.to_path_buf(),
            path: path.to_path_buf(),
            reason,
        })
    };
    if !path.is_absolute() {
        return bad("must be absolute");
    }
    if path
        .as_os_str()
        .as_bytes()
        .iter()
        .any(|b| matches!(b, b',' | b':' | b'\\'))
    {
        return bad("contains ',', ':' or '\\', which overlayfs options cannot carry");
    }
    Ok(())
}

fn create_dir(dir: &Path, target: &Path) -> Result<(), RootfsError> {
    fs::create_dir_all(dir).map_err(|source| RootfsError::CreateDir {
        target: target.to_path_buf(),
        path: dir.to_path_buf(),
        source,
    })
}

/// `lowerdir=a:b:c` followed by `tail`.
fn overlay_options<'a>(lowers: impl Iterator<Item = &'a OsStr>, tail: &[u8]) -> Vec<u8> {
    let mut data = b"lowerdir=".to_vec();
    for (i, lower) in lowers.enumerate() {
        if i > 0 {
            data.push(b':');
        }
        data.extend_from_slice(lower.as_bytes());
    }
    data.extend_from_slice(tail);
    data
}

fn fits(data: &[u8]) -> bool {
    data.len() < MOUNT_DATA_LIMIT
}

/// Overlay mount data that fits the mount data page: lowers by absolute
/// path if that fits, else relative to their common parent.
enum OverlayOptions<'a> {
    Absolute(Vec<u8>),
    Relative {
        parent: &'a Path,
        data: Vec<u8>,
    },
    /// Lowers named `0`, `1`, … by symlinks made in a scratch dir.
    Linked {
        lowers: &'a [PathBuf],
        data: Vec<u8>,
    },
}

impl<'a> OverlayOptions<'a> {
    fn new(
        lowers: &'a [PathBuf],
        tail: &[u8],
        target: &Path,
    ) -> Result<OverlayOptions<'a>, RootfsError> {
        let absolute = overlay_options(lowers.iter().map(|l| l.as_os_str()), tail);
        if fits(&absolute) {
            return Ok(OverlayOptions::Absolute(absolute));
        }
        if let Some(parent) = common_parent(lowers) {
            let data = overlay_options(lowers.iter().filter_map(|l| l.file_name()), tail);
            if fits(&data) {
                return Ok(OverlayOptions::Relative { parent, data });
            }
        }
        if lowers.len() > MAX_LOWERS {
            return Err(RootfsError::OptionsTooLong {
                target: target.to_path_buf(),
                len: absolute.len() + 1,
                detail: "more than the 500 lower dirs overlayfs stacks",
            });
        }
        let names: Vec<String> = (0..lowers.len()).map(|i| i.to_string()).collect();
        let data = overlay_options(names.iter().map(OsStr::new), tail);
        if !fits(&data) {
            return Err(RootfsError::OptionsTooLong {
                target: target.to_path_buf(),
                len: data.len() + 1,
                detail: "even with lower dirs named by short links",
            });
        }
        Ok(OverlayOptions::Linked { lowers, data })
    }

    fn mount(&self, target: &Path, flags: MsFlags) -> Result<(), RootfsError> {
        match self {
            OverlayOptions::Absolute(data) => mount_overlay_data(target, flags, data),
            OverlayOptions::Relative { parent, data } => {
                mount_relative(parent, target, flags, data)
            }
            OverlayOptions::Linked { lowers, data } => {
                let links = link_dir(target);
                let _ = fs::remove_dir_all(&links);
                let made = fs::create_dir(&links).and_then(|()| {
                    lowers.iter().enumerate().try_for_each(|(i, l)| {
                        std::os::unix::fs::symlink(l, links.join(i.to_string()))
                    })
                });
                let r = match made {
                    Ok(()) => mount_relative(&links, target, flags, data),
                    Err(source) => Err(RootfsError::CreateDir {
                        target: target.to_path_buf(),
                        path: links.clone(),
                        source,
                    }),
                };
                // overlayfs holds the lower dirs themselves once mounted.
                let _ = fs::remove_dir_all(&links);
                r
            }
        }
    }
}

/// The scratch dir of short lower links for a mount at `target`: beside
/// it, hidden, and private to this process.
fn link_dir(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.lowers-{}", std::process::id()))
}

/// The parent all lowers share, if each is `<parent>/<name>`.
fn common_parent(lowers: &[PathBuf]) -> Option<&Path> {
    let first = lowers.first()?.parent()?;
    lowers
        .iter()
        .all(|l| l.parent() == Some(first) && l.file_name().is_some())
        .then_some(first)
}

fn mount_overlay_data(target: &Path, flags: MsFlags, data: &[u8]) -> Result<(), RootfsError> {
    mount(Some(OVERLAY), target, Some(OVERLAY), flags, Some(data)).map_err(|source| {
        RootfsError::Mount {
            target: target.to_path_buf(),
            op: "mount overlay".to_owned(),
            source,
        }
    })
}

/// Mounts from a thread with its own filesystem context (cwd) set to
/// `parent`, leaving the daemon's cwd alone.
fn mount_relative(
    parent: &Path,
    target: &Path,
    flags: MsFlags,
    data: &[u8],
) -> Result<(), RootfsError> {
    let errno = |op: String| {
        move |source| RootfsError::Mount {
            target: target.to_path_buf(),
            op,
            source,
        }
    };
    std::thread::scope(|scope| {
        let helper = std::thread::Builder::new()
            .name("overlay-mount".to_owned())
            .spawn_scoped(scope, || {
                // A thread may unshare CLONE_FS; the cwd change stays private
                // to it and ends with it.
                unshare(CloneFlags::CLONE_FS).map_err(errno("unshare(CLONE_FS)".to_owned()))?;
                nix::unistd::chdir(parent)
                    .map_err(errno(format!("chdir to {}", parent.display())))?;
                mount_overlay_data(target, flags, data)
            })
            .map_err(|e| RootfsError::Helper {
                target: target.to_path_buf(),
                reason: format!("spawn: {e}"),
            })?;
        helper.join().map_err(|_| RootfsError::Helper {
            target: target.to_path_buf(),
            reason: "panicked".to_owned(),
        })?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers(parent: &str, n: usize) -> Vec<PathBuf> {
        (0..n)
            .map(|i| Path::new(parent).join(format!("{i:064x}")))
            .collect()
    }

    #[test]
    fn the_selinux_context_is_a_quoted_overlay_option() {
        let t = Path::new("/c/rootfs");
        let tail = overlay_tail(
            Path::new("/c/upper"),
            Path::new("/c/work"),
            Some("system_u:object_r:container_file_t:s0:c1,c2"),
            t,
        )
        .expect("tail");
        assert_eq!(
            String::from_utf8(tail).expect("utf8"),
            ",upperdir=/c/upper,workdir=/c/work,context=\"system_u:object_r:container_file_t:s0:c1,c2\""
        );
        let plain = overlay_tail(Path::new("/u"), Path::new("/w"), None, t).expect("tail");
        assert_eq!(plain, b",upperdir=/u,workdir=/w");
        assert!(overlay_tail(Path::new("/u"), Path::new("/w"), Some("a\"b"), t).is_err());
    }

    #[test]
    fn short_stacks_are_named_by_absolute_path_topmost_first() {
        let lowers = vec![PathBuf::from("/l/top"), PathBuf::from("/l/base")];
        let options = OverlayOptions::new(&lowers, b",upperdir=/u,workdir=/w", Path::new("/t"));
        match options {
            Ok(OverlayOptions::Absolute(data)) => {
                assert_eq!(data, b"lowerdir=/l/top:/l/base,upperdir=/u,workdir=/w")
            }
            _ => panic!("expected absolute options"),
        }
    }

    #[test]
    fn long_stacks_are_named_relative_to_their_common_parent() {
        let lowers = layers("/var/lib/carapace/layers", 60);
        match OverlayOptions::new(&lowers, b"", Path::new("/t")) {
            Ok(OverlayOptions::Relative { parent, data }) => {
                assert_eq!(parent, Path::new("/var/lib/carapace/layers"));
                let expected: Vec<String> = (0..60).map(|i| format!("{i:064x}")).collect();
                assert_eq!(
                    data,
                    format!("lowerdir={}", expected.join(":")).into_bytes()
                );
            }
            _ => panic!("expected relative options"),
        }
    }

    #[test]
    fn stacks_too_long_for_relative_names_get_numbered_links() {
        let lowers = layers("/var/lib/carapace/layers", 70);
        match OverlayOptions::new(&lowers, b",upperdir=/u", Path::new("/t")) {
            Ok(OverlayOptions::Linked { lowers: l, data }) => {
                assert_eq!(l.len(), 70);
                let names: Vec<String> = (0..70).map(|i| i.to_string()).collect();
                assert_eq!(
                    data,
                    format!("lowerdir={},upperdir=/u", names.join(":")).into_bytes()
                );
            }
            _ => panic!("expected linked options"),
        }
        // Scattered lowers too.
        let mut lowers = layers("/a", 40);
        lowers.extend(layers("/b", 40));
        assert!(matches!(
            OverlayOptions::new(&lowers, b"", Path::new("/t")),
            Ok(OverlayOptions::Linked { .. })
        ));
    }

    #[test]
    fn stacks_deeper_than_overlayfs_allows_are_refused_naming_the_limit() {
        let lowers = layers("/l", 501);
        let err = match OverlayOptions::new(&lowers, b"", Path::new("/t")) {
            Err(e) => e,
            Ok(_) => panic!("501 lowers"),
        };
        assert!(matches!(err, RootfsError::OptionsTooLong { .. }));
        assert!(err.to_string().contains("500 lower dirs"), "{err}");
    }

    #[test]
    fn option_separators_and_relative_paths_are_refused() {
        for bad in ["/a:b", "/a,b", "/a\\b", "rel/x"] {
            assert!(
                matches!(
                    check_option_path(Path::new(bad), Path::new("/t")),
                    Err(RootfsError::BadPath { .. })
                ),
                "{bad}"
            );
        }
        assert!(check_option_path(Path::new("/var/lib/x y/z"), Path::new("/t")).is_ok());
    }
}
