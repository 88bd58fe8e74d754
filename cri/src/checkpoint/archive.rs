//! The checkpoint archive, in the layout CRI-O and containerd write and
//! `checkpointctl` reads: an uncompressed tar of
//! * `config.dump`: who was checkpointed, from what image, when (CRI-O's
//!   field names);
//! * `spec.dump`: the container's OCI spec;
//! * `rootfs-diff.tar`: the files the container changed, plain;
//! * `deleted.files`: JSON list of the image files it deleted;
//! * `checkpoint/`: CRIU's images (with its dump.log).
//!
//! The same layout unpacked as a directory is a checkpoint image's one
//! layer (CRI-O's checkpoint images, marked by [`IMAGE_ANNOTATION`]).
//!
//! Writing goes to a temporary file beside the target, renamed into place
//! once whole, so a kubelet never sees half an archive. Reading treats the
//! archive as hostile: only the names above are taken, each bounded, and
//! CRIU's images must be plain files directly in `checkpoint/`.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The metadata file.
pub const CONFIG_DUMP: &str = "config.dump";
/// The OCI spec file.
pub const SPEC_DUMP: &str = "spec.dump";
/// The rootfs changes.
pub const ROOTFS_DIFF: &str = "rootfs-diff.tar";
/// The deleted image files.
pub const DELETED_FILES: &str = "deleted.files";
/// CRIU's images directory.
pub const IMAGES_DIR: &str = "checkpoint";

/// The annotation (of the image manifest, or a label of its config) that
/// makes an image a checkpoint image, CRI-O's.
pub const IMAGE_ANNOTATION: &str = "io.kubernetes.cri-o.annotations.checkpoint.name";

/// How large config.dump, spec.dump and deleted.files may be.
const SMALL_FILE_MAX: u64 = 16 << 20;

/// config.dump (CRI-O's `metadata.ContainerConfig`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigDump {
    /// The checkpointed container's ID.
    pub id: String,
    /// Its name (CRI metadata name).
    pub name: String,
    /// The image as the container's config named it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rootfs_image: String,
    /// The image's ID, which the restore resolves first.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rootfs_image_ref: String,
    /// The image's name, resolved when the ID is not on the node.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rootfs_image_name: String,
    /// The OCI runtime that ran it.
    #[serde(default, rename = "runtime", skip_serializing_if = "String::is_empty")]
    pub oci_runtime: String,
    /// RFC 3339.
    #[serde(default)]
    pub created_time: String,
    /// RFC 3339.
    #[serde(default, rename = "checkpointedTime")]
    pub checkpointed_at: String,
    /// RFC 3339 (the zero time when never restored, as Go writes it).
    #[serde(default, rename = "restoredTime")]
    pub restored_at: String,
    /// Whether this container was itself restored.
    #[serde(default)]
    pub restored: bool,
}

/// Errors of reading or writing an archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// The action.
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The archive is not a checkpoint this node can restore.
    #[error("{0}")]
    Invalid(String),
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ArchiveError {
    let path = path.to_path_buf();
    move |source| ArchiveError::Io { what, path, source }
}

/// Tars the staging dir's entries (the layout above) into `location`,
/// through `location.carapace-tmp`, 0600 (CRIU's images hold the
/// container's memory).
pub fn write(staging: &Path, location: &Path) -> Result<(), ArchiveError> {
    let tmp = location.with_extension("carapace-tmp");
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err("create", &tmp))?;
    let r = (|| {
        let mut b = tar::Builder::new(io::BufWriter::new(f));
        b.follow_symlinks(false);
        for name in [CONFIG_DUMP, SPEC_DUMP, ROOTFS_DIFF, DELETED_FILES] {
            let p = staging.join(name);
            if p.exists() {
                b.append_path_with_name(&p, name)
                    .map_err(io_err("archive", &p))?;
            }
        }
        let images = staging.join(IMAGES_DIR);
        b.append_dir_all(IMAGES_DIR, &images)
            .map_err(io_err("archive", &images))?;
        let w = b.into_inner().map_err(io_err("write", &tmp))?;
        let f = w.into_inner().map_err(|e| ArchiveError::Io {
            what: "write",
            path: tmp.clone(),
            source: e.into_error(),
        })?;
        f.sync_all().map_err(io_err("sync", &tmp))
    })();
    if let Err(e) = r {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, location).map_err(io_err("rename to", location))
}

/// The small files of an archive: config.dump and spec.dump (both
/// required) and deleted.files.
#[derive(Debug, Clone)]
pub struct Meta {
    /// config.dump.
    pub config: ConfigDump,
    /// spec.dump, as JSON.
    pub spec: serde_json::Value,
}

