//! The daemon's images: pull (records merged, tags moved between images as
//! registries move them), lookup by ID, tag or digest, removal with
//! garbage collection of blobs and layers no image uses, and the image
//! filesystem's usage.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::content::ContentStore;
use super::import;
use super::progress::Progress;
use super::pull::{Credentials, Pulled, Puller};
use super::records::ImageRecord;
use super::{reference, ImageError};
use crate::store::{Kind, Store};

/// Names the scratch dirs of imports in the image directory.
const IMPORT_PREFIX: &str = ".import-";

/// Image filesystem usage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes used by blobs and unpacked layers.
    pub bytes: u64,
    /// Inodes used by them.
    pub inodes: u64,
}

/// Every image of the daemon.
#[derive(Debug)]
pub struct Images {
    store: Arc<Store>,
    content: Arc<ContentStore>,
    puller: Puller,
    dir: PathBuf,
    /// Serialises read-modify-write of several records (tag moves, GC).
    records: tokio::sync::Mutex<()>,
}

impl Images {
    /// Opens the image store under `<root>/images`.
    pub fn open(
        root: &Path,
        store: Arc<Store>,
        registry: &crate::config::Registry,
    ) -> Result<Images, ImageError> {
        let dir = root.join("images");
        let content = Arc::new(ContentStore::open(&dir)?);
        // Scratch dirs of imports a crash interrupted.
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with(IMPORT_PREFIX) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let puller = Puller::new(registry, content.clone(), &dir.join("layers"))?;
        Ok(Images {
            store,
            content,
            puller,
            dir,
            records: tokio::sync::Mutex::new(()),
        })
    }

    /// The image filesystem (for ImageFsInfo's mountpoint).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The unpacked directory of a layer chain ID (a container's lowerdir).
    pub fn layer_dir(&self, chain_id: &str) -> Result<PathBuf, ImageError> {
        self.puller.layer_dir(chain_id)
    }

    /// Pulls `image` and records it, telling `progress` how its layers
    /// go; the image record.
    pub async fn pull(
        &self,
        image: &str,
        creds: &Credentials,
        progress: &Progress,
    ) -> Result<ImageRecord, ImageError> {
        let r = reference::parse(image)?;
        let pulled = self.puller.pull(&r, creds, progress).await?;
        let repo_digest = format!(
            "{}@{}",
            reference::repo(&r),
            pulled
                .index_digest
                .as_deref()
                .unwrap_or(&pulled.manifest_digest)
        );
        let tags: Vec<String> = reference::tagged(&r).into_iter().collect();
        self.record(pulled, &tags, &[repo_digest]).await
    }

    /// Imports every image of an OCI archive or `docker save` tarball at
    /// `archive` (see [`super::import`]), naming unnamed ones `name`; their
    /// records.
    pub async fn import(
        &self,
        archive: &Path,
        name: Option<&str>,
    ) -> Result<Vec<ImageRecord>, ImageError> {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let scratch = self
            .dir
            .join(format!("{IMPORT_PREFIX}{}-{n}", std::process::id()));
        let found = import::import(&self.puller, &self.content, archive, scratch, name).await?;
        let mut out = Vec::new();
        for i in found {
            out.push(self.record(i.pulled, &i.tags, &i.repo_digests).await?);
        }
        Ok(out)
    }

    /// Records a pulled or imported image: merged with its existing record,
    /// `tags` taken from whichever images had them (a tag names one image,
    /// as registries move tags), `repo_digests` added.
    async fn record(
        &self,
        pulled: Pulled,
        tags: &[String],
        repo_digests: &[String],
    ) -> Result<ImageRecord, ImageError> {
        let _g = self.records.lock().await;
        let mut rec: ImageRecord =
            self.store
                .get(Kind::Image, &pulled.id)?
                .unwrap_or_else(|| ImageRecord {
                    id: pulled.id.clone(),
                    repo_tags: Vec::new(),
                    repo_digests: Vec::new(),
                    manifest_digest: pulled.manifest_digest.clone(),
                    index_digest: pulled.index_digest.clone(),
                    media_type: pulled.media_type.clone(),
                    config: pulled.config.clone(),
                    layers: pulled.layers.clone(),
                    size: pulled.size,
                    pulled_at: crate::sandbox::run::now_ns(),
                });
        rec.layers = pulled.layers;
        if !tags.is_empty() {
            for (id, mut other) in self.store.list::<ImageRecord>(Kind::Image)? {
                if id != rec.id && other.repo_tags.iter().any(|t| tags.contains(t)) {
                    other.repo_tags.retain(|x| !tags.contains(x));
                    self.store.put(Kind::Image, &id, &other)?;
                }
            }
        }
        for t in tags {
            if !rec.repo_tags.contains(t) {
                rec.repo_tags.push(t.clone());
            }
        }
        for d in repo_digests {
            if !rec.repo_digests.contains(d) {
                rec.repo_digests.push(d.clone());
            }
        }
        self.store.put(Kind::Image, &rec.id, &rec)?;
        Ok(rec)
    }

