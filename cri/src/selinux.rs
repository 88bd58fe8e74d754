//! SELinux labels for containers, where the kernel has SELinux on: the
//! process label the runtime execs the container's processes in and the
//! mount label its mounts and relabelled volumes get, as containerd and
//! CRI-O make them. The defaults come from the policy's
//! `contexts/lxc_contexts` (`container_t` and `container_file_t` in
//! Debian's and Fedora's policies); the request's `selinux_options`
//! override them field by field; every pod gets its own MCS level so that
//! two pods' containers cannot read each other's files. Where SELinux is
//! off every option is ignored, as containerd does.

use std::path::Path;

use k8s_cri::v1 as cri;
use sha2::{Digest, Sha256};

/// A `user:role:type:level` context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// The SELinux user, e.g. `system_u`.
    pub user: String,
    /// The role, e.g. `system_r` (`object_r` for files).
    pub role: String,
    /// The type, e.g. `container_t`.
    pub typ: String,
    /// The MLS/MCS level, e.g. `s0:c1,c2` (may itself hold colons).
    pub level: String,
}

impl Label {
    /// Parses `user:role:type[:level]`; None for anything shorter.
    pub fn parse(s: &str) -> Option<Label> {
        let mut it = s.trim().splitn(4, ':');
        let (user, role, typ) = (it.next()?, it.next()?, it.next()?);
        if user.is_empty() || role.is_empty() || typ.is_empty() {
            return None;
        }
        Some(Label {
            user: user.into(),
            role: role.into(),
            typ: typ.into(),
            level: it.next().unwrap_or("").into(),
        })
    }

    /// The same label with the non-empty fields of `o` in place of its own.
    fn with(&self, o: Option<&cri::SeLinuxOption>) -> Label {
        let pick = |own: &String, theirs: Option<&String>| match theirs {
            Some(t) if !t.is_empty() => t.clone(),
            _ => own.clone(),
        };
        Label {
            user: pick(&self.user, o.map(|o| &o.user)),
            role: pick(&self.role, o.map(|o| &o.role)),
            typ: pick(&self.typ, o.map(|o| &o.r#type)),
            level: pick(&self.level, o.map(|o| &o.level)),
        }
    }
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.user, self.role, self.typ)?;
        if !self.level.is_empty() {
            write!(f, ":{}", self.level)?;
        }
        Ok(())
    }
}

/// The policy's default container contexts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contexts {
    /// What container processes run as.
    pub process: Label,
    /// What container files (rootfs, volumes, tmpfs) are labelled.
    pub file: Label,
}

impl Default for Contexts {
    /// The container-selinux defaults, for a policy without lxc_contexts.
    fn default() -> Self {
        Contexts {
            process: Label {
                user: "system_u".into(),
                role: "system_r".into(),
                typ: "container_t".into(),
                level: "s0".into(),
            },
            file: Label {
                user: "system_u".into(),
                role: "object_r".into(),
                typ: "container_file_t".into(),
                level: "s0".into(),
            },
        }
    }
}

impl Contexts {
    /// The contexts of the loaded policy: `SELINUXTYPE` from
    /// /etc/selinux/config, then its `contexts/lxc_contexts`; the defaults
    /// where either is missing.
    pub fn load() -> Contexts {
        let policy = std::fs::read_to_string("/etc/selinux/config")
            .ok()
            .and_then(|c| config_value(&c, "SELINUXTYPE"))
            .unwrap_or_else(|| "targeted".into());
        let path = Path::new("/etc/selinux")
            .join(policy)
            .join("contexts/lxc_contexts");
        match std::fs::read_to_string(path) {
            Ok(text) => Contexts::parse(&text),
            Err(_) => Contexts::default(),
        }
    }

    /// `process = "…"` and `file = "…"` from an lxc_contexts file, the
    /// defaults for what it lacks.
    pub fn parse(text: &str) -> Contexts {
        let d = Contexts::default();
        let get = |key: &str| config_value(text, key).and_then(|v| Label::parse(&v));
        Contexts {
            process: get("process").unwrap_or(d.process),
            file: get("file").unwrap_or(d.file),
        }
    }
}

/// `KEY = value` (value optionally quoted) from a config text.
fn config_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
    })
}

/// Is SELinux on in this kernel (selinuxfs mounted)?
pub fn enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

/// The MCS level of a pod that asked for none: `s0:cA,cB`, two distinct
/// categories below 1024 derived from the pod's ID, so every container of
/// the pod shares it, a restarted daemon derives the same one, and
/// different pods almost always differ (containerd draws it at random and
/// reserves it; a derived one needs no state to survive a restart).
pub fn pod_level(pod_id: &str) -> String {
    let h = Sha256::digest(pod_id.as_bytes());
    let a = u16::from_be_bytes([h[0], h[1]]) % 1024;
    let mut b = u16::from_be_bytes([h[2], h[3]]) % 1023;
    if b >= a {
        b += 1;
    }
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    format!("s0:c{lo},c{hi}")
}

/// The container's (process label, mount label): the policy's contexts
/// with the pod's and then the container's options laid over them, at
/// the container's level, else the pod's, else the pod's derived one. A
/// privileged container gets neither (it runs as its runtime does, as in
/// containerd).
pub fn container_labels(
    contexts: &Contexts,
    pod: Option<&cri::SeLinuxOption>,
    container: Option<&cri::SeLinuxOption>,
    pod_id: &str,
    privileged: bool,
) -> Option<(String, String)> {
    if privileged {
        return None;
    }
    let level = [container, pod]
        .into_iter()
        .flatten()
        .map(|o| o.level.clone())
        .find(|l| !l.is_empty())
        .unwrap_or_else(|| pod_level(pod_id));
    let mut process = contexts.process.with(pod).with(container);
    process.level = level.clone();
    let mut file = contexts.file.clone();
    file.level = level;
    Some((process.to_string(), file.to_string()))
}