/// Whether `path` is a tar that holds config.dump: how CreateContainer
/// tells a checkpoint archive named as the image from an image reference.
pub fn read_meta(path: &Path) -> Result<Meta, ArchiveError> {
    let f = File::open(path).map_err(io_err("open", path))?;
    let mut ar = tar::Archive::new(io::BufReader::new(f));
    let mut config = None;
    let mut spec = None;
    for e in ar.entries().map_err(io_err("read", path))? {
        let mut e = e.map_err(io_err("read", path))?;
        let name = entry_name(&e)?;
        let want = match name.as_str() {
            CONFIG_DUMP => &mut config,
            SPEC_DUMP => &mut spec,
            _ => continue,
        };
        *want = Some(small(&mut e, &name)?);
        if config.is_some() && spec.is_some() {
            break;
        }
    }
    let config = config.ok_or_else(|| {
        ArchiveError::Invalid(format!(
            "{} has no {CONFIG_DUMP}: not a checkpoint archive",
            path.display()
        ))
    })?;
    let spec = spec.ok_or_else(|| {
        ArchiveError::Invalid(format!("checkpoint {} has no {SPEC_DUMP}", path.display()))
    })?;
    Ok(Meta {
        config: serde_json::from_slice(&config)
            .map_err(|e| ArchiveError::Invalid(format!("{CONFIG_DUMP}: {e}")))?,
        spec: serde_json::from_slice(&spec)
            .map_err(|e| ArchiveError::Invalid(format!("{SPEC_DUMP}: {e}")))?,
    })
}

/// What [`extract`] took out.
#[derive(Debug, Default)]
pub struct Extracted {
    /// The rootfs changes, copied to the path given (None: the archive
    /// has none).
    pub rootfs_diff: Option<PathBuf>,
    /// deleted.files.
    pub deleted: Vec<String>,
}

/// Extracts CRIU's images into `images` (made, must not exist), and
/// rootfs-diff.tar to `diff_tar`; at most `max_bytes` of content in all
/// (0: no limit).
pub fn extract(
    path: &Path,
    images: &Path,
    diff_tar: &Path,
    max_bytes: u64,
) -> Result<Extracted, ArchiveError> {
    crate::private::dir(images, crate::private::DIR_MODE).map_err(io_err("create", images))?;
    let f = File::open(path).map_err(io_err("open", path))?;
    let mut ar = tar::Archive::new(io::BufReader::new(f));
    let mut out = Extracted::default();
    let mut total: u64 = 0;
    let mut inventory = false;
    for e in ar.entries().map_err(io_err("read", path))? {
        let mut e = e.map_err(io_err("read", path))?;
        let name = entry_name(&e)?;
        let size = e.header().size().map_err(io_err("read", path))?;
        let kind = e.header().entry_type();
        if name == DELETED_FILES {
            let b = small(&mut e, &name)?;
            out.deleted = serde_json::from_slice(&b)
                .map_err(|e| ArchiveError::Invalid(format!("{DELETED_FILES}: {e}")))?;
            continue;
        }
        let target = if name == ROOTFS_DIFF {
            out.rootfs_diff = Some(diff_tar.to_path_buf());
            diff_tar.to_path_buf()
        } else if let Some(file) = name.strip_prefix(&format!("{IMAGES_DIR}/")) {
            if file.is_empty() && kind.is_dir() {
                continue;
            }
            // CRIU's images dir is flat: one plain file per image.
            if file.contains('/') || file.is_empty() || file == "." || file == ".." {
                return Err(ArchiveError::Invalid(format!(
                    "checkpoint entry {name:?} is not a file directly in {IMAGES_DIR}/"
                )));
            }
            if file == "inventory.img" {
                inventory = true;
            }
            images.join(file)
        } else {
            continue;
        };
        if !kind.is_file() {
            return Err(ArchiveError::Invalid(format!(
                "checkpoint entry {name:?} is not a regular file"
            )));
        }
        total = total.saturating_add(size);
        if max_bytes > 0 && total > max_bytes {
            return Err(ArchiveError::Invalid(format!(
                "checkpoint content exceeds {max_bytes} bytes"
            )));
        }
        let mut w = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&target)
            .map_err(io_err("create", &target))?;
        // The header's size bounds what the entry yields.
        io::copy(&mut (&mut e).take(size), &mut w).map_err(io_err("write", &target))?;
        w.flush().map_err(io_err("write", &target))?;
    }
    if !inventory {
        return Err(ArchiveError::Invalid(format!(
            "{} has no CRIU images ({IMAGES_DIR}/inventory.img)",
            path.display()
        )));
    }
    Ok(out)
}

