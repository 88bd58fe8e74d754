//! What the store keeps for a sandbox: the pod's CRI config and every
//! resource made for it, so that teardown — after a failure, a removal or
//! a crash — knows exactly what to undo.

use std::path::PathBuf;

use k8s_cri::v1 as cri;
use serde::{Deserialize, Serialize};

/// Where a sandbox is in its life. Written before the matching action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// RunPodSandbox is under way: on restart, roll back.
    Creating,
    /// The infra runs; containers may be added.
    Ready,
    /// Stopped (or its infra died): only removal is left.
    NotReady,
    /// RemovePodSandbox is under way: on restart, finish it.
    Removing,
}

/// One sandbox.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SandboxRecord {
    /// 64 hex digits.
    pub id: String,
    /// The pod's config as kubelet sent it.
    pub config: cri::PodSandboxConfig,
    /// The runtime handler name it runs with.
    pub runtime_handler: String,
    /// The runtime binary and root of that handler, fixed at creation.
    pub runtime_binary: PathBuf,
    /// The runtime's `--root`.
    pub runtime_root: PathBuf,
    /// The shim the handler runs its tasks under.
    #[serde(default)]
    pub shim: crate::shim_client::ShimKind,
    /// Its phase.
    pub phase: Phase,
    /// Creation time, nanoseconds since the epoch.
    pub created_at: i64,
    /// `<state>/pods/<id>`: namespace pins, files, shm, the infra bundle.
    pub dir: PathBuf,
    /// The pinned network namespace; None on the host network.
    pub netns: Option<PathBuf>,
    /// The pod's IPs, primary first.
    pub ips: Vec<String>,
    /// Whether CNI ADD was (or may have been) run: DEL is owed.
    pub network_attached: bool,
    /// The CNI ADD result, handed back to DEL.
    pub cni_result: Option<serde_json::Value>,
    /// The pod cgroup (cgroupfs path or systemd slice).
    pub cgroup_parent: String,
    /// Whether the daemon made the pod cgroup (and so removes it).
    pub cgroup_created: bool,
    /// The infra's `linux.cgroupsPath`.
    pub infra_cgroup: String,
    /// The infra shim's address, once started.
    pub shim_address: String,
    /// The infra's PID (in the host's PID namespace).
    pub infra_pid: u32,
    /// How the infra ended, if it has.
    pub exit: Option<crate::shim_client::Exit>,
}

impl SandboxRecord {
    /// kubelet's name for the pod: unique per running attempt.
    pub fn name_key(config: &cri::PodSandboxConfig) -> String {
        let m = config.metadata.clone().unwrap_or_default();
        format!("{}_{}_{}_{}", m.name, m.namespace, m.uid, m.attempt)
    }

    /// The pod's namespace options (defaults when unset).
    pub fn ns_options(&self) -> cri::NamespaceOption {
        ns_options(&self.config)
    }

    /// The infra bundle directory.
    pub fn bundle(&self) -> PathBuf {
        // containerd's runc shim finds the bundle of a task whose shim is
        // gone as `<parent of its cwd>/<task ID>`: a shim v2 pod's bundle
        // is named for the pod.
        if self.shim.is_v2() {
            self.dir.join(&self.id)
        } else {
            self.dir.join("infra")
        }
    }
}

/// The namespace options of a pod config (defaults when unset).
pub fn ns_options(c: &cri::PodSandboxConfig) -> cri::NamespaceOption {
    c.linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default()
}

/// Whether the pod uses the node's network.
pub fn host_network(o: &cri::NamespaceOption) -> bool {
    o.network == cri::NamespaceMode::Node as i32
}

/// The events a pod's phase change means: a pod is created and started at
/// once (its infra process runs when RunPodSandbox answers).
pub fn lifecycle_events(
    before: Option<Phase>,
    after: Option<Phase>,
) -> Vec<cri::ContainerEventType> {
    use cri::ContainerEventType as E;
    use Phase as P;
    match (before, after) {
        (Some(P::Creating), Some(P::Ready)) => {
            vec![E::ContainerCreatedEvent, E::ContainerStartedEvent]
        }
        (Some(P::Ready), Some(P::NotReady | P::Removing)) => vec![E::ContainerStoppedEvent],
        (Some(P::Ready | P::NotReady | P::Removing), None) => vec![E::ContainerDeletedEvent],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::Phase as S;
    use super::*;
    use k8s_cri::v1::ContainerEventType as E;

    #[test]
    fn pod_phases_map_to_kubelets_events() {
        let t = lifecycle_events;
        assert_eq!(
            t(Some(S::Creating), Some(S::Ready)),
            vec![E::ContainerCreatedEvent, E::ContainerStartedEvent]
        );
        assert_eq!(
            t(Some(S::Ready), Some(S::NotReady)),
            vec![E::ContainerStoppedEvent]
        );
        assert_eq!(t(Some(S::NotReady), None), vec![E::ContainerDeletedEvent]);
        assert!(t(Some(S::Creating), None).is_empty());
        assert!(t(Some(S::NotReady), Some(S::Removing)).is_empty());
    }
}