    /// Every image.
    pub fn list(&self) -> Result<Vec<ImageRecord>, ImageError> {
        Ok(self
            .store
            .list::<ImageRecord>(Kind::Image)?
            .into_iter()
            .map(|(_, r)| r)
            .collect())
    }

    /// The image `s` names: an ID (`sha256:…`, or its hex, or a unique hex
    /// prefix of at least 12), a tag (normalized: `busybox` is
    /// `docker.io/library/busybox:latest`) or a repo digest. None when no
    /// image matches.
    pub fn resolve(&self, s: &str) -> Result<Option<ImageRecord>, ImageError> {
        let all = self.list()?;
        let hex = s.strip_prefix("sha256:").unwrap_or(s);
        if hex.len() >= 12 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let hits: Vec<&ImageRecord> = all
                .iter()
                .filter(|r| r.id.trim_start_matches("sha256:").starts_with(hex))
                .collect();
            if hits.len() == 1 {
                return Ok(Some(hits[0].clone()));
            }
        }
        let Ok(r) = reference::parse(s) else {
            return Ok(None);
        };
        let found = match (r.digest(), reference::tagged(&r)) {
            (Some(d), _) => {
                let want = format!("{}@{d}", reference::repo(&r));
                all.into_iter().find(|i| i.repo_digests.contains(&want))
            }
            (None, Some(t)) => all.into_iter().find(|i| i.repo_tags.contains(&t)),
            (None, None) => None,
        };
        Ok(found)
    }

    /// Removes the image `s` names (all its tags) and collects what no
    /// image uses any more. Removing an image that is not there succeeds.
    /// `in_use` lists layer chain IDs containers still run on: those stay.
    pub async fn remove(&self, s: &str, in_use: &HashSet<String>) -> Result<(), ImageError> {
        let _g = self.records.lock().await;
        let Some(rec) = self.resolve(s)? else {
            return Ok(());
        };
        self.store.delete(Kind::Image, &rec.id)?;
        self.gc(in_use)
    }

    /// Deletes blobs and unpacked layers no image (or running container)
    /// uses. Run with the records lock held.
    fn gc(&self, in_use: &HashSet<String>) -> Result<(), ImageError> {
        let images = self.list()?;
        let blobs: HashSet<String> = images.iter().flat_map(|i| i.blobs()).collect();
        let chains: HashSet<String> = images
            .iter()
            .flat_map(|i| i.layers.iter().map(|l| l.chain_id.clone()))
            .chain(in_use.iter().cloned())
            .collect();
        for b in self.content.list() {
            if !blobs.contains(&b) {
                self.content.remove(&b)?;
            }
        }
        let layers = self.dir.join("layers");
        for e in std::fs::read_dir(&layers).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let hex = name.trim_end_matches(".usage");
            if hex.starts_with('.') || chains.contains(&format!("sha256:{hex}")) {
                continue;
            }
            let p = e.path();
            let r = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            r.map_err(|e| ImageError::io("remove unused layer", &p, e))?;
        }
        Ok(())
    }

    /// Bytes and inodes the image filesystem holds: every blob plus every
    /// unpacked layer (each counted once, however many images share it).
    pub fn usage(&self) -> Result<Usage, ImageError> {
        let mut u = Usage::default();
        for b in self.content.list() {
            u.bytes += self.content.size(&b).unwrap_or(0);
            u.inodes += 1;
        }
        let mut seen = HashSet::new();
        for img in self.list()? {
            for l in img.layers {
                if seen.insert(l.chain_id.clone()) {
                    u.bytes += l.unpacked_size;
                    u.inodes += l.inodes;
                }
            }
        }
        Ok(u)
    }
}
