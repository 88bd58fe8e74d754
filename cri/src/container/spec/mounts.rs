//! The container's mounts, as containerd's `WithMounts`
//! (internal/cri/opts/spec_linux_opts.go) lays them out:
//!
//! 1. the runtime defaults (/proc, /dev, /dev/pts, /dev/shm, /dev/mqueue,
//!    /sys, /sys/fs/cgroup; containerd drops /run), minus any a CRI or pod
//!    mount replaces (and everything under /dev when /dev is replaced);
//!    /sys and /sys/fs/cgroup read-only unless privileged;
//! 2. then the CRI mounts, the pod's files (/etc/hostname, /etc/hosts,
//!    /etc/resolv.conf, /dev/shm — each only where no CRI mount targets that
//!    path) and the image's anonymous volumes (likewise), stably sorted by
//!    the depth of their destination so a parent is mounted before its
//!    children.
//!
//! Every bind is `rbind` with its propagation (`rprivate`, `rslave`,
//! `rshared`) and `ro`/`rw` (or `rro`); a slave or shared mount makes the
//! rootfs propagation `rslave`/`rshared` so events can cross it.
//!
//! Not done here, because they need the host: containerd creates a missing
//! host path, resolves its symlinks and checks that a shared/slave source
//! really is shared (`ensureShared`); `selinux_relabel` volumes are
//! relabelled by the caller (container/create.rs), where SELinux is on.

use std::path::PathBuf;

use k8s_cri::v1 as cri;
use oci_spec::runtime::Mount;

use super::namespaces::id_mappings;
use super::{SpecError, SpecInput};

/// Where a container sees the pod's files.
pub const ETC_HOSTNAME: &str = "/etc/hostname";
/// The pod's hosts file in the container.
pub const ETC_HOSTS: &str = "/etc/hosts";
/// The pod's resolv.conf in the container.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";
/// The pod's shared memory in the container.
pub const DEV_SHM: &str = "/dev/shm";

/// What the mounts come to.
#[derive(Debug, Default)]
pub struct MountPlan {
    /// The spec's `mounts`, in mount order.
    pub mounts: Vec<Mount>,
    /// `linux.rootfsPropagation` when a mount needs it.
    pub rootfs_propagation: Option<String>,
    /// The image volumes: host directory to create, container path.
    pub volumes: Vec<(PathBuf, String)>,
}

/// One bind mount before it becomes an OCI mount.
#[derive(Debug, Clone)]
struct Bind {
    dst: String,
    src: PathBuf,
    readonly: bool,
    recursive_ro: bool,
    propagation: cri::MountPropagation,
    uid_mappings: Vec<cri::IdMapping>,
    gid_mappings: Vec<cri::IdMapping>,
    /// An image mount: also nosuid and nodev.
    image: bool,
}

impl Bind {
    fn new(dst: &str, src: impl Into<PathBuf>, readonly: bool) -> Bind {
        Bind {
            dst: dst.to_string(),
            src: src.into(),
            readonly,
            recursive_ro: false,
            propagation: cri::MountPropagation::PropagationPrivate,
            uid_mappings: Vec::new(),
            gid_mappings: Vec::new(),
            image: false,
        }
    }

    fn with_userns(mut self, userns: Option<&cri::UserNamespace>) -> Bind {
        if let Some(u) = userns {
            self.uid_mappings = u.uids.clone();
            self.gid_mappings = u.gids.clone();
        }
        self
    }
}

/// A path cleaned lexically, like Go's `filepath.Clean` on an absolute
/// path: no empty, `.` or `..` components (`..` stops at the root).
pub fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The sort key containerd's `orderedMounts` uses: the separators in the
/// cleaned destination.
fn depth(dst: &str) -> usize {
    clean(dst).matches('/').count()
}

