//! Which namespaces a container gets: new ones (unshared by the runtime) and
//! existing ones joined by path. The plan is computed before fork so a bad
//! path is reported by `create` itself; the namespace fds are opened then too,
//! because after joining a mount namespace host paths mean something else.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

use crate::error::{Context, Error, Result};

/// One namespace to join, with its file already open.
#[derive(Debug)]
pub struct Join {
    /// The kind of namespace.
    pub kind: LinuxNamespaceType,
    /// The nsfs file, open.
    pub fd: OwnedFd,
    /// Where it came from, for error messages.
    pub path: PathBuf,
}

/// The namespace plan of a container or exec.
#[derive(Debug)]
pub struct Plan {
    /// Namespaces to join, in the order they must be joined (user first,
    /// mount last).
    pub joins: Vec<Join>,
    /// Namespaces to create (CLONE_NEW* flags).
    pub new: CloneFlags,
}

impl Default for Plan {
    fn default() -> Self {
        Self {
            joins: Vec::new(),
            new: CloneFlags::empty(),
        }
    }
}

/// The clone flag of a namespace type.
pub fn flag(kind: LinuxNamespaceType) -> CloneFlags {
    match kind {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// The /proc/PID/ns/ file name of a namespace type.
pub fn proc_name(kind: LinuxNamespaceType) -> &'static str {
    match kind {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// Join order: the user namespace first (it grants the rights for the
/// rest), the mount namespace last (it changes what paths mean).
fn rank(kind: LinuxNamespaceType) -> u8 {
    match kind {
        LinuxNamespaceType::User => 0,
        LinuxNamespaceType::Mount => 9,
        _ => 5,
    }
}

/// Plan the namespaces of a new container from its spec.
pub fn plan_for_spec(list: &[LinuxNamespace]) -> Result<Plan> {
    let mut plan = Plan::default();
    let mut seen = CloneFlags::empty();
    for ns in list {
        let f = flag(ns.typ());
        if seen.contains(f) {
            return Err(Error::InvalidArgument(format!(
                "namespace {} listed twice",
                proc_name(ns.typ())
            )));
        }
        seen |= f;
        match ns.path() {
            None => plan.new |= f,
            Some(p) if p.as_os_str().is_empty() => plan.new |= f,
            Some(p) => {
                let file = File::open(p)
                    .ctx(|| format!("open {} namespace {}", proc_name(ns.typ()), p.display()))?;
                plan.joins.push(Join {
                    kind: ns.typ(),
                    fd: file.into(),
                    path: p.clone(),
                });
            }
        }
    }
    plan.joins.sort_by_key(|j| rank(j.kind));
    Ok(plan)
}

/// Plan an exec into the running process `pid`: join each of its namespaces
/// that differs from ours.
pub fn plan_for_exec(pid: i32) -> Result<Plan> {
    use LinuxNamespaceType::*;
    let mut plan = Plan::default();
    for kind in [User, Ipc, Uts, Network, Pid, Cgroup, Time, Mount] {
        let path = PathBuf::from(format!("/proc/{pid}/ns/{}", proc_name(kind)));
        let theirs = match std::fs::metadata(&path) {
            Ok(m) => m,
            // The kernel may lack this namespace type (time on old kernels).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).ctx(|| format!("stat {}", path.display())),
        };
        let ours = std::fs::metadata(format!("/proc/self/ns/{}", proc_name(kind)))
            .ctx(|| format!("stat /proc/self/ns/{}", proc_name(kind)))?;
        if theirs.ino() == ours.ino() && theirs.dev() == ours.dev() {
            continue;
        }
        let file = File::open(&path).ctx(|| format!("open {}", path.display()))?;
        plan.joins.push(Join {
            kind,
            fd: file.into(),
            path,
        });
    }
    plan.joins.sort_by_key(|j| rank(j.kind));
    Ok(plan)
}

impl Plan {
    /// Will the process get a user namespace (new or joined)?
    pub fn has_user(&self) -> bool {
        self.new.contains(CloneFlags::CLONE_NEWUSER)
            || self
                .joins
                .iter()
                .any(|j| j.kind == LinuxNamespaceType::User)
    }

    /// Is a namespace of this kind new or joined (i.e. not the host's)?
    pub fn isolates(&self, kind: LinuxNamespaceType) -> bool {
        self.new.contains(flag(kind)) || self.joins.iter().any(|j| j.kind == kind)
    }

    /// Join the namespaces of one rank group: `user` only, or everything
    /// else. Called in the child between fork and the init's fork.
    pub fn join(&self, user: bool) -> Result<()> {
        for j in self
            .joins
            .iter()
            .filter(|j| (j.kind == LinuxNamespaceType::User) == user)
        {
            nix::sched::setns(j.fd.as_fd(), flag(j.kind))
                .ctx(|| format!("join {} namespace {}", proc_name(j.kind), j.path.display()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(kind: LinuxNamespaceType, path: Option<&str>) -> LinuxNamespace {
        let mut n = LinuxNamespace::default();
        n.set_typ(kind);
        n.set_path(path.map(PathBuf::from));
        n
    }

    #[test]
    fn new_namespaces_become_flags_and_joins_are_ordered() {
        let list = vec![
            ns(LinuxNamespaceType::Mount, Some("/proc/self/ns/mnt")),
            ns(LinuxNamespaceType::Pid, None),
            ns(LinuxNamespaceType::Network, Some("/proc/self/ns/net")),
            ns(LinuxNamespaceType::User, Some("/proc/self/ns/user")),
        ];
        let p = plan_for_spec(&list).expect("plan");
        assert_eq!(p.new, CloneFlags::CLONE_NEWPID);
        let kinds: Vec<_> = p.joins.iter().map(|j| j.kind).collect();
        assert_eq!(
            kinds,
            vec![
                LinuxNamespaceType::User,
                LinuxNamespaceType::Network,
                LinuxNamespaceType::Mount
            ]
        );
        assert!(p.has_user());
        assert!(p.isolates(LinuxNamespaceType::Pid));
        assert!(!p.isolates(LinuxNamespaceType::Uts));
    }

    #[test]
    fn duplicate_and_missing_namespaces_are_errors() {
        let dup = vec![
            ns(LinuxNamespaceType::Pid, None),
            ns(LinuxNamespaceType::Pid, None),
        ];
        assert!(plan_for_spec(&dup).is_err());
        let missing = vec![ns(LinuxNamespaceType::Network, Some("/nonexistent/ns"))];
        let e = plan_for_spec(&missing).expect_err("missing path");
        assert!(e.to_string().contains("/nonexistent/ns"), "{e}");
    }

    #[test]
    fn exec_into_self_joins_nothing() {
        let p = plan_for_exec(std::process::id() as i32).expect("plan");
        assert!(p.joins.is_empty());
    }
}
