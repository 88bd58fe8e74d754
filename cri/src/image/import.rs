//! Offline import, for machines that cannot reach a registry: every image
//! of an OCI image archive (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`,
//! as `skopeo copy … oci-archive:` or `docker save` ≥ 25 write it) or of a
//! classic `docker save` tarball (`manifest.json` naming a config file and
//! uncompressed layer tars by path). The archive (gzip-compressed or not)
//! is unpacked into a scratch dir beside the content store, every blob is
//! verified against its digest and size and moved into the store, and each
//! layer is unpacked as a pull would leave it. Nothing of a failed import
//! is recorded; its blobs are left to the next garbage collection.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Value};

use super::content::{digest_of, file_digest, hex_of, ContentStore};
use super::pull::{
    host_arch, plan_layers, select_platform, Pulled, Puller, DOCKER_LIST, DOCKER_MANIFEST,
    OCI_INDEX,
};
use super::reference;
use super::ImageError;

const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";
/// containerd's annotation for the full image name in an OCI archive.
const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The OCI annotation for an image's tag (or full name) in an index.
const OCI_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Symlinks followed inside an archive before giving up.
const MAX_LINK_HOPS: usize = 16;

/// One image of an archive, stored and unpacked, with the names it gets.
#[derive(Debug)]
pub struct Imported {
    /// The image, as a pull would describe it.
    pub pulled: Pulled,
    /// Normalized `registry/repo:tag` names.
    pub tags: Vec<String>,
    /// `registry/repo@digest` names (OCI archives, whose manifests are the
    /// registry's own).
    pub repo_digests: Vec<String>,
}

/// Imports every image of `archive`, unpacking it under `scratch` (a fresh
/// path on the content store's filesystem, removed afterwards). Images the
/// archive leaves unnamed are called `name` when given.
pub async fn import(
    puller: &Puller,
    content: &Arc<ContentStore>,
    archive: &Path,
    scratch: PathBuf,
    name: Option<&str>,
) -> Result<Vec<Imported>, ImageError> {
    let a = archive.to_path_buf();
    let x = blocking(move || Extracted::open(&a, scratch)).await?;
    let found = if x.has("manifest.json") {
        docker_images(&x, content, name).await?
    } else if x.has("index.json") {
        oci_images(&x, content, name).await?
    } else {
        return Err(x.bad("neither manifest.json (docker save) nor index.json (OCI layout)"));
    };
    let mut out = Vec::new();
    for (mut pulled, tags, repo_digests) in found {
        let mut layers = Vec::new();
        let budget = puller.image_budget();
        for l in std::mem::take(&mut pulled.layers) {
            layers.push(puller.unpack_stored(l, &budget).await?);
        }
        pulled.size += layers.iter().map(|l| l.size).sum::<u64>();
        pulled.layers = layers;
        tracing::info!(archive = %archive.display(), id = %pulled.id, tags = ?tags, layers = pulled.layers.len(), "image imported");
        out.push(Imported {
            pulled,
            tags,
            repo_digests,
        });
    }
    Ok(out)
}

/// An image found in an archive: what it is (layers not yet unpacked, size
/// not yet counting them), its tags and repo digests.
type Found = (Pulled, Vec<String>, Vec<String>);

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ImageError> + Send + 'static,
) -> Result<T, ImageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ImageError::Transfer {
            digest: String::new(),
            message: format!("import task: {e}"),
        })?
}