/// [`read_meta`] for a checkpoint unpacked as a directory (the one layer
/// of a checkpoint image).
pub fn read_meta_dir(dir: &Path) -> Result<Meta, ArchiveError> {
    let read = |name: &str| -> Result<Vec<u8>, ArchiveError> {
        let mut f = File::open(dir.join(name))
            .map_err(|e| ArchiveError::Invalid(format!("checkpoint image has no {name}: {e}")))?;
        small(&mut f, name)
    };
    let config = read(CONFIG_DUMP)?;
    let spec = read(SPEC_DUMP)?;
    Ok(Meta {
        config: serde_json::from_slice(&config)
            .map_err(|e| ArchiveError::Invalid(format!("{CONFIG_DUMP}: {e}")))?,
        spec: serde_json::from_slice(&spec)
            .map_err(|e| ArchiveError::Invalid(format!("{SPEC_DUMP}: {e}")))?,
    })
}

/// [`extract`] for a checkpoint directory: CRIU's images are copied into
/// `images` (plain files only, at most `max_bytes` in all); the rootfs
/// changes stay where they are.
pub fn extract_dir(dir: &Path, images: &Path, max_bytes: u64) -> Result<Extracted, ArchiveError> {
    crate::private::dir(images, crate::private::DIR_MODE).map_err(io_err("create", images))?;
    let src = dir.join(IMAGES_DIR);
    let mut total: u64 = 0;
    let mut inventory = false;
    for e in std::fs::read_dir(&src).map_err(io_err("read", &src))? {
        let e = e.map_err(io_err("read", &src))?;
        let md = e.metadata().map_err(io_err("stat", &e.path()))?;
        if !md.file_type().is_file() {
            return Err(ArchiveError::Invalid(format!(
                "checkpoint entry {} is not a regular file",
                e.path().display()
            )));
        }
        total = total.saturating_add(md.len());
        if max_bytes > 0 && total > max_bytes {
            return Err(ArchiveError::Invalid(format!(
                "checkpoint content exceeds {max_bytes} bytes"
            )));
        }
        if e.file_name() == "inventory.img" {
            inventory = true;
        }
        let target = images.join(e.file_name());
        let mut r = File::open(e.path()).map_err(io_err("open", &e.path()))?;
        let mut w = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&target)
            .map_err(io_err("create", &target))?;
        io::copy(&mut r, &mut w).map_err(io_err("write", &target))?;
    }
    if !inventory {
        return Err(ArchiveError::Invalid(format!(
            "checkpoint image has no CRIU images ({IMAGES_DIR}/inventory.img)"
        )));
    }
    let mut out = Extracted::default();
    let diff = dir.join(ROOTFS_DIFF);
    if diff.is_file() {
        out.rootfs_diff = Some(diff);
    }
    let deleted = dir.join(DELETED_FILES);
    if deleted.is_file() {
        let b = small(
            &mut File::open(&deleted).map_err(io_err("open", &deleted))?,
            DELETED_FILES,
        )?;
        out.deleted = serde_json::from_slice(&b)
            .map_err(|e| ArchiveError::Invalid(format!("{DELETED_FILES}: {e}")))?;
    }
    Ok(out)
}

/// An entry's name, cleaned; absolute names and `..` refused.
fn entry_name<R: Read>(e: &tar::Entry<'_, R>) -> Result<String, ArchiveError> {
    let p = e
        .path()
        .map_err(|err| ArchiveError::Invalid(format!("unreadable entry name: {err}")))?;
    let mut parts = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::CurDir => {}
            _ => {
                return Err(ArchiveError::Invalid(format!(
                    "checkpoint entry {} leaves the archive",
                    p.display()
                )))
            }
        }
    }
    Ok(parts.join("/"))
}

/// A small file's content (an archive entry or a file), bounded.
fn small(e: &mut impl Read, name: &str) -> Result<Vec<u8>, ArchiveError> {
    let mut b = Vec::new();
    e.take(SMALL_FILE_MAX + 1)
        .read_to_end(&mut b)
        .map_err(|err| ArchiveError::Invalid(format!("read {name}: {err}")))?;
    if b.len() as u64 > SMALL_FILE_MAX {
        return Err(ArchiveError::Invalid(format!(
            "{name} is larger than {SMALL_FILE_MAX} bytes"
        )));
    }
    Ok(b)
}

/// The current time as Go's time.Time marshals it (RFC 3339).
pub fn now() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}

