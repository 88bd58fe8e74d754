//! CreateContainer from a checkpoint (CRI-O's conventions, which kubelet's
//! restore follows): either the archive's absolute path stands where the
//! image reference goes, or the image is a checkpoint image (one layer
//! holding the archive's content, marked by CRI-O's annotation), pulled or
//! imported as any image. The container is made as any other, on the
//! checkpointed container's image (which must be on the node), with the
//! archive's rootfs changes stacked over that image and its process from
//! the archive's spec; its shim then restores the CRIU images instead of
//! creating a new process, and StartContainer resumes it. Everything else
//! (pod, mounts, log path, limits) is the new request's: the network is
//! the new pod's.

use std::path::{Path, PathBuf};

use k8s_cri::v1 as cri;

use crate::checkpoint::{self, archive, rootfs_diff, Criu};
use crate::image::unpack::{self, Compression, ImageBudget, Limits};
use crate::sandbox::SandboxRecord;

use super::{ContainerError, Containers};

/// A checkpoint a container is being restored from.
#[derive(Debug)]
pub struct Restore {
    /// The archive, or the checkpoint image's layer directory.
    archive: PathBuf,
    /// Whether `archive` is a directory (a checkpoint image's layer).
    unpacked: bool,
    meta: archive::Meta,
    /// A checkpoint image's layers: in use by the container, so the image
    /// cannot be removed under its restore.
    pub chain_ids: Vec<String>,
}

/// The checkpoint `image` names: an absolute path (no image reference is
/// one) is an archive; an image on the node carrying CRI-O's checkpoint
/// annotation is a checkpoint image. None for any other image.
pub async fn open(cs: &Containers, image: &str) -> Result<Option<Restore>, ContainerError> {
    let path = PathBuf::from(image);
    if !path.is_absolute() {
        return open_image(cs, image).await;
    }
    let p = path.clone();
    let meta = tokio::task::spawn_blocking(move || archive::read_meta(&p))
        .await
        .map_err(|e| ContainerError::InvalidArgument(format!("read checkpoint: {e}")))?
        .map_err(|e| match e {
            archive::ArchiveError::Io { source, .. }
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                ContainerError::NotFound(format!("checkpoint archive {}", path.display()))
            }
            other => ContainerError::InvalidArgument(format!(
                "image {} is a path but not a checkpoint archive: {other}",
                path.display()
            )),
        })?;
    criu_ready(&path).await?;
    Ok(Some(Restore {
        archive: path,
        unpacked: false,
        meta,
        chain_ids: Vec::new(),
    }))
}

/// A checkpoint image on the node: its topmost layer is the checkpoint.
async fn open_image(cs: &Containers, image: &str) -> Result<Option<Restore>, ContainerError> {
    let Some(rec) = cs.images.resolve(image)? else {
        // Not on the node: the usual NotFound comes later.
        return Ok(None);
    };
    // Checkpoint images are one layer over nothing (buildah from scratch):
    // only those have their manifest read.
    let marked = rec.config["config"]["Labels"][archive::IMAGE_ANNOTATION].is_string()
        || (rec.layers.len() == 1
            && cs
                .images
                .manifest(&rec)
                .is_ok_and(|m| m["annotations"][archive::IMAGE_ANNOTATION].is_string()));
    if !marked {
        return Ok(None);
    }
    let layer = rec.layers.last().ok_or_else(|| {
        ContainerError::InvalidArgument(format!("checkpoint image {image} has no layer"))
    })?;
    let dir = cs.images.layer_dir(&layer.chain_id)?;
    let d = dir.clone();
    let meta = tokio::task::spawn_blocking(move || archive::read_meta_dir(&d))
        .await
        .map_err(|e| ContainerError::InvalidArgument(format!("read checkpoint: {e}")))?
        .map_err(|e| {
            ContainerError::InvalidArgument(format!(
                "image {image} is marked as a checkpoint but is not one: {e}"
            ))
        })?;
    criu_ready(Path::new(image)).await?;
    Ok(Some(Restore {
        archive: dir,
        unpacked: true,
        meta,
        chain_ids: rec.layers.iter().map(|l| l.chain_id.clone()).collect(),
    }))
}

/// FailedPrecondition, naming why, where CRIU cannot restore.
async fn criu_ready(what: &Path) -> Result<(), ContainerError> {
    let criu = tokio::task::spawn_blocking(checkpoint::criu)
        .await
        .map_err(|e| ContainerError::InvalidArgument(format!("probe CRIU: {e}")))?;
    if let Criu::Unusable(why) = criu {
        return Err(ContainerError::FailedPrecondition(format!(
            "cannot restore from checkpoint {} on this node: {why}",
            what.display()
        )));
    }
    Ok(())
}

