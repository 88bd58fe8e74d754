//! The namespaces a container has: a new mount namespace always; the pod's
//! pinned network, IPC and UTS namespaces (none listed — the host's — for
//! host network / host IPC pods); the PID namespace per `NamespaceOption`;
//! a new cgroup namespace on cgroup v2 unless privileged; a user namespace
//! with the pod's mappings when the pod asks for one. containerd's
//! `WithPodNamespaces` (internal/cri/opts/spec_opts.go) and
//! `buildLinuxSpec` (internal/cri/server/container_create.go).

use std::path::{Path, PathBuf};

use k8s_cri::v1 as cri;
use oci_spec::runtime::{
    LinuxIdMapping, LinuxIdMappingBuilder, LinuxNamespace, LinuxNamespaceType,
};

use super::{SpecError, SpecInput};

/// The namespace list and, with a user namespace, its mappings.
#[derive(Debug, Default)]
pub struct Namespaces {
    /// `linux.namespaces`.
    pub list: Vec<LinuxNamespace>,
    /// `linux.uidMappings` (empty without a user namespace).
    pub uid_mappings: Vec<LinuxIdMapping>,
    /// `linux.gidMappings` (empty without a user namespace).
    pub gid_mappings: Vec<LinuxIdMapping>,
}

fn ns(typ: LinuxNamespaceType, path: Option<&Path>) -> LinuxNamespace {
    let mut n = LinuxNamespace::default();
    n.set_typ(typ).set_path(path.map(Path::to_path_buf));
    n
}

/// CRI id mappings as OCI ones.
pub fn id_mappings(m: &[cri::IdMapping]) -> Result<Vec<LinuxIdMapping>, SpecError> {
    m.iter()
        .map(|m| {
            LinuxIdMappingBuilder::default()
                .container_id(m.container_id)
                .host_id(m.host_id)
                .size(m.length)
                .build()
                .map_err(|e| SpecError::InvalidNamespaces(format!("id mapping: {e}")))
        })
        .collect()
}

fn mode(v: i32, what: &str) -> Result<cri::NamespaceMode, SpecError> {
    cri::NamespaceMode::try_from(v)
        .map_err(|_| SpecError::InvalidNamespaces(format!("unknown {what} namespace mode {v}")))
}

/// The user namespace a container (or pod) asks for, None for the host's
/// (no options, or mode NODE). Only POD is supported, with one mapping
/// each of uids and gids from container ID 0 ([`crate::idmap::check_mappings`]),
/// as the CRI says (CONTAINER and TARGET are not user namespace modes).
pub fn userns(opts: Option<&cri::UserNamespace>) -> Result<Option<&cri::UserNamespace>, SpecError> {
    crate::idmap::requested_userns(opts).map_err(SpecError::InvalidNamespaces)
}

fn same_mappings(a: &[cri::IdMapping], b: &[cri::IdMapping]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            (x.host_id, x.container_id, x.length) == (y.host_id, y.container_id, y.length)
        })
}

/// The container's namespaces.
///
/// The pod's namespaces come from the sandbox facts, not the container's
/// `network`/`ipc` modes (kubelet copies the pod's). The user namespace,
/// as containerd checks, must be the pod's.
pub fn namespaces(input: &SpecInput<'_>, privileged: bool) -> Result<Namespaces, SpecError> {
    let sc = input
        .config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref());
    let default_opts = cri::NamespaceOption::default();
    let opts = sc
        .and_then(|s| s.namespace_options.as_ref())
        .unwrap_or(&default_opts);
    let sb = input.sandbox;
    let mut out = Namespaces::default();
    out.list.push(ns(LinuxNamespaceType::Mount, None));

    match mode(opts.pid, "pid")? {
        cri::NamespaceMode::Container => out.list.push(ns(LinuxNamespaceType::Pid, None)),
        cri::NamespaceMode::Pod => {
            if sb.infra_pid == 0 {
                return Err(SpecError::SandboxNotRunning(sb.id.clone()));
            }
            let p = PathBuf::from(format!("/proc/{}/ns/pid", sb.infra_pid));
            out.list.push(ns(LinuxNamespaceType::Pid, Some(&p)));
        }
        cri::NamespaceMode::Node => {}
        cri::NamespaceMode::Target => {
            if opts.target_id.is_empty() {
                return Err(SpecError::InvalidNamespaces(
                    "pid namespace mode TARGET needs a target_id".into(),
                ));
            }
            match input.target_pid {
                Some(pid) if pid != 0 => {
                    let p = PathBuf::from(format!("/proc/{pid}/ns/pid"));
                    out.list.push(ns(LinuxNamespaceType::Pid, Some(&p)));
                }
                _ => return Err(SpecError::TargetNotRunning(opts.target_id.clone())),
            }
        }
    }
    for (typ, path) in [
        (LinuxNamespaceType::Network, &sb.netns),
        (LinuxNamespaceType::Ipc, &sb.ipc_ns),
        (LinuxNamespaceType::Uts, &sb.uts_ns),
    ] {
        if let Some(p) = path {
            out.list.push(ns(typ, Some(p)));
        }
    }
    // cgroupns hides the host's cgroup tree; containerd uses it on v2
    // only, and not for privileged containers.
    if sb.cgroup_v2 && !privileged {
        out.list.push(ns(LinuxNamespaceType::Cgroup, None));
    }

    let user = userns(opts.userns_options.as_ref())?;
    if let Some(pod_sc) = &sb.pod_security {
        let pod = userns(
            pod_sc
                .namespace_options
                .as_ref()
                .and_then(|o| o.userns_options.as_ref()),
        )?;
        let same = match (pod, user) {
            (None, None) => true,
            (Some(p), Some(c)) => {
                same_mappings(&p.uids, &c.uids) && same_mappings(&p.gids, &c.gids)
            }
            _ => false,
        };
        if !same {
            return Err(SpecError::InvalidNamespaces(
                "the container's user namespace differs from its pod's".into(),
            ));
        }
    }
    if let Some(u) = user {
        // The pod's user namespace, pinned when its infra made it (with
        // the pod's net, IPC and UTS namespaces, which it owns). The
        // mappings are repeated, as containerd does, for runtimes that
        // check them against the namespace joined.
        let Some(path) = &sb.user_ns else {
            return Err(SpecError::InvalidNamespaces(
                "the container asks for a user namespace but its pod has none".into(),
            ));
        };
        out.list.push(ns(LinuxNamespaceType::User, Some(path)));
        out.uid_mappings = id_mappings(&u.uids)?;
        out.gid_mappings = id_mappings(&u.gids)?;
    }
    Ok(out)
}
