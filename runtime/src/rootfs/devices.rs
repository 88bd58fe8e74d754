//! Device nodes inside the container: the defaults every container gets
//! (as runc) plus the spec's `linux.devices`. Created with mknod, or bind
//! mounted from the host inside a user namespace, where mknod is refused.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sys::stat::{Mode, SFlag};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType};

use super::resolve::{self, Kind};
use crate::error::{Context, Error, Result};

/// A device node to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// Path inside the container.
    pub path: PathBuf,
    /// 'c', 'b', 'u' or 'p'.
    pub kind: char,
    /// Major number.
    pub major: i64,
    /// Minor number.
    pub minor: i64,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// The devices every container gets, as runc and crun create them.
pub fn defaults() -> Vec<Device> {
    [
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
    ]
    .into_iter()
    .map(|(p, major, minor)| Device {
        path: PathBuf::from(p),
        kind: 'c',
        major,
        minor,
        mode: 0o666,
        uid: 0,
        gid: 0,
    })
    .collect()
}

/// The spec's devices, then the defaults the spec does not override.
pub fn from_spec(spec_devices: &[LinuxDevice]) -> Result<Vec<Device>> {
    let mut out = Vec::new();
    for d in spec_devices {
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => 'c',
            LinuxDeviceType::B => 'b',
            LinuxDeviceType::P => 'p',
            LinuxDeviceType::A => {
                return Err(Error::InvalidArgument(format!(
                    "device {}: type 'a' is not a node type",
                    d.path().display()
                )))
            }
        };
        if !d.path().is_absolute() {
            return Err(Error::InvalidArgument(format!(
                "device path {} is not absolute",
                d.path().display()
            )));
        }
        out.push(Device {
            path: d.path().clone(),
            kind,
            major: d.major(),
            minor: d.minor(),
            mode: d.file_mode().unwrap_or(0o666) & 0o7777,
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        });
    }
    for d in defaults() {
        if !out.iter().any(|o| o.path == d.path) {
            out.push(d);
        }
    }
    Ok(out)
}

/// The device-cgroup rules that must follow the spec's own: what runc
/// always allows (its `AllowedDevices`: the default nodes, pty handling,
/// mknod, tun). A node the spec lists in `linux.devices` is created but
/// gets no access of its own: the spec's `resources.devices` decides
/// that (a CRI or CDI device readable only stays readable only).
pub fn cgroup_rules(spec_rules: &[LinuxDeviceCgroup]) -> Vec<LinuxDeviceCgroup> {
    let rule = |kind: LinuxDeviceType, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true);
        r.set_typ(Some(kind));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(access.to_string()));
        r
    };
    let mut rules = spec_rules.to_vec();
    for d in defaults() {
        rules.push(rule(
            LinuxDeviceType::C,
            Some(d.major),
            Some(d.minor),
            "rwm",
        ));
    }
    rules.push(rule(LinuxDeviceType::C, None, None, "m"));
    rules.push(rule(LinuxDeviceType::B, None, None, "m"));
    rules.push(rule(LinuxDeviceType::C, Some(5), Some(2), "rwm")); // /dev/ptmx
    rules.push(rule(LinuxDeviceType::C, Some(136), None, "rwm")); // /dev/pts/*
    rules.push(rule(LinuxDeviceType::C, Some(10), Some(200), "rwm")); // /dev/net/tun
    rules
}

/// Create `devices` under the rootfs `root`.
pub fn create(root: &OwnedFd, devices: &[Device], bind_from_host: bool) -> Result<()> {
    let old = nix::sys::stat::umask(Mode::empty());
    let r = devices
        .iter()
        .try_for_each(|d| create_one(root, d, bind_from_host));
    nix::sys::stat::umask(old);
    r
}

