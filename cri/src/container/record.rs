//! What the store keeps per container: its CRI config, its image, every
//! resource made for it and its life so far — enough to report its status
//! and to undo it after any crash.

use std::path::PathBuf;

use k8s_cri::v1 as cri;
use serde::{Deserialize, Serialize};

/// Where a container is in its life. Written before the matching action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// CreateContainer is under way: rolled back on restart.
    Creating,
    /// Created (process made, not started).
    Created,
    /// Started.
    Running,
    /// Its process ended.
    Exited,
    /// RemoveContainer is under way: finished on restart.
    Removing,
}

/// One container.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// 64 hex digits.
    pub id: String,
    /// Its pod.
    pub sandbox_id: String,
    /// The CRI config as kubelet sent it.
    pub config: cri::ContainerConfig,
    /// The image ID it runs.
    pub image_id: String,
    /// The image as the request named it.
    pub image_name: String,
    /// The image's layer chain IDs (kept from garbage collection).
    pub chain_ids: Vec<String>,
    /// Its phase.
    pub phase: Phase,
    /// Nanoseconds since the epoch.
    pub created_at: i64,
    /// When started (0 if never).
    pub started_at: i64,
    /// When it exited (0 if not yet).
    pub finished_at: i64,
    /// Exit code (valid once exited).
    pub exit_code: i32,
    /// Why it exited: Completed, Error, OOMKilled.
    pub reason: String,
    /// A message for the status.
    pub message: String,
    /// Whether the kernel OOM-killed one of its processes.
    pub oom_killed: bool,
    /// Its init PID while running.
    pub pid: u32,
    /// `<state>/containers/<id>`: bundle, rootfs mount point.
    pub bundle: PathBuf,
    /// `<root>/containers/<id>`: writable layer (upper, work), volumes.
    pub data: PathBuf,
    /// The CRI log file (empty for none).
    pub log_path: PathBuf,
    /// The shim's address.
    pub shim_address: String,
    /// Runtime binary and root (the pod's handler).
    pub runtime_binary: PathBuf,
    /// The runtime's `--root`.
    pub runtime_root: PathBuf,
    /// The shim it runs under (the pod's handler's).
    #[serde(default)]
    pub shim: crate::shim_client::ShimKind,
    /// Its `linux.cgroupsPath`.
    pub cgroups_path: String,
    /// Signal that stops it gracefully.
    pub stop_signal: String,
    /// The user it runs as (uid, gid, additional gids).
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
    /// Its supplementary gids.
    pub additional_gids: Vec<u32>,
    /// The images it mounts as volumes (CRI `Mount.image`), in the order
    /// of its config's image mounts: kept from removal and collection
    /// while it exists. Absent in records written before image volumes.
    #[serde(default)]
    pub image_volumes: Vec<ImageVolume>,
}

/// An image a container mounts read-only as a volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageVolume {
    /// The path in the container.
    pub container_path: String,
    /// The image ID.
    pub image_id: String,
    /// Its layers' chain IDs.
    pub chain_ids: Vec<String>,
}

impl ContainerRecord {
    /// A record of container `id` in `phase`, for unit tests.
    #[cfg(test)]
    pub fn for_test(id: &str, phase: Phase) -> ContainerRecord {
        ContainerRecord {
            id: id.into(),
            sandbox_id: "p".into(),
            config: Default::default(),
            image_id: String::new(),
            image_name: String::new(),
            chain_ids: Vec::new(),
            phase,
            created_at: 1,
            started_at: 2,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            oom_killed: false,
            pid: 42,
            bundle: Default::default(),
            data: Default::default(),
            log_path: Default::default(),
            shim_address: String::new(),
            runtime_binary: Default::default(),
            runtime_root: Default::default(),
            shim: Default::default(),
            cgroups_path: String::new(),
            stop_signal: "SIGTERM".into(),
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
            image_volumes: Vec::new(),
        }
    }

    /// kubelet's unique name for a container in a pod.
    pub fn name_key(config: &cri::ContainerConfig, pod: &cri::PodSandboxConfig) -> String {
        let m = config.metadata.clone().unwrap_or_default();
        let p = pod.metadata.clone().unwrap_or_default();
        format!(
            "{}_{}_{}_{}_{}",
            m.name, p.name, p.namespace, p.uid, m.attempt
        )
    }

    /// Fails with FailedPrecondition unless the container is running: what
    /// exec, attach and log reopening need.
    pub fn ensure_running(&self) -> Result<(), super::ContainerError> {
        if self.phase == Phase::Running {
            Ok(())
        } else {
            Err(super::ContainerError::FailedPrecondition(format!(
                "container {} is {:?}, not running",
                self.id, self.phase
            )))
        }
    }

    /// The mounted root filesystem.
    pub fn rootfs(&self) -> PathBuf {
        self.bundle.join("rootfs")
    }

    /// Where image volume `i` is mounted on the host (read-only), bound
    /// from there into the container.
    pub fn image_volume_dir(&self, i: usize) -> PathBuf {
        self.bundle.join("image-volumes").join(i.to_string())
    }
}

/// The events a container's phase change means (see
/// [`Phase`]): none for a change kubelet does not see.
pub fn lifecycle_events(
    before: Option<Phase>,
    after: Option<Phase>,
) -> Vec<cri::ContainerEventType> {
    use cri::ContainerEventType as E;
    use Phase as P;
    match (before, after) {
        (Some(P::Creating), Some(P::Created)) => vec![E::ContainerCreatedEvent],
        (Some(P::Created), Some(P::Running)) => vec![E::ContainerStartedEvent],
        (Some(P::Created | P::Running), Some(P::Exited)) => vec![E::ContainerStoppedEvent],
        // A container kubelet saw (anything past Creating) disappears.
        (Some(P::Created | P::Running | P::Exited | P::Removing), None) => {
            vec![E::ContainerDeletedEvent]
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::Phase as C;
    use super::*;
    use k8s_cri::v1::ContainerEventType as E;

    #[test]
    fn container_phases_map_to_kubelets_events() {
        let t = lifecycle_events;
        assert_eq!(
            t(Some(C::Creating), Some(C::Created)),
            vec![E::ContainerCreatedEvent]
        );
        assert_eq!(
            t(Some(C::Created), Some(C::Running)),
            vec![E::ContainerStartedEvent]
        );
        assert_eq!(
            t(Some(C::Running), Some(C::Exited)),
            vec![E::ContainerStoppedEvent]
        );
        assert_eq!(
            t(Some(C::Created), Some(C::Exited)),
            vec![E::ContainerStoppedEvent]
        );
        assert_eq!(t(Some(C::Removing), None), vec![E::ContainerDeletedEvent]);
        // Unseen or unchanged: nothing.
        assert!(t(Some(C::Creating), None).is_empty());
        assert!(t(Some(C::Running), Some(C::Running)).is_empty());
        assert!(t(Some(C::Exited), Some(C::Removing)).is_empty());
    }
}
