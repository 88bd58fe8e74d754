//! Finding the cgroup v1 hierarchies from /proc/self/mountinfo.
//!
//! Controllers may be mounted one per directory (`/sys/fs/cgroup/cpu`,
//! `/sys/fs/cgroup/cpuacct`) or co-mounted (`/sys/fs/cgroup/cpu,cpuacct`),
//! so the mount options, not directory names, say which controllers a
//! hierarchy carries.

use std::path::{Path, PathBuf};

/// Controller names the kernel knows for cgroup v1 (see /proc/cgroups).
const V1_CONTROLLERS: &[&str] = &[
    "cpuset",
    "cpu",
    "cpuacct",
    "io",
    "blkio",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "perf_event",
    "net_prio",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
    "debug",
];

/// Where runc, systemd and friends expect the hybrid-mode cgroup2 mount.
pub(crate) const HYBRID_UNIFIED_DIR: &str = "unified";

/// Name under which the hybrid cgroup2 hierarchy is listed among v1 ones.
pub(crate) const UNIFIED: &str = "unified";

/// One mounted hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Mount {
    /// Controllers bound to it, e.g. ["cpu", "cpuacct"] or ["name=systemd"];
    /// ["unified"] for the hybrid cgroup2 mount.
    pub controllers: Vec<String>,
    /// Its mount point.
    pub mountpoint: PathBuf,
    /// True for a cgroup2 mount.
    pub v2: bool,
}

impl Mount {
    /// Whether this hierarchy carries `controller` ("systemd" is accepted
    /// for "name=systemd").
    pub fn has(&self, controller: &str) -> bool {
        self.controllers
            .iter()
            .any(|c| c == controller || c.strip_prefix("name=") == Some(controller))
    }
}

/// Unescapes the octal escapes (`\040` etc.) the kernel uses in mountinfo.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(u8::is_ascii_digit));
        match octal {
            Some(d) if b[i] == b'\\' && d.iter().all(|c| *c <= b'7') => {
                let v = d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo into the v1 hierarchies plus, in hybrid mode, the cgroup2
/// mount at `<cgroup root>/unified`. Duplicate mounts of one hierarchy (bind
/// mounts) keep the one whose root is `/`, else the first.
pub(crate) fn parse_v1(mountinfo: &str, cgroup_root: &Path) -> Vec<Mount> {
    let mut found: Vec<(Mount, bool)> = Vec::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        if pre.len() < 5 || post.len() < 3 {
            continue;
        }
        let root_is_slash = pre[3] == "/";
        let mountpoint = PathBuf::from(unescape(pre[4]));
        let mount = match post[0] {
            "cgroup" => {
                let controllers: Vec<String> = post[2]
                    .split(',')
                    .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
                    .map(str::to_string)
                    .collect();
                if controllers.is_empty() {
                    continue;
                }
                Mount {
                    controllers,
                    mountpoint,
                    v2: false,
                }
            }
            "cgroup2" if mountpoint == cgroup_root.join(HYBRID_UNIFIED_DIR) => Mount {
                controllers: vec![UNIFIED.to_string()],
                mountpoint,
                v2: true,
            },
            _ => continue,
        };
        match found
            .iter_mut()
            .find(|(m, _)| m.controllers == mount.controllers)
        {
            Some(existing) if !existing.1 && root_is_slash => *existing = (mount, root_is_slash),
            Some(_) => {}
            None => found.push((mount, root_is_slash)),
        }
    }
    found.into_iter().map(|(m, _)| m).collect()
}

/// Lists a directory laid out like /sys/fs/cgroup (one sub-directory per
/// hierarchy, named after its controllers) as hierarchies. Used by
/// `Manager::with_root` so tests can point the manager at a temporary tree.
pub(crate) fn scan_root(root: &Path) -> std::io::Result<Vec<Mount>> {
    let mut out: Vec<(PathBuf, Mount)> = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(root)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        // Symlinks such as cpu -> cpu,cpuacct name the same hierarchy.
        let canonical = std::fs::canonicalize(&path)?;
        if out.iter().any(|(c, _)| *c == canonical) {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let target = canonical
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or(name);
        let mount = if target == HYBRID_UNIFIED_DIR {
            Mount {
                controllers: vec![UNIFIED.to_string()],
                mountpoint: path,
                v2: true,
            }
        } else {
            let controllers = target
                .split(',')
                .map(|c| {
                    if c == "systemd" {
                        "name=systemd".to_string()
                    } else {
                        c.to_string()
                    }
                })
                .collect();
            Mount {
                controllers,
                mountpoint: path,
                v2: false,
            }
        };
        out.push((canonical, mount));
    }
    Ok(out.into_iter().map(|(_, m)| m).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEPARATE: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    const COMOUNTED: &str = "\
25 18 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
28 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:10 - cgroup cgroup rw,cpu,cpuacct
29 25 0:26 / /sys/fs/cgroup/net_cls,net_prio rw shared:11 - cgroup cgroup rw,net_cls,net_prio
90 80 0:26 /docker/x /mnt/other\\040dir rw - cgroup cgroup rw,net_cls,net_prio
";

    #[test]
    fn separate_controllers_each_get_a_mount() {
        let m = parse_v1(SEPARATE, Path::new("/sys/fs/cgroup"));
        assert_eq!(m.len(), 5);
        assert_eq!(m[0].controllers, vec!["cpu"]);
        assert_eq!(m[1].controllers, vec!["cpuacct"]);
        assert_eq!(m[3].controllers, vec!["name=systemd"]);
        assert!(m[3].has("systemd"));
        assert!(m[4].v2);
        assert_eq!(m[4].mountpoint, Path::new("/sys/fs/cgroup/unified"));
    }

    #[test]
    fn comounted_controllers_share_a_mount() {
        let m = parse_v1(COMOUNTED, Path::new("/sys/fs/cgroup"));
        assert_eq!(m.len(), 2);
        assert!(m[0].has("cpu") && m[0].has("cpuacct"));
        assert_eq!(m[0].mountpoint, Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        // The bind mount of a sub-tree does not replace the root mount.
        assert_eq!(
            m[1].mountpoint,
            Path::new("/sys/fs/cgroup/net_cls,net_prio")
        );
    }

    #[test]
    fn unescape_handles_octal() {
        assert_eq!(unescape("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape("/mnt/a\\"), "/mnt/a\\");
    }

    #[test]
    fn scan_root_reads_directory_names() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["cpu,cpuacct", "memory", "systemd", "unified"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        std::os::unix::fs::symlink("cpu,cpuacct", dir.path().join("cpu")).unwrap();
        let m = scan_root(dir.path()).unwrap();
        assert_eq!(m.len(), 4, "{m:?}");
        assert!(m.iter().any(|m| m.has("cpuacct") && m.has("cpu")));
        assert!(m.iter().any(|m| m.has("name=systemd")));
        assert!(m.iter().any(|m| m.v2));
    }
}