/// `docker save`: manifest.json lists each image's config file, tags and
/// layer files. A manifest is made up for each, as containerd does.
async fn docker_images(
    x: &Extracted,
    content: &Arc<ContentStore>,
    name: Option<&str>,
) -> Result<Vec<Found>, ImageError> {
    let list: Value = serde_json::from_slice(&x.read("manifest.json")?)
        .map_err(|e| x.bad(&format!("manifest.json is not JSON: {e}")))?;
    let entries = list
        .as_array()
        .ok_or_else(|| x.bad("manifest.json is not a list"))?;
    let mut out = Vec::new();
    for e in entries {
        let config_file = e["Config"]
            .as_str()
            .ok_or_else(|| x.bad("a manifest.json entry has no Config"))?;
        let config_bytes = x.read(config_file)?;
        let config_digest = digest_of(&config_bytes);
        content.put(&config_digest, &config_bytes)?;
        let config: Value = serde_json::from_slice(&config_bytes)
            .map_err(|e| x.bad(&format!("{config_file} is not JSON: {e}")))?;
        let mut layers = Vec::new();
        for l in e["Layers"]
            .as_array()
            .ok_or_else(|| x.bad("a manifest.json entry has no Layers"))?
        {
            let file = l
                .as_str()
                .ok_or_else(|| x.bad("a layer path is not a string"))?;
            let path = x.path(file)?;
            let (digest, media_type, size) = blocking({
                let path = path.clone();
                move || {
                    let (d, n) = file_digest(&path)?;
                    Ok((d, layer_media_type(&path)?, n))
                }
            })
            .await?;
            adopt(content, &digest, Some(size), &path).await?;
            layers.push(json!({"mediaType": media_type, "size": size, "digest": digest}));
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "size": config_bytes.len(), "digest": config_digest},
            "layers": layers,
        });
        let manifest_bytes = serde_json::to_vec(&manifest).map_err(|e| x.bad(&e.to_string()))?;
        let manifest_digest = digest_of(&manifest_bytes);
        content.put(&manifest_digest, &manifest_bytes)?;
        let mut tags = Vec::new();
        for t in e["RepoTags"].as_array().into_iter().flatten() {
            let t = t
                .as_str()
                .ok_or_else(|| x.bad("a RepoTag is not a string"))?;
            tags.push(normalized_tag(t)?);
        }
        if tags.is_empty() {
            tags.extend(name.map(normalized_tag).transpose()?);
        }
        let label = tags
            .first()
            .cloned()
            .unwrap_or_else(|| config_digest.clone());
        out.push((
            Pulled {
                layers: plan_layers(&label, &manifest, &config)?,
                id: config_digest,
                manifest_digest,
                index_digest: None,
                media_type: DOCKER_MANIFEST.to_string(),
                config,
                size: (manifest_bytes.len() + config_bytes.len()) as u64,
            },
            tags,
            Vec::new(),
        ));
    }
    Ok(out)
}

/// An OCI layout: index.json lists manifests (or indexes, resolved to this
/// host's platform) with their names in annotations; blobs by digest.
async fn oci_images(
    x: &Extracted,
    content: &Arc<ContentStore>,
    name: Option<&str>,
) -> Result<Vec<Found>, ImageError> {
    let index: Value = serde_json::from_slice(&x.read("index.json")?)
        .map_err(|e| x.bad(&format!("index.json is not JSON: {e}")))?;
    let descriptors = index["manifests"]
        .as_array()
        .ok_or_else(|| x.bad("index.json has no manifests"))?;
    let mut out = Vec::new();
    for d in descriptors {
        let (mut digest, mut bytes) = x.blob(content, d).await?;
        let mut json = parse(x, &digest, &bytes)?;
        let mut media_type = media_type_of(d, &json);
        let mut index_digest = None;
        if media_type == OCI_INDEX || media_type == DOCKER_LIST {
            let chosen = select_platform(&json, "linux", host_arch()).ok_or_else(|| {
                x.bad(&format!(
                    "{digest} has no manifest for linux/{}",
                    host_arch()
                ))
            })?;
            let desc = json["manifests"]
                .as_array()
                .and_then(|m| m.iter().find(|m| m["digest"] == chosen.as_str()))
                .cloned()
                .unwrap_or(Value::Null);
            index_digest = Some(digest);
            (digest, bytes) = x.blob(content, &desc).await?;
            json = parse(x, &digest, &bytes)?;
            media_type = media_type_of(&desc, &json);
        }
        let (config_digest, config_bytes) = x.blob(content, &json["config"]).await?;
        let config = parse(x, &config_digest, &config_bytes)?;
        for l in json["layers"].as_array().into_iter().flatten() {
            x.blob_file(content, l).await?;
        }
        let tags = oci_names(d, name)?;
        let top = index_digest.as_deref().unwrap_or(&digest);
        let repo_digests = tags
            .iter()
            .filter_map(|t| reference::parse(t).ok())
            .map(|r| format!("{}@{top}", reference::repo(&r)))
            .collect();
        let label = tags.first().cloned().unwrap_or_else(|| digest.clone());
        out.push((
            Pulled {
                layers: plan_layers(&label, &json, &config)?,
                id: config_digest,
                manifest_digest: digest,
                index_digest,
                media_type,
                config,
                size: (bytes.len() + config_bytes.len()) as u64,
            },
            tags,
            repo_digests,
        ));
    }
    Ok(out)
}

/// The names an index entry gives its image: containerd's full-name
/// annotation, else the OCI ref name (a full name, or a tag for `name`).
fn oci_names(d: &Value, name: Option<&str>) -> Result<Vec<String>, ImageError> {
    let ann = &d["annotations"];
    let full = ann[CONTAINERD_NAME].as_str().or_else(|| {
        ann[OCI_REF_NAME]
            .as_str()
            .filter(|r| r.contains('/') || r.contains(':'))
    });
    let n = match (full, ann[OCI_REF_NAME].as_str(), name) {
        (Some(f), _, _) => Some(f.to_string()),
        (None, Some(tag), Some(n)) => Some(format!("{n}:{tag}")),
        (None, None, Some(n)) => Some(n.to_string()),
        (None, _, None) => None,
    };
    n.map(|n| normalized_tag(&n)).into_iter().collect()
}