/// A directory name for an image volume: its cleaned path without the
/// leading slash, `/` written `_`, and every byte other than ASCII
/// letters, digits, `.` and `-` (including `_` itself) written `%XX`, so
/// two different paths never share a directory.
pub fn volume_dir_name(cleaned: &str) -> String {
    let mut out = String::new();
    for b in cleaned.trim_start_matches('/').bytes() {
        match b {
            b'/' => out.push('_'),
            b if b.is_ascii_alphanumeric() || b == b'.' || b == b'-' => out.push(b as char),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The runtime's default mounts (containerd's `populateDefaultUnixSpec`
/// without /run, plus the cgroup mount `WithMounts` adds).
fn default_mounts(privileged: bool) -> Vec<Mount> {
    let sys = if privileged { "rw" } else { "ro" };
    let table: [(&str, &str, &str, &[&str]); 7] = [
        ("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        (
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        (
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        (
            DEV_SHM,
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        (
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        (
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys],
        ),
        (
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", sys],
        ),
    ];
    table
        .iter()
        .map(|(dst, typ, src, opts)| {
            let mut m = Mount::default();
            m.set_destination(PathBuf::from(dst))
                .set_typ(Some(typ.to_string()))
                .set_source(Some(PathBuf::from(src)))
                .set_options(Some(opts.iter().map(|o| o.to_string()).collect()));
            m
        })
        .collect()
}

/// A CRI image mount (KEP 4639), mounted read-only at `src` by the
/// caller: bound read-only, private, without setuid or device files (an
/// image volume carries data and programs, not privileges).
fn image_bind(m: &cri::Mount, src: Option<&PathBuf>) -> Result<Bind, SpecError> {
    let bad = |reason: &str| SpecError::InvalidMount {
        path: m.container_path.clone(),
        reason: reason.to_string(),
    };
    if !m.container_path.starts_with('/') {
        return Err(bad("container path must be absolute"));
    }
    if !m.host_path.is_empty() {
        return Err(bad("host path and image exclude each other"));
    }
    let src = src.ok_or_else(|| SpecError::ImageMountNotMounted(m.container_path.clone()))?;
    let mut b = Bind::new(&m.container_path, src.clone(), true);
    b.image = true;
    Ok(b)
}

/// A CRI mount, checked.
fn cri_bind(m: &cri::Mount) -> Result<Bind, SpecError> {
    let bad = |reason: &str| SpecError::InvalidMount {
        path: m.container_path.clone(),
        reason: reason.to_string(),
    };
    if m.container_path.is_empty() {
        return Err(bad("container path is empty"));
    }
    if !m.container_path.starts_with('/') {
        return Err(bad("container path must be absolute"));
    }
    if m.host_path.is_empty() {
        return Err(bad("host path is empty"));
    }
    if !m.host_path.starts_with('/') {
        return Err(bad("host path must be absolute"));
    }
    let propagation = cri::MountPropagation::try_from(m.propagation).unwrap_or_else(|_| {
        tracing::warn!(
            host_path = %m.host_path,
            propagation = m.propagation,
            "unknown mount propagation; using private"
        );
        cri::MountPropagation::PropagationPrivate
    });
    if m.recursive_read_only {
        if !m.readonly {
            return Err(bad(
                "recursive read-only mount conflicts with a read-write mount",
            ));
        }
        if propagation != cri::MountPropagation::PropagationPrivate {
            return Err(bad("recursive read-only mount needs private propagation"));
        }
    }
    Ok(Bind {
        dst: m.container_path.clone(),
        src: PathBuf::from(&m.host_path),
        readonly: m.readonly,
        recursive_ro: m.recursive_read_only,
        propagation,
        uid_mappings: m.uid_mappings.clone(),
        gid_mappings: m.gid_mappings.clone(),
        image: false,
    })
}

fn oci_bind(b: &Bind, rootfs_propagation: &mut Option<String>) -> Result<Mount, SpecError> {
    let mut options = vec!["rbind".to_string()];
    match b.propagation {
        cri::MountPropagation::PropagationPrivate => options.push("rprivate".into()),
        cri::MountPropagation::PropagationBidirectional => {
            options.push("rshared".into());
            *rootfs_propagation = Some("rshared".into());
        }
        cri::MountPropagation::PropagationHostToContainer => {
            options.push("rslave".into());
            if rootfs_propagation.as_deref() != Some("rshared") {
                *rootfs_propagation = Some("rslave".into());
            }
        }
    }
    options.push(
        match (b.readonly, b.recursive_ro) {
            (true, true) => "rro",
            (true, false) => "ro",
            (false, _) => "rw",
        }
        .into(),
    );
    if b.image {
        options.extend(["nosuid".to_string(), "nodev".to_string()]);
    }
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(&b.dst))
        .set_typ(Some("bind".into()))
        .set_source(Some(b.src.clone()))
        .set_options(Some(options));
    if !b.uid_mappings.is_empty() {
        m.set_uid_mappings(Some(id_mappings(&b.uid_mappings)?));
    }
    if !b.gid_mappings.is_empty() {
        m.set_gid_mappings(Some(id_mappings(&b.gid_mappings)?));
    }
    Ok(m)
}

/// The mounts of a container (see the module doc).
///
/// `image_volumes` are the image config's `Volumes` keys; `userns` the
/// container's user namespace (its mappings idmap the image volumes; the
/// pod's files and /dev/shm are owned by the pod's root instead, as they
/// may be on a tmpfs, which kernels before 6.3 cannot idmap).
pub fn plan(
    input: &SpecInput<'_>,
    image_volumes: &[String],
    privileged: bool,
    readonly_rootfs: bool,
    userns: Option<&cri::UserNamespace>,
) -> Result<MountPlan, SpecError> {
    let mut image_mounts = input.image_mounts.iter();
    let criv: Vec<Bind> = input
        .config
        .mounts
        .iter()
        .map(|m| {
            if m.image.is_some() {
                image_bind(m, image_mounts.next())
            } else {
                cri_bind(m)
            }
        })
        .collect::<Result<_, _>>()?;
    let in_cri = |p: &str| {
        let p = clean(p);
        criv.iter().any(|b| clean(&b.dst) == p)
    };

    let sb = input.sandbox;
    let mut extra: Vec<Bind> = Vec::new();
    for (dst, file) in [
        (ETC_HOSTNAME, "hostname"),
        (ETC_HOSTS, "hosts"),
        (RESOLV_CONF, "resolv.conf"),
    ] {
        if !in_cri(dst) {
            extra.push(Bind::new(dst, sb.pod_dir.join(file), readonly_rootfs));
        }
    }
    if !in_cri(DEV_SHM) {
        let src = sb.shm.clone().unwrap_or_else(|| PathBuf::from(DEV_SHM));
        extra.push(Bind::new(DEV_SHM, src, false));
    }

    let mut volumes = Vec::new();
    // Relative volume paths are taken from the root, as containerd does.
    let mut vols: Vec<String> = image_volumes.iter().map(|v| clean(v)).collect();
    vols.sort();
    vols.dedup();
    for dst in vols {
        if in_cri(&dst) {
            continue;
        }
        let name = volume_dir_name(&dst);
        if name.is_empty() {
            return Err(SpecError::InvalidMount {
                path: dst,
                reason: "an image volume cannot be the root directory".into(),
            });
        }
        let src = input.volumes_dir.join(name);
        volumes.push((src.clone(), dst.clone()));
        extra.push(Bind::new(&dst, src, false).with_userns(userns));
    }

    let mut binds = criv.clone();
    binds.extend(extra);
    binds.sort_by_key(|b| depth(&b.dst));

    let taken: Vec<String> = binds.iter().map(|b| clean(&b.dst)).collect();
    let dev_taken = taken.iter().any(|t| t == "/dev");
    let mut mounts: Vec<Mount> = default_mounts(privileged)
        .into_iter()
        .filter(|m| {
            let d = clean(&m.destination().to_string_lossy());
            let replaced = taken.contains(&d) || (dev_taken && d.starts_with("/dev/"));
            !replaced
        })
        .collect();
    let mut rootfs_propagation = None;
    for b in &binds {
        mounts.push(oci_bind(b, &mut rootfs_propagation)?);
    }
    Ok(MountPlan {
        mounts,
        rootfs_propagation,
        volumes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_follows_go_filepath_clean() {
        for (input, want) in [
            ("/", "/"),
            ("/a/b/", "/a/b"),
            ("//a//b", "/a/b"),
            ("/a/./b/../c", "/a/c"),
            ("/../a", "/a"),
            ("a/b", "/a/b"),
        ] {
            assert_eq!(clean(input), want, "{input}");
        }
    }

    #[test]
    fn volume_dir_names_are_flat_and_distinct() {
        for (path, want) in [
            ("/data", "data"),
            ("/var/lib/db", "var_lib_db"),
            ("/a_b", "a%5Fb"),
            ("/a b", "a%20b"),
            ("/x.y-z", "x.y-z"),
        ] {
            assert_eq!(volume_dir_name(path), want, "{path}");
        }
        assert_ne!(volume_dir_name("/a_b"), volume_dir_name("/a/b"));
        assert!(!volume_dir_name("/a/b").contains('/'));
    }

    #[test]
    fn depth_counts_components() {
        assert_eq!(depth("/"), 1);
        assert_eq!(depth("/a"), 1);
        assert_eq!(depth("/a/b/"), 2);
    }
}