impl Restore {
    /// The checkpointed container's image, by ID first, then by name: it
    /// must be on the node (kubelet pulls it, as for any image).
    pub fn base_image(&self, cs: &Containers) -> Result<String, ContainerError> {
        let c = &self.meta.config;
        for cand in [&c.rootfs_image_ref, &c.rootfs_image_name, &c.rootfs_image] {
            if !cand.is_empty() && cs.images.resolve(cand)?.is_some() {
                return Ok(cand.clone());
            }
        }
        Err(ContainerError::NotFound(format!(
            "image {:?} of checkpoint {} (pull it before restoring)",
            if c.rootfs_image_name.is_empty() {
                &c.rootfs_image_ref
            } else {
                &c.rootfs_image_name
            },
            self.archive.display()
        )))
    }

    /// The checkpointed process (command, environment, working directory)
    /// in place of the request's: it is what runs once restored, and what
    /// exec and status see.
    pub fn adopt_process(&self, config: &mut cri::ContainerConfig) -> Result<(), ContainerError> {
        if config.tty {
            return Err(ContainerError::FailedPrecondition(
                "a container with a terminal cannot be restored from a checkpoint".into(),
            ));
        }
        let p = &self.meta.spec["process"];
        let strings = |v: &serde_json::Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let args = strings(&p["args"]);
        if args.is_empty() {
            return Err(ContainerError::InvalidArgument(format!(
                "checkpoint {} has no process in its spec.dump",
                self.archive.display()
            )));
        }
        config.command = args;
        config.args = Vec::new();
        config.envs = strings(&p["env"])
            .into_iter()
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
                cri::KeyValue {
                    key: k.to_string(),
                    value: v.as_bytes().to_vec(),
                }
            })
            .collect();
        if let Some(cwd) = p["cwd"].as_str() {
            config.working_dir = cwd.to_string();
        }
        Ok(())
    }

    /// Unpacks the archive below `data/restore`: CRIU's images, and the
    /// rootfs changes as an overlay lower dir (through the image layer
    /// unpacker, bounded by `limits`, deleted files as whiteouts). Returns
    /// (images dir, lower dir).
    pub async fn unpack(
        &self,
        data: &Path,
        limits: Limits,
    ) -> Result<(PathBuf, PathBuf), ContainerError> {
        let archive_path = self.archive.clone();
        let unpacked = self.unpacked;
        let dir = data.join("restore");
        tokio::task::spawn_blocking(move || -> Result<(PathBuf, PathBuf), ContainerError> {
            crate::private::dir(&dir, crate::private::DIR_MODE)
                .map_err(|e| ContainerError::io("create", &dir, e))?;
            let images = dir.join(archive::IMAGES_DIR);
            let tar = dir.join(archive::ROOTFS_DIFF);
            let ex = if unpacked {
                archive::extract_dir(&archive_path, &images, limits.bytes)
            } else {
                archive::extract(&archive_path, &images, &tar, limits.bytes)
            }
            .map_err(|e| {
                ContainerError::InvalidArgument(format!(
                    "checkpoint {}: {e}",
                    archive_path.display()
                ))
            })?;
            let diff = dir.join("diff");
            match &ex.rootfs_diff {
                Some(t) => {
                    unpack::unpack_layer(
                        t,
                        Compression::None,
                        &diff,
                        limits,
                        &ImageBudget::new(limits),
                    )
                    .map_err(|e| {
                        ContainerError::InvalidArgument(format!(
                            "rootfs changes of checkpoint {}: {e}",
                            archive_path.display()
                        ))
                    })?;
                    if !unpacked {
                        let _ = std::fs::remove_file(t);
                    }
                }
                None => crate::private::dir(&diff, crate::private::DIR_MODE)
                    .map_err(|e| ContainerError::io("create", &diff, e))?,
            }
            rootfs_diff::whiteouts(&diff, &ex.deleted).map_err(|e| {
                ContainerError::InvalidArgument(format!(
                    "deleted files of checkpoint {}: {e}",
                    archive_path.display()
                ))
            })?;
            Ok((images, diff))
        })
        .await
        .map_err(|e| ContainerError::InvalidArgument(format!("unpack checkpoint: {e}")))?
    }
}

/// A pod CRIU cannot restore into: one with a user namespace of its own.
pub fn check_pod(
    pod: &SandboxRecord,
    _config: &cri::ContainerConfig,
) -> Result<(), ContainerError> {
    if super::userns::pod_userns(pod).is_some() {
        return Err(ContainerError::FailedPrecondition(format!(
            "pod {} has a user namespace: restoring a checkpoint into it is not supported",
            pod.id
        )));
    }
    if pod.shim.is_v2() {
        return Err(ContainerError::FailedPrecondition(format!(
            "pod {} runs under the shim v2 handler {:?}: restoring a checkpoint needs carapace-shim",
            pod.id, pod.runtime_handler
        )));
    }
    Ok(())
}