/// `busybox:1` → `docker.io/library/busybox:1`; a name without a tag gets
/// `latest`, as a pull of it would.
fn normalized_tag(s: &str) -> Result<String, ImageError> {
    let r = reference::parse(s)?;
    reference::tagged(&r).ok_or_else(|| ImageError::InvalidReference {
        reference: s.to_string(),
        message: "an imported image needs a name with a tag, not a digest".into(),
    })
}

fn media_type_of(desc: &Value, json: &Value) -> String {
    json["mediaType"]
        .as_str()
        .or(desc["mediaType"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| {
            if json.get("manifests").is_some() {
                OCI_INDEX.to_string()
            } else {
                super::pull::OCI_MANIFEST.to_string()
            }
        })
}

fn parse(x: &Extracted, digest: &str, bytes: &[u8]) -> Result<Value, ImageError> {
    serde_json::from_slice(bytes).map_err(|e| x.bad(&format!("blob {digest} is not JSON: {e}")))
}

/// A classic docker layer's media type from its first bytes: docker save
/// writes uncompressed tars, but compressed ones are accepted too.
fn layer_media_type(path: &Path) -> Result<&'static str, ImageError> {
    let mut magic = [0u8; 4];
    let mut f = std::fs::File::open(path).map_err(|e| ImageError::io("open", path, e))?;
    let n = f
        .read(&mut magic)
        .map_err(|e| ImageError::io("read", path, e))?;
    Ok(match &magic[..n] {
        [0x1f, 0x8b, ..] => DOCKER_LAYER_GZIP,
        [0x28, 0xb5, 0x2f, 0xfd] => DOCKER_LAYER_ZSTD,
        _ => DOCKER_LAYER,
    })
}

async fn adopt(
    content: &Arc<ContentStore>,
    digest: &str,
    size: Option<u64>,
    path: &Path,
) -> Result<(), ImageError> {
    // Hashing a layer is slow: off the async threads.
    let digest = digest.to_string();
    let path = path.to_path_buf();
    let store = content.clone();
    blocking(move || store.adopt(&digest, size, &path)).await
}

/// The archive's files under a scratch dir, removed on drop.
struct Extracted {
    archive: PathBuf,
    dir: PathBuf,
    /// Symlinks and hard links: archive path → archive path of the target.
    links: HashMap<String, String>,
}

impl Drop for Extracted {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An archive member's path as plain components, or None if it is
/// absolute or climbs out (`..`).
fn clean(p: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str()?.to_string()),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

impl Extracted {
    /// Unpacks the regular files of `archive` (gzip or plain tar) under
    /// `dir`, remembering links; a member that would land outside is an
    /// error. Blocking.
    fn open(archive: &Path, dir: PathBuf) -> Result<Extracted, ImageError> {
        let mut x = Extracted {
            archive: archive.to_path_buf(),
            dir,
            links: HashMap::new(),
        };
        std::fs::create_dir_all(&x.dir).map_err(|e| ImageError::io("create", &x.dir, e))?;
        let mut f = std::fs::File::open(archive).map_err(|e| ImageError::io("open", archive, e))?;
        let mut magic = [0u8; 2];
        let gz = f
            .read(&mut magic)
            .map_err(|e| ImageError::io("read", archive, e))?
            == 2
            && magic == [0x1f, 0x8b];
        let f = std::fs::File::open(archive).map_err(|e| ImageError::io("open", archive, e))?;
        let reader: Box<dyn Read> = if gz {
            Box::new(flate2::read::GzDecoder::new(f))
        } else {
            Box::new(f)
        };
        let mut tar = tar::Archive::new(reader);
        let entries = tar
            .entries()
            .map_err(|e| x.bad(&format!("not a tar archive: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| x.bad(&format!("broken tar: {e}")))?;
            let raw = entry
                .path()
                .map_err(|e| x.bad(&format!("bad member name: {e}")))?
                .into_owned();
            let name = clean(&raw)
                .ok_or_else(|| x.bad(&format!("member {} leaves the archive", raw.display())))?;
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let dst = x.dir.join(&name);
                    if let Some(parent) = dst.parent() {
                        std::fs::create_dir_all(parent)
                            .map_err(|e| ImageError::io("create", parent, e))?;
                    }
                    let mut out = std::fs::File::create(&dst)
                        .map_err(|e| ImageError::io("create", &dst, e))?;
                    std::io::copy(&mut entry, &mut out)
                        .map_err(|e| ImageError::io("unpack archive member to", &dst, e))?;
                }
                kind @ (tar::EntryType::Symlink | tar::EntryType::Link) => {
                    let target = entry
                        .link_name()
                        .map_err(|e| x.bad(&format!("bad link in {name}: {e}")))?
                        .ok_or_else(|| x.bad(&format!("link {name} has no target")))?;
                    // A symlink is relative to its directory; a hard link
                    // names an archive member.
                    let base = if kind == tar::EntryType::Symlink {
                        Path::new(&name)
                            .parent()
                            .unwrap_or(Path::new(""))
                            .join(&target)
                    } else {
                        target.to_path_buf()
                    };
                    let resolved = clean_lexically(&base)
                        .ok_or_else(|| x.bad(&format!("link {name} points out of the archive")))?;
                    x.links.insert(name, resolved);
                }
                _ => {}
            }
        }
        Ok(x)
    }

