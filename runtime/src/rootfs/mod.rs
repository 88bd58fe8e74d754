//! The container's filesystem view: the rootfs bind, the spec's mounts
//! (resolved inside the rootfs, never through symlinks out of it), device
//! nodes, pivot_root, then masked and read-only paths. Runs in the container
//! init, inside its new mount namespace.

pub mod devices;
pub mod options;
pub mod resolve;

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use oci_spec::runtime::Mount;

use crate::error::{Context, Error, Result};
use crate::syscall;
use resolve::Kind;

/// What mount setup needs to know besides the spec's mount list.
#[derive(Debug)]
pub struct MountContext {
    /// The container's rootfs on the host.
    pub rootfs: PathBuf,
    /// The container has its own (or a joined) user namespace.
    pub userns: bool,
    /// The container has its own cgroup namespace.
    pub cgroupns: bool,
    /// cgroup v2 (unified) hierarchy on the host.
    pub cgroup_v2: bool,
    /// The container's cgroup path relative to each hierarchy root.
    pub cgroup_path: String,
    /// `linux.mountLabel`, where SELinux is on: new filesystems (tmpfs,
    /// devpts, …) are mounted with it as their `context=`, as runc does.
    pub mount_label: Option<String>,
}

/// The data of a new filesystem's mount with the SELinux mount label
/// added as `context=`. proc, sysfs and mqueue keep their kernel labels,
/// as in runc.
fn with_mount_label(typ: &str, data: &str, label: Option<&str>) -> String {
    match label {
        Some(l) if !l.is_empty() && !matches!(typ, "proc" | "sysfs" | "mqueue") => {
            if data.is_empty() {
                format!("context=\"{l}\"")
            } else {
                format!("{data},context=\"{l}\"")
            }
        }
        _ => data.to_string(),
    }
}

/// /proc entries that may be mounted over (lxcfs and friends do); anything
/// else under /proc is refused (CVE-2019-16884 / CVE-2019-19921 class).
const PROC_ALLOWED: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
];

/// `path` with `.` dropped and `..` applied lexically (clamped at `/`).
fn lexical_clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            std::path::Component::Normal(n) => out.push(n),
            std::path::Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Check that a mount destination is acceptable before touching anything.
pub fn validate_mount(m: &Mount) -> Result<()> {
    let dest = m.destination();
    if !dest.is_absolute() {
        return Err(Error::InvalidArgument(format!(
            "mount destination {} is not absolute",
            dest.display()
        )));
    }
    let clean = lexical_clean(dest);
    if clean.starts_with("/proc") && clean != Path::new("/proc") {
        let ok = PROC_ALLOWED.iter().any(|p| clean == Path::new(p));
        if !ok {
            return Err(Error::InvalidArgument(format!(
                "mount destination {} is under /proc and not allowed",
                dest.display()
            )));
        }
    }
    Ok(())
}

/// Check a mount target after it was resolved inside the rootfs, as runc's
/// `checkProcMount` does: the lexical check of `validate_mount` cannot see
/// an image's `/p -> /proc` symlink, nor a bind of the host's /proc made by
/// an earlier mount. A target on procfs or under the rootfs's /proc must be
/// /proc itself or one of `PROC_ALLOWED`; a bind over /proc must bring a
/// procfs.
fn check_resolved_target(
    root: &OwnedFd,
    target: &OwnedFd,
    dest: &Path,
    bind_source: Option<&Path>,
) -> Result<()> {
    let real = |fd: &OwnedFd| {
        std::fs::read_link(resolve::fd_path(fd))
            .ctx(|| format!("resolve mount target {}", dest.display()))
    };
    let (root_real, target_real) = (real(root)?, real(target)?);
    let inside = match target_real.strip_prefix(&root_real) {
        Ok(rel) => Path::new("/").join(rel),
        Err(_) => {
            return Err(Error::InvalidArgument(format!(
                "mount destination {} resolves outside the rootfs",
                dest.display()
            )))
        }
    };
    let on_proc = crate::procfs::is_procfs(target)
        .ctx(|| format!("fstatfs mount target {}", dest.display()))?;
    if inside == Path::new("/proc") {
        if let Some(src) = bind_source {
            let f = File::open(src).ctx(|| format!("open bind source {}", src.display()))?;
            if !crate::procfs::is_procfs(&f).ctx(|| format!("fstatfs {}", src.display()))? {
                return Err(Error::InvalidArgument(format!(
                    "bind mount over /proc from {}, which is not a procfs",
                    src.display()
                )));
            }
        }
        return Ok(());
    }
    if (on_proc || inside.starts_with("/proc"))
        && !PROC_ALLOWED.iter().any(|p| inside == Path::new(p))
    {
        return Err(Error::InvalidArgument(format!(
            "mount destination {} resolves to {} on procfs, which may not be mounted over",
            dest.display(),
            inside.display()
        )));
    }
    Ok(())
}

