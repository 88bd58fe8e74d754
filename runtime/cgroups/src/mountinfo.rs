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
#[cfg(test)]
pub(crate) fn parse_v1(mountinfo: &str, cgroup_root: &Path) -> Vec<Mount> {
    let mut c = Collector::new(cgroup_root);
    for line in mountinfo.lines() {
        c.feed(line);
    }
    c.finish()
}

/// [`parse_v1`] of this process's /proc/self/mountinfo, read only as far
/// as it must be. The file grows with every container's mounts (an overlay
/// line is long and the kernel escapes it anew on every read), and every
/// runtime command and many daemon calls resolve the hierarchies: reading
/// it whole made that cost grow with the number of pods on the node. The
/// cgroup mounts come first (they are made at boot), so reading stops once
/// each hierarchy the kernel lists in /proc/self/cgroup has been seen
/// mounted with root `/` (and the hybrid cgroup2 mount, when `<root>/unified`
/// is one): what follows could only be duplicates, which are ignored. A
/// hierarchy never seen that way means reading to the end, as before.
pub(crate) fn read_v1(cgroup_root: &Path) -> std::io::Result<Vec<Mount>> {
    use std::io::BufRead;
    let mut wanted = v1_hierarchies(&std::fs::read_to_string("/proc/self/cgroup")?);
    if is_cgroup2(&cgroup_root.join(HYBRID_UNIFIED_DIR)) {
        wanted.push(vec![UNIFIED.to_string()]);
    }
    let mut c = Collector::new(cgroup_root);
    let mut r = std::io::BufReader::new(std::fs::File::open("/proc/self/mountinfo")?);
    let mut line = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        c.feed(String::from_utf8_lossy(&line).trim_end_matches('\n'));
        if c.has_all(&wanted) {
            break;
        }
    }
    Ok(c.finish())
}

/// The v1 hierarchies in /proc/self/cgroup's text, each as the sorted
/// controllers (filtered as mountinfo's options are) a mount of it carries.
fn v1_hierarchies(proc_cgroup: &str) -> Vec<Vec<String>> {
    proc_cgroup
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (id, controllers) = (f.next()?, f.next()?);
            (id != "0").then(|| controller_set(controllers.split(',')))
        })
        .filter(|c| !c.is_empty())
        .collect()
}

/// The controllers among `options` (mount options or /proc/self/cgroup's
/// list), sorted so that both spellings of one hierarchy compare equal.
fn controller_set<'a>(options: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut c: Vec<String> = options
        .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
        .map(str::to_string)
        .collect();
    c.sort();
    c
}

/// Whether `dir` is a cgroup2 mount (statfs's magic number).
fn is_cgroup2(dir: &Path) -> bool {
    nix::sys::statfs::statfs(dir)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

/// Gathers the hierarchies line by line ([`parse_v1`]'s rules).
struct Collector {
    cgroup_root: PathBuf,
    /// Each hierarchy with whether its mount's root is `/`.
    found: Vec<(Mount, bool)>,
}

impl Collector {
    fn new(cgroup_root: &Path) -> Collector {
        Collector {
            cgroup_root: cgroup_root.to_path_buf(),
            found: Vec::new(),
        }
    }

    fn feed(&mut self, line: &str) {
        let Some((pre, post)) = line.split_once(" - ") else {
            return;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        if pre.len() < 5 || post.len() < 3 {
            return;
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
                    return;
                }
                Mount {
                    controllers,
                    mountpoint,
                    v2: false,
                }
            }
            "cgroup2" if mountpoint == self.cgroup_root.join(HYBRID_UNIFIED_DIR) => Mount {
                controllers: vec![UNIFIED.to_string()],
                mountpoint,
                v2: true,
            },
            _ => return,
        };
        match self
            .found
            .iter_mut()
            .find(|(m, _)| m.controllers == mount.controllers)
        {
            Some(existing) if !existing.1 && root_is_slash => *existing = (mount, root_is_slash),
            Some(_) => {}
            None => self.found.push((mount, root_is_slash)),
        }
    }

    /// Whether every hierarchy in `wanted` (sorted controller sets) has
    /// been found mounted with root `/`: no later line can change it.
    fn has_all(&self, wanted: &[Vec<String>]) -> bool {
        wanted.iter().all(|w| {
            self.found.iter().any(|(m, slash)| {
                let same = if m.v2 {
                    w.len() == 1 && w[0] == UNIFIED
                } else {
                    controller_set(m.controllers.iter().map(String::as_str)) == *w
                };
                *slash && same
            })
        })
    }

    fn finish(self) -> Vec<Mount> {
        self.found.into_iter().map(|(m, _)| m).collect()
    }
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
    fn proc_cgroup_names_the_v1_hierarchies_as_sorted_controller_sets() {
        let h = v1_hierarchies(
            "12:rdma:/\n4:cpuacct,cpu:/kubepods\n1:name=systemd:/init.scope\n0::/init.scope\n",
        );
        assert_eq!(
            h,
            vec![
                vec!["rdma".to_string()],
                vec!["cpu".to_string(), "cpuacct".to_string()],
                vec!["name=systemd".to_string()],
            ]
        );
    }

    #[test]
    fn reading_may_stop_once_every_hierarchy_has_its_root_mount() {
        let mut c = Collector::new(Path::new("/sys/fs/cgroup"));
        let wanted = vec![
            vec!["cpu".to_string(), "cpuacct".to_string()],
            vec!["net_cls".to_string(), "net_prio".to_string()],
        ];
        let mut lines = COMOUNTED.lines();
        c.feed(lines.next().unwrap());
        c.feed(lines.next().unwrap());
        assert!(!c.has_all(&wanted));
        c.feed(lines.next().unwrap());
        assert!(c.has_all(&wanted));
        // A bind of a sub-tree alone is not enough: a root mount may follow.
        let mut c = Collector::new(Path::new("/sys/fs/cgroup"));
        c.feed("90 80 0:26 /docker/x /mnt/o rw - cgroup cgroup rw,net_cls,net_prio");
        assert!(!c.has_all(&wanted[1..]));
        // The hybrid cgroup2 mount counts for "unified".
        let mut c = Collector::new(Path::new("/sys/fs/cgroup"));
        c.feed(SEPARATE.lines().last().unwrap());
        assert!(c.has_all(&[vec![UNIFIED.to_string()]]));
    }

    /// On whatever host the tests run (hybrid here, pure v2 in the VM
    /// lane), stopping early finds exactly what reading it all finds.
    #[test]
    fn this_hosts_hierarchies_are_the_same_read_short_or_whole() {
        let root = Path::new("/sys/fs/cgroup");
        let whole = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert_eq!(read_v1(root).unwrap(), parse_v1(&whole, root));
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
