//! What making and tearing down pods and containers does to the node —
//! namespace pins, the shm tmpfs, the pod cgroup, CNI ADD and DEL, a
//! container's root filesystem — and what it asks of shims
//! ([`TaskEffects`]), behind small traits. The orchestration of pods
//! ([`super::run`], [`super::stop`], [`super::remove`], [`super::recover`])
//! and of containers (create, start, stop, remove, recover) only reaches
//! the node through these, so its crash recovery is table-tested against a
//! fake step by step without root (`sandbox::crash_tests`,
//! `container::crash_tests`); [`Effects::real`] is the node itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use oci_spec::runtime::LinuxResources;
use serde_json::Value;

use crate::image::rootfs::{self, RootfsError};
use crate::namespaces::{Kind, Pinned, Setup};
use crate::network::{self, AddResult, CniError, NetworkConf, PodNetwork};
use crate::shim_effects::{ShimTasks, TaskEffects};

use super::{cgroup, resources, shm, SandboxError};

/// Node-level effects of pods and containers. Each undo is idempotent: undoing what is
/// not there is success, so a teardown interrupted by a crash is simply
/// run again.
#[async_trait]
pub trait NodeEffects: Send + Sync + std::fmt::Debug {
    /// Makes namespaces of `kinds` and pins them at `dir/<kind>`; on
    /// failure nothing stays pinned.
    async fn pin_namespaces(
        &self,
        dir: &Path,
        kinds: &[Kind],
        setup: &Setup,
    ) -> Result<(), SandboxError>;

    /// Pins the namespaces of `kinds` that process `pid` is in at
    /// `dir/<kind>` (a pod in its own user namespace: its infra made
    /// them).
    async fn adopt_namespaces(
        &self,
        dir: &Path,
        pid: u32,
        kinds: &[Kind],
    ) -> Result<(), SandboxError>;

    /// Unpins whatever is pinned under `dir` and removes the pin files.
    async fn unpin_namespaces(&self, dir: &Path) -> Result<(), SandboxError>;

    /// Mounts the pod's shm tmpfs at `dir`, owned by `owner`.
    async fn mount_shm(&self, dir: &Path, owner: Option<(u32, u32)>) -> Result<(), SandboxError>;

    /// Unmounts the pod's shm.
    async fn unmount_shm(&self, dir: &Path) -> Result<(), SandboxError>;

    /// Whether pod cgroup `path` exists already (kubelet made it).
    async fn cgroup_exists(&self, path: &str, systemd: bool) -> Result<bool, SandboxError>;

    /// Creates pod cgroup `path` with `limits`.
    async fn make_cgroup(
        &self,
        path: &str,
        systemd: bool,
        limits: Option<LinuxResources>,
    ) -> Result<(), SandboxError>;

    /// Removes pod cgroup `path` and anything left below it.
    async fn remove_cgroup(&self, path: &str, systemd: bool) -> Result<(), SandboxError>;

    /// Mounts a container's root filesystem: `lowers` (topmost first)
    /// under the writable `upper` at `target` ([`rootfs::mount_overlay`]).
    async fn mount_rootfs(
        &self,
        lowers: &[PathBuf],
        upper: &Path,
        work: &Path,
        target: &Path,
        context: Option<&str>,
    ) -> Result<(), RootfsError>;

    /// Unmounts a container's root filesystem ([`rootfs::unmount`]), or
    /// an image volume's mount.
    async fn unmount_rootfs(&self, target: &Path) -> Result<(), RootfsError>;

    /// Mounts an image read-only at `target` for an image volume: `lowers`
    /// (topmost first) ([`rootfs::mount_readonly`]).
    async fn mount_image_volume(
        &self,
        lowers: &[PathBuf],
        target: &Path,
    ) -> Result<(), RootfsError>;

    /// CNI ADD ([`network::add`]).
    async fn network_add(
        &self,
        conf: &NetworkConf,
        bin_dirs: &[PathBuf],
        pod: &PodNetwork,
    ) -> Result<AddResult, CniError>;