/// Prepare the rootfs: propagation of `/`, the rootfs bind mount, every
/// spec mount, and /dev. Does not pivot yet (hooks run in between). In the
/// runtime's own mount namespace (`inherited`), nothing outside the rootfs
/// is touched: `/` and the rootfs's parent keep their propagation.
pub fn prepare(
    mounts: &[Mount],
    ctx: &MountContext,
    propagation: MsFlags,
    inherited: bool,
) -> Result<OwnedFd> {
    if !inherited {
        nix::mount::mount(None::<&str>, "/", None::<&str>, propagation, None::<&str>)
            .ctx(|| "set propagation of / in the container's mount namespace")?;
        make_parent_private(&ctx.rootfs)?;
    }
    nix::mount::mount(
        Some(&ctx.rootfs),
        &ctx.rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .ctx(|| format!("bind rootfs {}", ctx.rootfs.display()))?;
    let root: OwnedFd = File::open(&ctx.rootfs)
        .ctx(|| format!("open rootfs {}", ctx.rootfs.display()))?
        .into();
    for m in mounts {
        mount_one(&root, m, ctx)?;
    }
    Ok(root)
}

/// pivot_root(2) can not move a mount whose parent is shared; make the
/// mount that holds the rootfs private in our namespace (runc does this too).
/// That mount is found as runc 1.2 finds it: MS_PRIVATE on the rootfs, and
/// while the kernel answers EINVAL (not a mount point) on its parent, and so
/// on up. Searching /proc/self/mountinfo instead cost time that grew with
/// every container on the node, since the new namespace copies their mounts.
fn make_parent_private(rootfs: &Path) -> Result<()> {
    let mut dir = rootfs;
    loop {
        match nix::mount::mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::MS_PRIVATE,
            None::<&str>,
        ) {
            Ok(()) => return Ok(()),
            Err(Errno::EINVAL) => match dir.parent() {
                Some(up) => dir = up,
                None => return Ok(()),
            },
            Err(e) => return Err(e).ctx(|| format!("make {} private", dir.display())),
        }
    }
}