    fn bad(&self, message: &str) -> ImageError {
        ImageError::Archive {
            path: self.archive.clone(),
            message: message.to_string(),
        }
    }

    fn resolve(&self, name: &str) -> Result<String, ImageError> {
        let mut n = clean(Path::new(name))
            .ok_or_else(|| self.bad(&format!("{name} leaves the archive")))?;
        for _ in 0..MAX_LINK_HOPS {
            match self.links.get(&n) {
                Some(t) => n = t.clone(),
                None => return Ok(n),
            }
        }
        Err(self.bad(&format!("{name}: too many links")))
    }

    fn has(&self, name: &str) -> bool {
        self.resolve(name)
            .map(|n| self.dir.join(n).is_file())
            .unwrap_or(false)
    }

    /// Where member `name` (links followed) was unpacked.
    fn path(&self, name: &str) -> Result<PathBuf, ImageError> {
        let p = self.dir.join(self.resolve(name)?);
        if p.is_file() {
            Ok(p)
        } else {
            Err(self.bad(&format!("{name} is not in the archive")))
        }
    }

    fn read(&self, name: &str) -> Result<Vec<u8>, ImageError> {
        let p = self.path(name)?;
        std::fs::read(&p).map_err(|e| ImageError::io("read", &p, e))
    }

    /// The blob a descriptor names, verified and stored; its digest and
    /// (small: manifests, configs) bytes.
    async fn blob(
        &self,
        content: &Arc<ContentStore>,
        desc: &Value,
    ) -> Result<(String, Vec<u8>), ImageError> {
        let digest = self.blob_file(content, desc).await?;
        Ok((digest.clone(), content.read(&digest)?))
    }

    /// The blob a descriptor names (`blobs/<alg>/<hex>`), verified against
    /// its digest and size and moved into the store.
    async fn blob_file(
        &self,
        content: &Arc<ContentStore>,
        desc: &Value,
    ) -> Result<String, ImageError> {
        let digest = desc["digest"]
            .as_str()
            .ok_or_else(|| self.bad("a descriptor has no digest"))?
            .to_string();
        let hex = hex_of(&digest)?;
        let member = format!("blobs/sha256/{hex}");
        if content.has(&digest) && !self.has(&member) {
            return Ok(digest);
        }
        let path = self.path(&member)?;
        adopt(content, &digest, desc["size"].as_u64(), &path).await?;
        Ok(digest)
    }
}

/// Joins `p`'s components, resolving `..` against earlier ones; None if it
/// climbs above the start or is absolute.
fn clean_lexically(p: &Path) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str()?),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_stay_inside() {
        assert_eq!(
            clean(Path::new("./blobs/sha256/ab")).as_deref(),
            Some("blobs/sha256/ab")
        );
        assert_eq!(clean(Path::new("../x")), None);
        assert_eq!(clean(Path::new("/etc/passwd")), None);
        assert_eq!(
            clean_lexically(Path::new("a/../b/c")).as_deref(),
            Some("b/c")
        );
        assert_eq!(clean_lexically(Path::new("a/../../c")), None);
    }

    #[test]
    fn oci_names_come_from_annotations_or_the_given_name() {
        let full = json!({"annotations": {CONTAINERD_NAME: "docker.io/library/busybox:1.36", OCI_REF_NAME: "1.36"}});
        assert_eq!(
            oci_names(&full, None).expect("names"),
            ["docker.io/library/busybox:1.36"]
        );
        let tag_only = json!({"annotations": {OCI_REF_NAME: "v2"}});
        assert!(oci_names(&tag_only, None).expect("names").is_empty());
        assert_eq!(
            oci_names(&tag_only, Some("example.com/app")).expect("names"),
            ["example.com/app:v2"]
        );
        let ref_full = json!({"annotations": {OCI_REF_NAME: "example.com/app:v3"}});
        assert_eq!(
            oci_names(&ref_full, None).expect("names"),
            ["example.com/app:v3"]
        );
        assert_eq!(
            oci_names(&json!({}), Some("busybox")).expect("names"),
            ["docker.io/library/busybox:latest"]
        );
    }
}