    /// CNI DEL ([`network::del`]).
    async fn network_del(
        &self,
        conf: &NetworkConf,
        bin_dirs: &[PathBuf],
        pod: &PodNetwork,
        prev: Option<&Value>,
    ) -> Result<(), CniError>;
}

/// Everything a pod operation may do outside the daemon's own memory and
/// store.
#[derive(Clone, Debug)]
pub struct Effects {
    /// The node: namespaces, mounts, cgroups, CNI.
    pub node: Arc<dyn NodeEffects>,
    /// Shims and the tasks under them.
    pub tasks: Arc<dyn TaskEffects>,
}

impl Effects {
    /// The node itself and carapace-shim.
    pub fn real() -> Self {
        Effects {
            node: Arc::new(Node),
            tasks: Arc::new(ShimTasks),
        }
    }
}

/// The real node.
#[derive(Debug, Default)]
pub struct Node;

#[async_trait]
impl NodeEffects for Node {
    async fn pin_namespaces(
        &self,
        dir: &Path,
        kinds: &[Kind],
        setup: &Setup,
    ) -> Result<(), SandboxError> {
        Pinned::create(dir, kinds, setup)?;
        Ok(())
    }

    async fn adopt_namespaces(
        &self,
        dir: &Path,
        pid: u32,
        kinds: &[Kind],
    ) -> Result<(), SandboxError> {
        Pinned::adopt(dir, pid, kinds)?;
        Ok(())
    }

    async fn unpin_namespaces(&self, dir: &Path) -> Result<(), SandboxError> {
        Ok(Pinned::unpin_all(dir)?)
    }

    async fn mount_shm(&self, dir: &Path, owner: Option<(u32, u32)>) -> Result<(), SandboxError> {
        shm::mount(dir, owner)
    }

    async fn unmount_shm(&self, dir: &Path) -> Result<(), SandboxError> {
        shm::unmount(dir)
    }

    async fn cgroup_exists(&self, path: &str, systemd: bool) -> Result<bool, SandboxError> {
        cgroup::exists(path, systemd)
    }

    async fn make_cgroup(
        &self,
        path: &str,
        systemd: bool,
        limits: Option<LinuxResources>,
    ) -> Result<(), SandboxError> {
        let parent = path.to_string();
        cgroup::off_runtime(path, move || {
            cgroup::ensure(&parent, systemd)?;
            match limits {
                Some(l) => resources::apply(&parent, &l, systemd),
                None => Ok(()),
            }
        })
        .await
    }

    async fn remove_cgroup(&self, path: &str, systemd: bool) -> Result<(), SandboxError> {
        let parent = path.to_string();
        cgroup::off_runtime(path, move || cgroup::remove(&parent, systemd)).await
    }

    async fn mount_rootfs(
        &self,
        lowers: &[PathBuf],
        upper: &Path,
        work: &Path,
        target: &Path,
        context: Option<&str>,
    ) -> Result<(), RootfsError> {
        rootfs::mount_overlay(lowers, upper, work, target, context)
    }

    async fn unmount_rootfs(&self, target: &Path) -> Result<(), RootfsError> {
        rootfs::unmount(target)
    }

    async fn mount_image_volume(
        &self,
        lowers: &[PathBuf],
        target: &Path,
    ) -> Result<(), RootfsError> {
        rootfs::mount_readonly(lowers, target)
    }

    async fn network_add(
        &self,
        conf: &NetworkConf,
        bin_dirs: &[PathBuf],
        pod: &PodNetwork,
    ) -> Result<AddResult, CniError> {
        network::add(conf, bin_dirs, pod).await
    }

    async fn network_del(
        &self,
        conf: &NetworkConf,
        bin_dirs: &[PathBuf],
        pod: &PodNetwork,
        prev: Option<&Value>,
    ) -> Result<(), CniError> {
        network::del(conf, bin_dirs, pod, prev).await
    }
}
