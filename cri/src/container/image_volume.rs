//! Image volumes (CRI `Mount.image`, KEP 4639): an image already on the
//! node, mounted read-only from its layers in the container's bundle, and
//! bound from there (or from a path inside it, `image_sub_path`) into the
//! container by the spec.

use std::os::fd::AsRawFd;
use std::path::{Component, Path, PathBuf};

use k8s_cri::v1 as cri;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

use crate::idmap;

use super::record::ImageVolume;
use super::registry::Containers;
use super::userns::PodUserns;
use super::{ContainerError, ContainerRecord};

/// An image volume resolved against the image store: what the record
/// keeps, the image's layer dirs (topmost first) and the sub path.
pub struct Resolved {
    /// What the container's record keeps.
    volume: ImageVolume,
    lowers: Vec<PathBuf>,
    sub_path: String,
}

impl Resolved {
    /// The record's part.
    pub fn volume(&self) -> ImageVolume {
        self.volume.clone()
    }
}

/// The images the config's image mounts name, in order. kubelet pulls
/// them before it creates the container; one that is not on the node is
/// NotFound, as the container's own image.
pub fn resolve(
    cs: &Containers,
    config: &cri::ContainerConfig,
) -> Result<Vec<Resolved>, ContainerError> {
    let mut out = Vec::new();
    for m in config.mounts.iter() {
        let Some(spec) = m.image.as_ref() else {
            continue;
        };
        if !m.host_path.is_empty() {
            return Err(ContainerError::InvalidArgument(format!(
                "mount at {}: host path {:?} and image {:?} exclude each other",
                m.container_path, m.host_path, spec.image
            )));
        }
        if spec.image.is_empty() {
            return Err(ContainerError::InvalidArgument(format!(
                "mount at {}: image volume names no image",
                m.container_path
            )));
        }
        check_sub_path(&m.container_path, &m.image_sub_path)?;
        let image = cs.images.resolve(&spec.image)?.ok_or_else(|| {
            ContainerError::NotFound(format!(
                "image {:?} of the image volume at {} (pull it first)",
                spec.image, m.container_path
            ))
        })?;
        if image.layers.is_empty() {
            return Err(ContainerError::InvalidArgument(format!(
                "image {:?} of the image volume at {} has no layers",
                spec.image, m.container_path
            )));
        }
        let lowers = image
            .layers
            .iter()
            .rev()
            .map(|l| cs.images.layer_dir(&l.chain_id))
            .collect::<Result<_, _>>()?;
        out.push(Resolved {
            volume: ImageVolume {
                container_path: m.container_path.clone(),
                image_id: image.id.clone(),
                chain_ids: image.layers.iter().map(|l| l.chain_id.clone()).collect(),
            },
            lowers,
            sub_path: m.image_sub_path.clone(),
        });
    }
    Ok(out)
}

/// A sub path is relative and never climbs (`..`), as kubelet's
/// `subPath` validation has it.
fn check_sub_path(container_path: &str, sub: &str) -> Result<(), ContainerError> {
    let p = Path::new(sub);
    let climbs = p
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
    if climbs || sub.contains('\0') {
        return Err(ContainerError::InvalidArgument(format!(
            "mount at {container_path}: image_sub_path {sub:?} must be relative, without \"..\""
        )));
    }
    Ok(())
}

/// Mounts each image volume read-only at its host dir in the bundle
/// (through the pod's idmapped views where the pod has its own user
/// namespace). Returns what the spec binds into the container for each:
/// the mount, or the path its `image_sub_path` names inside it, resolved
/// within the image (a symlink in the image cannot lead out of it).
pub async fn mount(
    cs: &Containers,
    rec: &ContainerRecord,
    volumes: &[Resolved],
    userns: Option<&PodUserns>,
) -> Result<Vec<PathBuf>, ContainerError> {
    let node = &cs.sandboxes.effects.node;
    let mut sources = Vec::with_capacity(volumes.len());
    for (i, v) in volumes.iter().enumerate() {
        let target = rec.image_volume_dir(i);
        match userns {
            Some(u) => {
                let views = rec.data.join("idmap");
                let mounted = match u.lowers(&v.lowers, &views) {
                    Ok(l) => node
                        .mount_image_volume(&l, &target)
                        .await
                        .map_err(ContainerError::from),
                    Err(e) => Err(e),
                };
                idmap::detach_all(&views)?;
                mounted?;
            }
            None => node.mount_image_volume(&v.lowers, &target).await?,
        }
        sources.push(if v.sub_path.is_empty() {
            target
        } else {
            resolve_in(&target, &v.sub_path, &v.volume)?
        });
    }
    Ok(sources)
}

/// The host path of `sub` inside the mounted image at `root`, every
/// symlink on the way resolved as if `root` were `/` (openat2
/// RESOLVE_IN_ROOT). The mount is read-only, so the answer cannot change
/// before the runtime binds it.
fn resolve_in(root: &Path, sub: &str, v: &ImageVolume) -> Result<PathBuf, ContainerError> {
    let dir = std::fs::File::open(root).map_err(|e| ContainerError::io("open", root, e))?;
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .mode(Mode::empty())
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = openat2(&dir, sub, how).map_err(|e| {
        ContainerError::InvalidArgument(format!(
            "image volume at {}: image_sub_path {sub:?} of image {}: {}",
            v.container_path,
            v.image_id,
            if e == nix::errno::Errno::ENOENT {
                "no such file or directory in the image".to_string()
            } else {
                e.desc().to_string()
            }
        ))
    })?;
    let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let path = std::fs::read_link(&link).map_err(|e| ContainerError::io("readlink", &link, e))?;
    if !path.starts_with(root) {
        // RESOLVE_IN_ROOT keeps it inside; a different answer is a bug.
        return Err(ContainerError::FailedPrecondition(format!(
            "image volume at {}: image_sub_path {sub:?} resolved outside the image ({})",
            v.container_path,
            path.display()
        )));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_paths_are_relative_and_never_climb() {
        for ok in ["", "data", "a/b/c", "./data", "data/"] {
            assert!(check_sub_path("/v", ok).is_ok(), "{ok}");
        }
        for bad in ["/etc", "..", "a/../../b", "a/..", "x\0y"] {
            assert!(
                matches!(
                    check_sub_path("/v", bad),
                    Err(ContainerError::InvalidArgument(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_sub_path_resolves_its_symlinks_inside_the_image() {
        let d = tempfile::tempdir().expect("tmp");
        let root = d.path().join("image");
        std::fs::create_dir_all(root.join("usr/share/data")).expect("mkdir");
        std::os::unix::fs::symlink("/usr/share", root.join("share")).expect("symlink");
        std::os::unix::fs::symlink("../../../../..", root.join("up")).expect("symlink");
        std::fs::create_dir_all(d.path().join("outside")).expect("mkdir");
        let v = ImageVolume {
            container_path: "/v".into(),
            image_id: "sha256:x".into(),
            chain_ids: Vec::new(),
        };
        // An absolute link is taken from the image's root, not the host's.
        assert_eq!(
            resolve_in(&root, "share/data", &v).expect("resolve"),
            root.join("usr/share/data")
        );
        // A link climbing out stops at the image's root.
        assert_eq!(resolve_in(&root, "up", &v).expect("resolve"), root);
        assert!(matches!(
            resolve_in(&root, "up/outside", &v),
            Err(ContainerError::InvalidArgument(_))
        ));
        assert!(matches!(
            resolve_in(&root, "missing", &v),
            Err(ContainerError::InvalidArgument(m)) if m.contains("no such file")
        ));
    }
}