/// A time in nanoseconds since the epoch, as [`now`] writes it.
pub fn at_ns(ns: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(u64::try_from(ns).unwrap_or(0));
    humantime::format_rfc3339_nanos(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staging(dir: &Path) {
        let c = ConfigDump {
            id: "abc".into(),
            name: "counter".into(),
            rootfs_image_ref: "sha256:1".into(),
            rootfs_image_name: "test/busybox:latest".into(),
            ..Default::default()
        };
        std::fs::write(dir.join(CONFIG_DUMP), serde_json::to_vec(&c).expect("json")).expect("w");
        std::fs::write(dir.join(SPEC_DUMP), b"{\"ociVersion\":\"1.0.2\"}").expect("w");
        std::fs::write(dir.join(DELETED_FILES), b"[\"/etc/motd\"]").expect("w");
        std::fs::write(dir.join(ROOTFS_DIFF), b"not really a tar").expect("w");
        std::fs::create_dir(dir.join(IMAGES_DIR)).expect("mkdir");
        std::fs::write(dir.join(IMAGES_DIR).join("inventory.img"), b"inv").expect("w");
        std::fs::write(dir.join(IMAGES_DIR).join("pages-1.img"), vec![7u8; 5000]).expect("w");
    }

    #[test]
    fn an_archive_round_trips_and_uses_cri_o_names() {
        let d = tempfile::tempdir().expect("tmp");
        let st = d.path().join("staging");
        std::fs::create_dir(&st).expect("mkdir");
        staging(&st);
        let ar = d.path().join("c.tar");
        write(&st, &ar).expect("write");
        assert!(!d.path().join("c.carapace-tmp").exists());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&ar).expect("stat").permissions().mode() & 0o777,
            0o600
        );
        let meta = read_meta(&ar).expect("meta");
        assert_eq!(meta.config.rootfs_image_name, "test/busybox:latest");
        let raw: serde_json::Value = serde_json::to_value(&meta.config).expect("json");
        for k in [
            "id",
            "name",
            "rootfsImageRef",
            "rootfsImageName",
            "createdTime",
            "checkpointedTime",
            "restoredTime",
            "restored",
        ] {
            assert!(raw.get(k).is_some(), "config.dump lacks {k}: {raw}");
        }
        let ex =
            extract(&ar, &d.path().join("img"), &d.path().join("diff.tar"), 0).expect("extract");
        assert_eq!(ex.deleted, vec!["/etc/motd".to_string()]);
        assert_eq!(
            ex.rootfs_diff.as_deref(),
            Some(d.path().join("diff.tar").as_path())
        );
        assert_eq!(
            std::fs::read(d.path().join("img/pages-1.img"))
                .expect("r")
                .len(),
            5000
        );
        // Bounded.
        let e = extract(
            &ar,
            &d.path().join("img2"),
            &d.path().join("diff2.tar"),
            1000,
        )
        .expect_err("over the limit");
        assert!(e.to_string().contains("exceeds"), "{e}");
    }

    #[test]
    fn a_checkpoint_directory_reads_as_its_archive_does() {
        let d = tempfile::tempdir().expect("tmp");
        let st = d.path().join("layer");
        std::fs::create_dir(&st).expect("mkdir");
        staging(&st);
        let meta = read_meta_dir(&st).expect("meta");
        assert_eq!(meta.config.id, "abc");
        let ex = extract_dir(&st, &d.path().join("img"), 0).expect("extract");
        assert_eq!(ex.deleted, vec!["/etc/motd".to_string()]);
        assert_eq!(ex.rootfs_diff, Some(st.join(ROOTFS_DIFF)));
        assert!(d.path().join("img/inventory.img").is_file());
        // A symlink among CRIU's images is refused.
        std::os::unix::fs::symlink("/etc/shadow", st.join(IMAGES_DIR).join("evil.img"))
            .expect("symlink");
        let e = extract_dir(&st, &d.path().join("img2"), 0).expect_err("symlink");
        assert!(e.to_string().contains("not a regular file"), "{e}");
        assert!(read_meta_dir(d.path()).is_err());
    }

    #[test]
    fn archives_that_are_not_checkpoints_or_escape_are_refused() {
        let d = tempfile::tempdir().expect("tmp");
        // A tar without config.dump.
        let p = d.path().join("plain.tar");
        let mut b = tar::Builder::new(File::create(&p).expect("create"));
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "hello", &b"hi"[..]).expect("append");
        b.finish().expect("finish");
        drop(b);
        let e = read_meta(&p).expect_err("not a checkpoint");
        assert!(e.to_string().contains("not a checkpoint"), "{e}");
        // An image entry in a subdirectory (or a link) is refused.
        let p = d.path().join("evil.tar");
        let mut b = tar::Builder::new(File::create(&p).expect("create"));
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "checkpoint/sub/x.img", &b"x"[..])
            .expect("append");
        b.finish().expect("finish");
        drop(b);
        let e =
            extract(&p, &d.path().join("img"), &d.path().join("diff.tar"), 0).expect_err("refused");
        assert!(e.to_string().contains("directly in"), "{e}");
        // Not a tar at all.
        let p = d.path().join("junk");
        std::fs::write(&p, vec![1u8; 2000]).expect("w");
        assert!(read_meta(&p).is_err());
    }
}
