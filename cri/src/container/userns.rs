//! A container of a pod in its own user namespace: its root filesystem
//! and volumes seen through the pod's ID mappings (idmapped mounts made by
//! the daemon, see [`crate::idmap`]), so the image's root-owned files are
//! the container root's without a chown of any layer.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use k8s_cri::v1 as cri;
use oci_spec::runtime::{LinuxIdMapping, Spec};

use crate::idmap;

use super::ContainerError;

/// The pod's user namespace, opened, with its mappings.
pub struct PodUserns {
    fd: OwnedFd,
    mappings: cri::UserNamespace,
}

impl PodUserns {
    /// Opens the user namespace pinned at `path` of a pod whose config
    /// asks for `mappings`.
    pub fn open(path: &Path, mappings: cri::UserNamespace) -> Result<PodUserns, ContainerError> {
        Ok(PodUserns {
            fd: idmap::open_userns(path).map_err(idmap_err)?,
            mappings,
        })
    }

    /// The host uid and gid of the container's root.
    pub fn root_ids(&self) -> (u32, u32) {
        idmap::root_ids(&self.mappings)
    }

    /// Idmapped views of the image's layer dirs (topmost first), attached
    /// at `dir/0`, `dir/1`…, to stack the overlay on: overlayfs itself
    /// cannot be idmapped, its layers can (Linux 5.19). The views are only
    /// needed while mounting; [`idmap::detach_all`] removes them after.
    pub fn lowers(&self, lowers: &[PathBuf], dir: &Path) -> Result<Vec<PathBuf>, ContainerError> {
        let mut out = Vec::with_capacity(lowers.len());
        for (i, l) in lowers.iter().enumerate() {
            let t = dir.join(i.to_string());
            idmap::mount_point_for(l, &t).map_err(idmap_err)?;
            idmap::attach(l, self.fd.as_fd(), &t, false).map_err(idmap_err)?;
            out.push(t);
        }
        Ok(out)
    }

    /// Makes the overlay's upper dir owned by the container's root: the
    /// merged root directory takes its owner from it, and files the
    /// container creates land there as the root's host IDs.
    pub fn prepare_upper(&self, upper: &Path) -> Result<(), ContainerError> {
        std::fs::create_dir_all(upper).map_err(|e| ContainerError::io("create", upper, e))?;
        let (uid, gid) = self.root_ids();
        std::os::unix::fs::chown(upper, Some(uid), Some(gid))
            .map_err(|e| ContainerError::io("chown", upper, e))
    }

    /// Replaces every mount of `spec` that asks for ID mappings (CRI
    /// mounts kubelet maps, the image's volumes) by a plain bind of an
    /// idmapped view attached under `dir`, so the runtime needs no
    /// idmapping of its own. The mappings must be the pod's: a mount
    /// seen through other mappings would need a user namespace of its own.
    pub fn bind_idmapped(&self, spec: &mut Spec, dir: &Path) -> Result<(), ContainerError> {
        let Some(mut mounts) = spec.mounts().clone() else {
            return Ok(());
        };
        let want_u = ids(&self.mappings.uids);
        let want_g = ids(&self.mappings.gids);
        for (i, m) in mounts.iter_mut().enumerate() {
            if m.uid_mappings().is_none() && m.gid_mappings().is_none() {
                continue;
            }
            let dst = m.destination().display().to_string();
            let same = |got: &Option<Vec<LinuxIdMapping>>, want: &[(u32, u32, u32)]| {
                got.as_deref().map(|g| {
                    g.iter()
                        .map(|x| (x.container_id(), x.host_id(), x.size()))
                        .collect::<Vec<_>>()
                }) == Some(want.to_vec())
            };
            if !same(m.uid_mappings(), &want_u) || !same(m.gid_mappings(), &want_g) {
                return Err(ContainerError::InvalidArgument(format!(
                    "mount at {dst}: its ID mappings differ from the pod's user namespace"
                )));
            }
            let Some(src) = m.source().clone() else {
                return Err(ContainerError::InvalidArgument(format!(
                    "mount at {dst}: an idmapped mount needs a source"
                )));
            };
            let recursive = m
                .options()
                .as_ref()
                .is_some_and(|o| o.iter().any(|x| x == "rbind"));
            let view = dir.join(i.to_string());
            idmap::mount_point_for(&src, &view).map_err(idmap_err)?;
            idmap::attach(&src, self.fd.as_fd(), &view, recursive).map_err(idmap_err)?;
            m.set_source(Some(view));
            m.set_uid_mappings(None);
            m.set_gid_mappings(None);
        }
        spec.set_mounts(Some(mounts));
        Ok(())
    }
}

/// The mappings a CRI user namespace option names, as tuples
/// (container ID, host ID, length).
fn ids(m: &[cri::IdMapping]) -> Vec<(u32, u32, u32)> {
    m.iter()
        .map(|m| (m.container_id, m.host_id, m.length))
        .collect()
}

/// An idmapped-mount failure: the kernel or filesystem cannot idmap (an
/// EINVAL from mount_setattr) is the caller's precondition to meet.
pub fn idmap_err(e: idmap::IdmapError) -> ContainerError {
    match e {
        idmap::IdmapError::Mount {
            errno: nix::errno::Errno::EINVAL,
            ..
        } => ContainerError::FailedPrecondition(format!(
            "{e} (the filesystem cannot be idmapped on this kernel)"
        )),
        e => ContainerError::Idmap(e),
    }
}

/// The user namespace a pod's config asks for (validated when it ran).
pub fn pod_userns(pod: &crate::sandbox::SandboxRecord) -> Option<k8s_cri::v1::UserNamespace> {
    super::spec::namespaces::userns(pod.ns_options().userns_options.as_ref())
        .ok()
        .flatten()
        .cloned()
}