fn mount_one(root: &OwnedFd, m: &Mount, ctx: &MountContext) -> Result<()> {
    validate_mount(m)?;
    let mut opts = options::parse(m.options().as_deref().unwrap_or(&[]));
    let typ = m.typ().clone().unwrap_or_default();
    if typ == "bind" {
        opts.flags |= MsFlags::MS_BIND;
    }
    let dest = m.destination();
    if opts.is_bind() {
        return mount_bind(root, m, &opts);
    }
    if typ == "cgroup" || typ == "cgroup2" {
        return mount_cgroup(root, dest, &opts, ctx);
    }
    let target = resolve::ensure_in_root(root, dest, Kind::Dir)?;
    check_resolved_target(root, &target, dest, None)?;
    let tpath = resolve::fd_path(&target);
    let source = m.source().clone().unwrap_or_else(|| PathBuf::from(&typ));
    let data = with_mount_label(&typ, &opts.data, ctx.mount_label.as_deref());
    let data = (!data.is_empty()).then_some(data.as_str());
    let flags = opts.flags & !MsFlags::MS_REMOUNT;
    // sysfs, proc and mqueue share one superblock per namespace: mounting
    // one read-only would make the superblock read-only for every other
    // container of the pod (a privileged sibling's sysfs then comes up
    // read-only too). Mount it read-write and make only this mount
    // read-only, as a bind remount.
    let shared_sb = matches!(typ.as_str(), "sysfs" | "proc" | "mqueue");
    let ro_later = shared_sb && flags.contains(MsFlags::MS_RDONLY);
    let mount_flags = if ro_later {
        flags & !MsFlags::MS_RDONLY
    } else {
        flags
    };
    let r = nix::mount::mount(Some(&source), &tpath, Some(typ.as_str()), mount_flags, data);
    match r {
        Ok(()) if ro_later => {
            let (_fd, p) = reopen(root, dest)?;
            remount(&p, flags | MsFlags::MS_BIND, dest)?;
        }
        Ok(()) => {}
        // Without its own network namespace (or in a user namespace) the
        // kernel refuses a new sysfs/mqueue: bind the host's, as runc does.
        Err(Errno::EPERM) | Err(Errno::EBUSY) if typ == "sysfs" || typ == "mqueue" => {
            let host = if typ == "sysfs" {
                "/sys"
            } else {
                "/dev/mqueue"
            };
            nix::mount::mount(
                Some(host),
                &tpath,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .ctx(|| format!("bind {host} at {}", dest.display()))?;
            let (_fd, p) = reopen(root, dest)?;
            remount(&p, flags | MsFlags::MS_BIND, dest)?;
        }
        Err(e) => {
            return Err(e).ctx(|| format!("mount {typ} {} at {}", source.display(), dest.display()))
        }
    }
    finish_mount(root, dest, &opts)
}

/// Re-open `dest` after mounting on it: the fd used as the mount target
/// still names the directory underneath, so remounts, propagation changes
/// and mount_setattr must go through a fresh fd of the new mount.
fn reopen(root: &OwnedFd, dest: &Path) -> Result<(OwnedFd, PathBuf)> {
    let fd = resolve::open_in_root(root, dest)
        .ctx(|| format!("reopen {} after mounting", dest.display()))?;
    let p = resolve::fd_path(&fd);
    Ok((fd, p))
}

/// Propagation and recursive read-only, applied to the new mount.
fn finish_mount(root: &OwnedFd, dest: &Path, opts: &options::MountOptions) -> Result<()> {
    if opts.propagation.is_empty() && !opts.recursive_readonly {
        return Ok(());
    }
    let (fd, p) = reopen(root, dest)?;
    apply_propagation(&p, &opts.propagation, dest)?;
    if opts.recursive_readonly {
        syscall::mount_setattr_recursive_readonly(fd.as_raw_fd())
            .ctx(|| format!("make {} recursively read-only", dest.display()))?;
    }
    Ok(())
}

fn mount_bind(root: &OwnedFd, m: &Mount, opts: &options::MountOptions) -> Result<()> {
    let dest = m.destination();
    let source = m.source().clone().ok_or_else(|| {
        Error::InvalidArgument(format!("bind mount at {} has no source", dest.display()))
    })?;
    let meta =
        std::fs::metadata(&source).ctx(|| format!("bind mount source {}", source.display()))?;
    let kind = if meta.is_dir() { Kind::Dir } else { Kind::File };
    let target = resolve::ensure_in_root(root, dest, kind)?;
    check_resolved_target(root, &target, dest, Some(&source))?;
    let tpath = resolve::fd_path(&target);
    let rec = opts.flags & MsFlags::MS_REC;
    nix::mount::mount(
        Some(&source),
        &tpath,
        None::<&str>,
        MsFlags::MS_BIND | rec,
        None::<&str>,
    )
    .ctx(|| format!("bind {} at {}", source.display(), dest.display()))?;
    let extra = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
    if !extra.is_empty() {
        let (_fd, p) = reopen(root, dest)?;
        remount(&p, MsFlags::MS_BIND | extra, dest)?;
    }
    finish_mount(root, dest, opts)
}

/// Remount with `flags`; if the kernel refuses because the mount carries
/// locked flags (nosuid/nodev/noexec from a less privileged namespace), add
/// those and try again.
fn remount(tpath: &Path, flags: MsFlags, dest: &Path) -> Result<()> {
    let f = flags | MsFlags::MS_REMOUNT;
    match nix::mount::mount(None::<&str>, tpath, None::<&str>, f, None::<&str>) {
        Ok(()) => Ok(()),
        Err(Errno::EPERM) => {
            let st =
                nix::sys::statvfs::statvfs(tpath).ctx(|| format!("statvfs {}", dest.display()))?;
            let mut locked = MsFlags::empty();
            use nix::sys::statvfs::FsFlags;
            for (s, m) in [
                (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
                (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
                (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
                (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
                (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
                (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
                (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
            ] {
                if st.flags().contains(s) {
                    locked |= m;
                }
            }
            nix::mount::mount(None::<&str>, tpath, None::<&str>, f | locked, None::<&str>)
                .ctx(|| format!("remount {}", dest.display()))
        }
        Err(e) => Err(e).ctx(|| format!("remount {}", dest.display())),
    }
}

fn apply_propagation(tpath: &Path, props: &[MsFlags], dest: &Path) -> Result<()> {
    for p in props {
        nix::mount::mount(None::<&str>, tpath, None::<&str>, *p, None::<&str>)
            .ctx(|| format!("set propagation of {}", dest.display()))?;
    }
    Ok(())
}

/// A cgroup mount shows the container its own cgroup: cgroup2 itself when
/// it has a cgroup namespace, else binds of its own cgroup directories.
fn mount_cgroup(
    root: &OwnedFd,
    dest: &Path,
    opts: &options::MountOptions,
    ctx: &MountContext,
) -> Result<()> {
    let flags = opts.flags
        & (MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
    let target = resolve::ensure_in_root(root, dest, Kind::Dir)?;
    check_resolved_target(root, &target, dest, None)?;
    let tpath = resolve::fd_path(&target);
    let rel = ctx.cgroup_path.trim_start_matches('/');
    if ctx.cgroup_v2 {
        if ctx.cgroupns {
            return nix::mount::mount(
                Some("cgroup2"),
                &tpath,
                Some("cgroup2"),
                flags,
                None::<&str>,
            )
            .ctx(|| format!("mount cgroup2 at {}", dest.display()));
        }
        let host = Path::new("/sys/fs/cgroup").join(rel);
        nix::mount::mount(
            Some(&host),
            &tpath,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .ctx(|| format!("bind {} at {}", host.display(), dest.display()))?;
        let (_fd, p) = reopen(root, dest)?;
        return remount(&p, MsFlags::MS_BIND | flags, dest);
    }
    // cgroup v1: a tmpfs with one bind per hierarchy of the container's own dirs.
    nix::mount::mount(
        Some("tmpfs"),
        &tpath,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=755"),
    )
    .ctx(|| format!("mount tmpfs for cgroups at {}", dest.display()))?;
    let entries = std::fs::read_dir("/sys/fs/cgroup").ctx(|| "read /sys/fs/cgroup")?;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let inner = dest.join(name);
        let ft = match e.file_type() {
            Ok(t) => t,
            Err(_) => continue,
        };
        if ft.is_symlink() {
            if let Ok(t) = std::fs::read_link(e.path()) {
                let parent = resolve::ensure_in_root(root, dest, Kind::Dir)?;
                let _ = nix::unistd::symlinkat(
                    &t,
                    std::os::fd::AsFd::as_fd(&parent_dir(&parent)?),
                    name,
                );
            }
            continue;
        }
        let host = e.path().join(rel);
        if !host.is_dir() || name == "unified" {
            continue;
        }
        let t = resolve::ensure_in_root(root, &inner, Kind::Dir)?;
        let tp = resolve::fd_path(&t);
        nix::mount::mount(
            Some(&host),
            &tp,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .ctx(|| format!("bind {} at {}", host.display(), inner.display()))?;
        let (_fd, p) = reopen(root, &inner)?;
        remount(&p, MsFlags::MS_BIND | flags, &inner)?;
    }
    if flags.contains(MsFlags::MS_RDONLY) {
        let fresh =
            resolve::open_in_root(root, dest).ctx(|| format!("reopen {}", dest.display()))?;
        remount(&resolve::fd_path(&fresh), flags, dest)?;
    }
    Ok(())
}

fn parent_dir(opath: &OwnedFd) -> Result<OwnedFd> {
    nix::fcntl::openat(
        std::os::fd::AsFd::as_fd(opath),
        ".",
        nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(|| "open directory")
}

/// Make the rootfs the process's `/`: pivot_root with the old root stacked
/// and lazily unmounted (no directory needed inside the rootfs), or, with
/// `--no-pivot`, MS_MOVE plus chroot.
pub fn pivot(rootfs: &Path, no_pivot: bool) -> Result<()> {
    if no_pivot {
        nix::unistd::chdir(rootfs).ctx(|| format!("chdir {}", rootfs.display()))?;
        nix::mount::mount(
            Some(rootfs),
            "/",
            None::<&str>,
            MsFlags::MS_MOVE,
            None::<&str>,
        )
        .ctx(|| "move rootfs to /")?;
        nix::unistd::chroot(".").ctx(|| "chroot .")?;
        return nix::unistd::chdir("/").ctx(|| "chdir /");
    }
    let old = File::open("/").ctx(|| "open /")?;
    let new = File::open(rootfs).ctx(|| format!("open {}", rootfs.display()))?;
    nix::unistd::fchdir(&new).ctx(|| "fchdir rootfs")?;
    syscall::pivot_root(Path::new("."), Path::new("."))
        .ctx(|| format!("pivot_root {}", rootfs.display()))?;
    nix::unistd::fchdir(&old).ctx(|| "fchdir old root")?;
    // The old root must not propagate our unmount to the host.
    nix::mount::mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .ctx(|| "make old root rslave")?;
    nix::mount::umount2(".", MntFlags::MNT_DETACH).ctx(|| "unmount old root")?;
    nix::unistd::chdir("/").ctx(|| "chdir /")
}

/// Enter the rootfs by chroot: for a container in the runtime's own mount
/// namespace, where pivot_root or MS_MOVE would move the node's root.
pub fn chroot(rootfs: &Path) -> Result<()> {
    nix::unistd::chdir(rootfs).ctx(|| format!("chdir {}", rootfs.display()))?;
    nix::unistd::chroot(".").ctx(|| format!("chroot {}", rootfs.display()))?;
    nix::unistd::chdir("/").ctx(|| "chdir /")
}

/// Unmount what a container without a mount namespace of its own mounted
/// in the runtime's (runc leaves these behind): every mount below
/// `rootfs`, deepest first, then the one bind of the rootfs onto itself,
/// leaving a mount the caller made there (an overlay) in place.
pub fn unmount_below(rootfs: &Path) -> Result<()> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ctx(|| "read mountinfo")?;
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|p| p.starts_with(rootfs) && p != rootfs)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.push(rootfs.to_path_buf());
    for p in points {
        match nix::mount::umount2(&p, MntFlags::MNT_DETACH) {
            Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(e).ctx(|| format!("unmount {}", p.display())),
        }
    }
    Ok(())
}

/// A mountinfo path field with its octal escapes (`\\040` for a space …)
/// decoded.
fn unescape_mountinfo(field: &str) -> PathBuf {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let digits = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match digits {
            Some(d) if b[i] == b'\\' => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// Hide `paths` (after pivot): a read-only empty tmpfs over directories,
/// /dev/null over files. Missing paths are fine.
pub fn mask_paths(paths: &[String]) -> Result<()> {
    for p in paths {
        let r = match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => nix::mount::mount(
                Some("tmpfs"),
                p.as_str(),
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None::<&str>,
            ),
            Ok(_) => nix::mount::mount(
                Some("/dev/null"),
                p.as_str(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            ),
            Err(_) => continue,
        };
        r.ctx(|| format!("mask {p}"))?;
    }
    Ok(())
}

/// Make `paths` read-only (after pivot). Missing paths are fine.
pub fn readonly_paths(paths: &[String]) -> Result<()> {
    for p in paths {
        match nix::mount::mount(
            Some(p.as_str()),
            p.as_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        ) {
            Ok(()) => {}
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(e).ctx(|| format!("bind {p} read-only")),
        }
        remount(
            Path::new(p),
            MsFlags::MS_BIND | MsFlags::MS_RDONLY,
            Path::new(p),
        )?;
    }
    Ok(())
}

/// Remount `/` read-only (root.readonly).
pub fn readonly_root() -> Result<()> {
    remount(
        Path::new("/"),
        MsFlags::MS_BIND | MsFlags::MS_RDONLY,
        Path::new("/"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mnt(dest: &str) -> Mount {
        let mut m = Mount::default();
        m.set_destination(PathBuf::from(dest));
        m
    }

    #[test]
    fn the_mount_label_goes_to_new_filesystems_but_proc_sysfs_mqueue() {
        let l = Some("system_u:object_r:container_file_t:s0:c1,c2");
        assert_eq!(
            with_mount_label("tmpfs", "mode=755", l),
            "mode=755,context=\"system_u:object_r:container_file_t:s0:c1,c2\""
        );
        assert_eq!(
            with_mount_label("devpts", "", l),
            "context=\"system_u:object_r:container_file_t:s0:c1,c2\""
        );
        for typ in ["proc", "sysfs", "mqueue"] {
            assert_eq!(with_mount_label(typ, "x=1", l), "x=1");
        }
        assert_eq!(with_mount_label("tmpfs", "mode=755", None), "mode=755");
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(
            unescape_mountinfo("/run/a\\040b\\134c"),
            PathBuf::from("/run/a b\\c")
        );
        assert_eq!(unescape_mountinfo("/x\\09"), PathBuf::from("/x\\09"));
    }

    #[test]
    fn proc_subpaths_are_refused_except_the_allowed_ones() {
        assert!(validate_mount(&mnt("/proc")).is_ok());
        assert!(validate_mount(&mnt("/proc/cpuinfo")).is_ok());
        assert!(validate_mount(&mnt("/proc/self/attr/exec")).is_err());
        assert!(validate_mount(&mnt("/proc/../proc/sys/kernel/core_pattern")).is_err());
        assert!(validate_mount(&mnt("/x/../proc/sys/kernel")).is_err());
        assert!(validate_mount(&mnt("relative")).is_err());
    }
}