fn create_one(root: &OwnedFd, d: &Device, bind_from_host: bool) -> Result<()> {
    if bind_from_host {
        let target = resolve::ensure_in_root(root, &d.path, Kind::File)?;
        return nix::mount::mount(
            Some(&d.path),
            &resolve::fd_path(&target),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .ctx(|| format!("bind device {} from the host", d.path.display()));
    }
    let parent = d.path.parent().unwrap_or(Path::new("/"));
    let name = d
        .path
        .file_name()
        .ok_or_else(|| Error::InvalidArgument(format!("device path {}", d.path.display())))?;
    let pfd = resolve::ensure_in_root(root, parent, Kind::Dir)?;
    // Re-open the parent as a real directory fd: mknodat needs one.
    let dir = nix::fcntl::openat(
        pfd.as_fd(),
        ".",
        nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| format!("open {}", parent.display()))?;
    let kind = match d.kind {
        'b' => SFlag::S_IFBLK,
        'p' => SFlag::S_IFIFO,
        _ => SFlag::S_IFCHR,
    };
    let dev = nix::sys::stat::makedev(d.major as u64, d.minor as u64);
    let mode = Mode::from_bits_truncate(d.mode);
    match nix::sys::stat::mknodat(dir.as_fd(), name, kind, mode, dev) {
        Ok(()) => {}
        Err(Errno::EEXIST) => {
            nix::unistd::unlinkat(dir.as_fd(), name, nix::unistd::UnlinkatFlags::NoRemoveDir)
                .ctx(|| format!("replace {}", d.path.display()))?;
            nix::sys::stat::mknodat(dir.as_fd(), name, kind, mode, dev)
                .ctx(|| format!("mknod {}", d.path.display()))?;
        }
        Err(e) => return Err(e).ctx(|| format!("mknod {}", d.path.display())),
    }
    nix::unistd::fchownat(
        dir.as_fd(),
        name,
        Some(d.uid.into()),
        Some(d.gid.into()),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .ctx(|| format!("chown {}", d.path.display()))
}

/// The /dev symlinks runc makes when it sets up /dev.
pub fn symlinks(root: &OwnedFd) -> Result<()> {
    let dev = resolve::ensure_in_root(root, Path::new("/dev"), Kind::Dir)?;
    let dir = nix::fcntl::openat(
        dev.as_fd(),
        ".",
        nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| "open /dev in rootfs")?;
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
        ("pts/ptmx", "ptmx"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    for (target, name) in links {
        if name == "ptmx" {
            let _ =
                nix::unistd::unlinkat(dir.as_fd(), name, nix::unistd::UnlinkatFlags::NoRemoveDir);
        }
        match nix::unistd::symlinkat(target, dir.as_fd(), name) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e).ctx(|| format!("symlink /dev/{name}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_devices_override_defaults_and_get_no_access_of_their_own() {
        let mut d = LinuxDevice::default();
        d.set_path(PathBuf::from("/dev/null"));
        d.set_typ(LinuxDeviceType::C);
        d.set_major(1);
        d.set_minor(3);
        d.set_file_mode(Some(0o600));
        let mut fuse = LinuxDevice::default();
        fuse.set_path(PathBuf::from("/dev/fuse"));
        fuse.set_typ(LinuxDeviceType::C);
        fuse.set_major(10);
        fuse.set_minor(229);
        let devs = from_spec(&[d, fuse]).expect("devices");
        assert_eq!(
            devs.iter()
                .filter(|x| x.path == Path::new("/dev/null"))
                .count(),
            1
        );
        assert_eq!(devs[0].mode, 0o600);
        assert!(devs.iter().any(|x| x.path == Path::new("/dev/urandom")));
        let rules = cgroup_rules(&[]);
        // Created, but allowed only if the spec's rules allow it.
        assert!(!rules
            .iter()
            .any(|r| r.major() == Some(10) && r.minor() == Some(229) && r.allow()));
        assert!(rules
            .iter()
            .any(|r| r.major() == Some(1) && r.minor() == Some(3) && r.allow()));
    }

    #[test]
    fn relative_device_path_is_rejected() {
        let mut d = LinuxDevice::default();
        d.set_path(PathBuf::from("dev/x"));
        d.set_typ(LinuxDeviceType::C);
        assert!(from_spec(&[d]).is_err());
    }
}
