//! cgroup resources and devices: containerd's `WithResources`,
//! `WithOOMScoreAdj` and `WithDevices` (internal/cri/opts/spec_linux_opts.go)
//! plus the device cgroup rules runc applies by default, written out so the
//! spec means the same under any OCI runtime.

use std::path::PathBuf;

use k8s_cri::v1 as cri;
use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

use super::{DeviceFacts, DeviceKind, SpecError};

/// What the resources section comes to.
#[derive(Debug)]
pub struct Resources {
    /// `linux.resources`.
    pub resources: LinuxResources,
    /// `linux.devices`: the device nodes to create.
    pub devices: Vec<LinuxDevice>,
    /// `process.oomScoreAdj`.
    pub oom_score_adj: Option<i32>,
}

/// The devices every container may use (runc's `AllowedDevices`):
/// mknod of any device, /dev/null, random, full, tty, zero, urandom, the
/// pty slaves and master, and tun.
const DEFAULT_ALLOWED: [(LinuxDeviceType, Option<i64>, Option<i64>, &str); 10] = [
    (LinuxDeviceType::C, None, None, "m"),
    (LinuxDeviceType::B, None, None, "m"),
    (LinuxDeviceType::C, Some(1), Some(3), "rwm"),
    (LinuxDeviceType::C, Some(1), Some(8), "rwm"),
    (LinuxDeviceType::C, Some(1), Some(7), "rwm"),
    (LinuxDeviceType::C, Some(5), Some(0), "rwm"),
    (LinuxDeviceType::C, Some(1), Some(5), "rwm"),
    (LinuxDeviceType::C, Some(1), Some(9), "rwm"),
    (LinuxDeviceType::C, Some(136), None, "rwm"),
    (LinuxDeviceType::C, Some(5), Some(2), "rwm"),
];

/// tun (`/dev/net/tun`), which runc also allows by default.
const TUN: (LinuxDeviceType, Option<i64>, Option<i64>, &str) =
    (LinuxDeviceType::C, Some(10), Some(200), "rwm");

fn rule(
    allow: bool,
    typ: Option<LinuxDeviceType>,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(allow)
        .set_typ(typ)
        .set_major(major)
        .set_minor(minor)
        .set_access(Some(access.to_string()));
    r
}

fn kind(k: DeviceKind) -> LinuxDeviceType {
    match k {
        DeviceKind::Char => LinuxDeviceType::C,
        DeviceKind::Block => LinuxDeviceType::B,
    }
}

/// Checks cgroup permissions: a non-empty mix of `r`, `w` and `m`.
fn check_permissions(d: &DeviceFacts) -> Result<(), SpecError> {
    let p = &d.permissions;
    if p.is_empty() || !p.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(SpecError::InvalidDevice {
            path: d.host_path.display().to_string(),
            reason: format!("permissions {p:?} must be a combination of r, w and m"),
        });
    }
    Ok(())
}

/// Where the device appears: its container path, or its host path when
/// none is given (as containerd's `oci.WithDevices`).
fn container_path(d: &DeviceFacts) -> Result<PathBuf, SpecError> {
    let p = if d.container_path.is_empty() {
        d.host_path.clone()
    } else {
        PathBuf::from(&d.container_path)
    };
    if !p.is_absolute() {
        return Err(SpecError::InvalidDevice {
            path: d.host_path.display().to_string(),
            reason: format!("container path {} must be absolute", p.display()),
        });
    }
    Ok(p)
}

/// The device nodes and device cgroup rules. Unprivileged: deny all,
/// allow runc's defaults, allow each device with its permissions.
/// Privileged: allow everything (containerd's `WithAllDevicesAllowed`);
/// the caller passes the host's devices among `devices` then, as
/// containerd's `WithHostDevices` adds them. A path given twice keeps its
/// first entry, so a CRI device wins over the host's.
fn devices(
    devs: &[DeviceFacts],
    privileged: bool,
) -> Result<(Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>), SpecError> {
    let mut nodes: Vec<LinuxDevice> = Vec::new();
    let mut rules = if privileged {
        vec![rule(true, None, None, None, "rwm")]
    } else {
        let mut r = vec![rule(false, None, None, None, "rwm")];
        r.extend(
            DEFAULT_ALLOWED
                .iter()
                .chain([&TUN])
                .map(|(t, maj, min, acc)| rule(true, Some(*t), *maj, *min, acc)),
        );
        r
    };
    for d in devs {
        check_permissions(d)?;
        let path = container_path(d)?;
        if nodes.iter().any(|n| n.path() == &path) {
            continue;
        }
        let mut n = LinuxDevice::default();
        n.set_path(path)
            .set_typ(kind(d.kind))
            .set_major(d.major)
            .set_minor(d.minor)
            .set_file_mode(Some(d.file_mode))
            .set_uid(Some(d.uid))
            .set_gid(Some(d.gid));
        nodes.push(n);
        if !privileged {
            rules.push(rule(
                true,
                Some(kind(d.kind)),
                Some(d.major),
                Some(d.minor),
                &d.permissions,
            ));
        }
    }
    Ok((nodes, rules))
}

/// The container's resources: the cgroup limits of its CRI resources
/// ([`crate::cgroup_limits`]) with the device rules and nodes.
pub fn resources(
    res: Option<&cri::LinuxContainerResources>,
    devs: &[DeviceFacts],
    privileged: bool,
) -> Result<Resources, SpecError> {
    let (nodes, rules) = devices(devs, privileged)?;
    let (mut out, adj) = match res {
        Some(r) => {
            let (limits, adj) =
                crate::cgroup_limits::linux_resources(r).map_err(SpecError::InvalidResources)?;
            (limits, Some(adj))
        }
        None => (LinuxResources::default(), None),
    };
    out.set_devices(Some(rules));
    Ok(Resources {
        resources: out,
        devices: nodes,
        oom_score_adj: adj,
    })
}