/// Host directories no volume relabel may touch: relabelling them would
/// make the node's own files the container's (go-selinux refuses the same).
const NEVER_RELABEL: &[&str] = &[
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/etc/passwd",
    "/etc/pki",
    "/etc/shadow",
    "/home",
    "/lib",
    "/lib64",
    "/media",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/var",
    "/var/lib",
    "/var/log",
];

/// Whether a volume at `path` may not be relabelled.
pub fn relabel_refused(path: &Path) -> bool {
    NEVER_RELABEL.iter().any(|p| Path::new(p) == path)
        || path.starts_with("/usr")
        || path.starts_with("/proc")
        || path.starts_with("/sys")
}

/// Gives every file at and below `path` the label `label` (the
/// `security.selinux` xattr), not following symlinks: a volume asking for
/// `selinux_relabel`.
pub fn relabel(path: &Path, label: &str) -> std::io::Result<()> {
    let md = std::fs::symlink_metadata(path)?;
    xattr::set(path, "security.selinux", label.as_bytes())?;
    if md.is_dir() {
        for e in std::fs::read_dir(path)? {
            relabel(&e?.path(), label)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opt(user: &str, role: &str, typ: &str, level: &str) -> cri::SeLinuxOption {
        cri::SeLinuxOption {
            user: user.into(),
            role: role.into(),
            r#type: typ.into(),
            level: level.into(),
        }
    }

    #[test]
    fn labels_parse_and_print_with_levels_that_hold_colons() {
        let l = Label::parse("system_u:system_r:container_t:s0:c1,c2").expect("label");
        assert_eq!(l.level, "s0:c1,c2");
        assert_eq!(l.to_string(), "system_u:system_r:container_t:s0:c1,c2");
        assert_eq!(
            Label::parse("u:r:t").expect("no level").to_string(),
            "u:r:t"
        );
        assert_eq!(Label::parse("u:r"), None);
        assert_eq!(Label::parse("u::t"), None);
    }

    #[test]
    fn lxc_contexts_give_the_defaults_and_missing_keys_fall_back() {
        let c = Contexts::parse(
            "process = \"system_u:system_r:svirt_lxc_net_t:s0\"\n\
             content = \"system_u:object_r:virt_var_lib_t:s0\"\n\
             file = \"system_u:object_r:svirt_sandbox_file_t:s0\"\n",
        );
        assert_eq!(c.process.typ, "svirt_lxc_net_t");
        assert_eq!(c.file.typ, "svirt_sandbox_file_t");
        let partial = Contexts::parse("process = \"a_u:a_r:a_t:s0\"\n");
        assert_eq!(partial.process.typ, "a_t");
        assert_eq!(partial.file, Contexts::default().file);
    }

    #[test]
    fn a_pods_level_is_its_own_stable_and_two_distinct_categories() {
        let a = pod_level("pod-a");
        assert_eq!(a, pod_level("pod-a"), "stable across calls (and restarts)");
        assert_ne!(a, pod_level("pod-b"));
        let seen: std::collections::BTreeSet<String> =
            (0..2000).map(|i| pod_level(&format!("pod-{i}"))).collect();
        assert!(seen.len() > 1990, "{} distinct levels of 2000", seen.len());
        for l in &seen {
            let cats: Vec<u16> = l
                .trim_start_matches("s0:c")
                .split(",c")
                .map(|c| c.parse().expect("category"))
                .collect();
            assert_eq!(cats.len(), 2, "{l}");
            assert!(cats[0] < cats[1] && cats[1] < 1024, "{l}");
        }
    }

    #[test]
    fn options_override_field_by_field_and_the_level_is_the_pods() {
        let c = Contexts::default();
        let level = pod_level("p1");
        let (process, mount) = container_labels(&c, None, None, "p1", false).expect("labels");
        assert_eq!(process, format!("system_u:system_r:container_t:{level}"));
        assert_eq!(mount, format!("system_u:object_r:container_file_t:{level}"));
        // The pod's type, the container's user; the pod's level for both.
        let pod = opt("", "", "pod_t", "s0:c5,c6");
        let ctr = opt("ctr_u", "", "", "");
        let (process, mount) =
            container_labels(&c, Some(&pod), Some(&ctr), "p1", false).expect("labels");
        assert_eq!(process, "ctr_u:system_r:pod_t:s0:c5,c6");
        assert_eq!(mount, "system_u:object_r:container_file_t:s0:c5,c6");
        // The container's own level wins.
        let ctr = opt("", "", "spc_t", "s0:c7,c8");
        let (process, _) = container_labels(&c, Some(&pod), Some(&ctr), "p1", false).expect("l");
        assert_eq!(process, "system_u:system_r:spc_t:s0:c7,c8");
        assert_eq!(container_labels(&c, Some(&pod), None, "p1", true), None);
    }

    #[test]
    fn system_directories_are_never_relabelled() {
        for p in [
            "/",
            "/usr",
            "/usr/lib",
            "/etc",
            "/var/lib",
            "/home",
            "/sys/fs/cgroup",
        ] {
            assert!(relabel_refused(Path::new(p)), "{p}");
        }
        for p in [
            "/var/lib/kubelet/pods/x/volumes/v",
            "/srv/data",
            "/home/user/data",
        ] {
            assert!(!relabel_refused(Path::new(p)), "{p}");
        }
    }
}
