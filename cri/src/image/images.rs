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
    /// Held shared by pulls, imports and container creations (whose blobs
    /// and layers no record names yet); a collection runs only when it
    /// can hold it exclusively, else it is owed to the last of them.
    gc_gate: tokio::sync::RwLock<()>,
    /// A deferred collection: the union of the chain IDs containers used
    /// at each removal that deferred one.
    owed: std::sync::Mutex<Option<HashSet<String>>>,
}

/// Holds off garbage collection of blobs and layers while an operation
/// that uses them before any image record names them is under way.
#[derive(Debug)]
pub struct Lease<'a>(#[allow(dead_code)] tokio::sync::RwLockReadGuard<'a, ()>);

impl Images {
    /// Opens the image store under `<root>/images`.
    pub fn open(
        root: &Path,
        store: Arc<Store>,
        registry: &crate::config::Registry,
        store_settings: &crate::config::ImageStore,
    ) -> Result<Images, ImageError> {
        let dir = root.join("images");
        let content = Arc::new(ContentStore::open(&dir)?);
        // Scratch dirs of imports a crash interrupted.
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with(IMPORT_PREFIX) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        // Layers a crash interrupted mid-unpack (`.tmp-*` and their
        // staging dirs): no unpack runs before the store is open.
        for e in std::fs::read_dir(dir.join("layers"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if e.file_name().to_string_lossy().starts_with('.') {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let limits = super::unpack::Limits {
            bytes: store_settings.max_layer_bytes,
            inodes: store_settings.max_layer_inodes,
        };
        let image_limits = super::unpack::Limits {
            bytes: store_settings.max_image_bytes,
            inodes: store_settings.max_image_inodes,
        };
        let puller = Puller::new(
            registry,
            limits,
            image_limits,
            content.clone(),
            &dir.join("layers"),
        )?;
        Ok(Images {
            store,
            content,
            puller,
            dir,
            records: tokio::sync::Mutex::new(()),
            gc_gate: tokio::sync::RwLock::new(()),
            owed: std::sync::Mutex::new(None),
        })
    }

    /// The image filesystem (for ImageFsInfo's mountpoint).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The unpacked directory of a layer chain ID (a container's lowerdir).
    /// An image's manifest, as JSON (its annotations, say).
    pub fn manifest(&self, image: &ImageRecord) -> Result<serde_json::Value, ImageError> {
        let b = self.content.read(&image.manifest_digest)?;
        serde_json::from_slice(&b).map_err(|e| ImageError::BadManifest {
            reference: image.id.clone(),
            message: format!("stored manifest {}: {e}", image.manifest_digest),
        })
    }

    /// What one layer may unpack to ([`super::pull::Puller::layer_limits`]).
    pub fn layer_limits(&self) -> super::unpack::Limits {
        self.puller.layer_limits()
    }

    pub fn layer_dir(&self, chain_id: &str) -> Result<PathBuf, ImageError> {
        self.puller.layer_dir(chain_id)
    }

    /// Makes the registry clients ahead of the first pull
    /// ([`super::pull::Puller::warm`]).
    pub fn warm(&self) {
        self.puller.warm()
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
        let lease = self.lease().await;
        let result = self.pull_leased(&r, creds, progress).await;
        drop(lease);
        self.collect_owed(&HashSet::new()).await?;
        result
    }

    async fn pull_leased(
        &self,
        r: &oci_client::Reference,
        creds: &Credentials,
        progress: &Progress,
    ) -> Result<ImageRecord, ImageError> {
        let pulled = self.puller.pull(r, creds, progress).await?;
        let repo_digest = format!(
            "{}@{}",
            reference::repo(r),
            pulled
                .index_digest
                .as_deref()
                .unwrap_or(&pulled.manifest_digest)
        );
        let tags: Vec<String> = reference::tagged(r).into_iter().collect();
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
        let lease = self.lease().await;
        let result = async {
            let found = import::import(&self.puller, &self.content, archive, scratch, name).await?;
            let mut out = Vec::new();
            for i in found {
                out.push(self.record(i.pulled, &i.tags, &i.repo_digests).await?);
            }
            Ok(out)
        }
        .await;
        drop(lease);
        self.collect_owed(&HashSet::new()).await?;
        result
    }

    /// A lease for an operation that will use blobs or layers before a
    /// record (or a container's chain IDs) names them: garbage collection
    /// waits for it. Call [`Images::collect_owed`] once it is dropped.
    pub async fn lease(&self) -> Lease<'_> {
        Lease(self.gc_gate.read().await)
    }

    /// Runs the collection a removal deferred while leases were held, if
    /// none is held any more; `in_use` adds the chain IDs containers use
    /// now (the removals' own sets are kept too).
    pub async fn collect_owed(&self, in_use: &HashSet<String>) -> Result<(), ImageError> {
        let _g = self.records.lock().await;
        let Ok(_exclusive) = self.gc_gate.try_write() else {
            return Ok(());
        };
        let owed = self.owed.lock().unwrap_or_else(|p| p.into_inner()).take();
        match owed {
            Some(mut keep) => {
                keep.extend(in_use.iter().cloned());
                self.content.unrecorded().take();
                self.gc(&keep)
            }
            None => self.sweep(),
        }
    }

    /// Removes what pulls and imports that failed or were cancelled left:
    /// blobs and layers stored since no record named them. Only these: a
    /// layer of a removed image that a container still runs on is never
    /// touched. Run with the records lock and the gate held exclusively.
    fn sweep(&self) -> Result<(), ImageError> {
        let left = self.content.unrecorded().take();
        if left.blobs.is_empty() && left.chains.is_empty() {
            return Ok(());
        }
        let images = self.list()?;
        let blobs: HashSet<String> = images.iter().flat_map(|i| i.blobs()).collect();
        let chains: HashSet<&str> = images
            .iter()
            .flat_map(|i| i.layers.iter().map(|l| l.chain_id.as_str()))
            .collect();
        for b in left.blobs.iter().filter(|b| !blobs.contains(*b)) {
            self.content.remove(b)?;
        }
        for c in left.chains.iter().filter(|c| !chains.contains(c.as_str())) {
            let dir = self.puller.layer_dir(c)?;
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(ImageError::io("remove unrecorded layer", &dir, e)),
            }
            let mut usage = dir.into_os_string();
            usage.push(".usage");
            let _ = std::fs::remove_file(usage);
        }
        tracing::info!(
            blobs = left.blobs.len(),
            layers = left.chains.len(),
            "swept what failed or cancelled pulls left"
        );
        Ok(())
    }

    /// The collection a restarted daemon runs once its containers are
    /// recovered (`in_use`: their chain IDs): what pulls and imports a
    /// crash interrupted stored, and no image or container uses, goes —
    /// the in-memory record of unrecorded parts died with the old daemon.
    pub async fn collect_at_start(&self, in_use: &HashSet<String>) -> Result<(), ImageError> {
        {
            let mut owed = self.owed.lock().unwrap_or_else(|p| p.into_inner());
            owed.get_or_insert_with(HashSet::new)
                .extend(in_use.iter().cloned());
        }
        self.collect_owed(in_use).await
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
                    pulled_at: crate::clock::now_ns(),
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
        let chains: Vec<String> = rec.layers.iter().map(|l| l.chain_id.clone()).collect();
        self.content.unrecorded().recorded(&rec.blobs(), &chains);
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
        let Ok(_exclusive) = self.gc_gate.try_write() else {
            // A pull, import or creation may be about to use what only
            // this image named: the last of them collects.
            let mut owed = self.owed.lock().unwrap_or_else(|p| p.into_inner());
            owed.get_or_insert_with(HashSet::new)
                .extend(in_use.iter().cloned());
            tracing::debug!(image = %rec.id, "garbage collection deferred: images in use by pulls");
            return Ok(());
        };
        let mut keep = in_use.clone();
        if let Some(owed) = self.owed.lock().unwrap_or_else(|p| p.into_inner()).take() {
            keep.extend(owed);
        }
        self.gc(&keep)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::content::digest_of;

    /// An image store with one record naming one blob.
    fn one_image(dir: &Path) -> (Images, String) {
        let store = Arc::new(Store::open(&dir.join("m.redb")).expect("store"));
        let images = Images::open(dir, store.clone(), &Default::default(), &Default::default())
            .expect("images");
        let config = br#"{"rootfs":{"diff_ids":[]}}"#;
        let id = digest_of(config);
        images.content.put(&id, config).expect("put");
        let rec = ImageRecord {
            id: id.clone(),
            repo_tags: vec!["example.com/a:v1".into()],
            repo_digests: Vec::new(),
            manifest_digest: id.clone(),
            index_digest: None,
            media_type: String::new(),
            config: serde_json::json!({}),
            layers: Vec::new(),
            size: 0,
            pulled_at: 0,
        };
        store.put(Kind::Image, &id, &rec).expect("record");
        (images, id)
    }

    #[tokio::test]
    async fn removal_during_a_lease_collects_when_the_last_lease_ends() {
        let d = tempfile::tempdir().expect("tmp");
        let (images, id) = one_image(d.path());
        let lease = images.lease().await;
        let second = images.lease().await;
        images
            .remove("example.com/a:v1", &HashSet::new())
            .await
            .expect("remove");
        assert!(images.resolve(&id).expect("resolve").is_none());
        assert!(images.content.has(&id), "collected under a lease");
        drop(lease);
        images.collect_owed(&HashSet::new()).await.expect("collect");
        assert!(images.content.has(&id), "collected under the second lease");
        drop(second);
        images.collect_owed(&HashSet::new()).await.expect("collect");
        assert!(!images.content.has(&id), "the owed collection never ran");
    }

    /// After a crash mid-pull: an unrecorded blob, an unrecorded layer and
    /// an interrupted unpack's dirs go at start; a layer a container still
    /// uses (its image removed) and the recorded image's blob stay.
    #[tokio::test]
    async fn a_restart_collects_what_interrupted_pulls_left() {
        let d = tempfile::tempdir().expect("tmp");
        let (images, id) = one_image(d.path());
        let stray = digest_of(b"a blob of a pull that never finished");
        images
            .content
            .put(&stray, b"a blob of a pull that never finished")
            .expect("put");
        let layers = d.path().join("images/layers");
        let hex = |c: char| std::iter::repeat_n(c, 64).collect::<String>();
        let (orphan, used) = (hex('a'), hex('b'));
        for l in [&orphan, &used] {
            std::fs::create_dir_all(layers.join(l)).expect("layer");
        }
        std::fs::create_dir_all(layers.join(format!(".tmp-{orphan}-1"))).expect("tmp");
        drop(images);
        // A new daemon: the same store and directories.
        let (images, _) = one_image(d.path());
        assert!(
            !layers.join(format!(".tmp-{orphan}-1")).exists(),
            "an interrupted unpack's dir is kept"
        );
        let in_use: HashSet<String> = [format!("sha256:{used}")].into_iter().collect();
        images.collect_at_start(&in_use).await.expect("collect");
        assert!(images.content.has(&id), "the recorded image's blob went");
        assert!(!images.content.has(&stray), "an unrecorded blob stayed");
        assert!(!layers.join(&orphan).exists(), "an unused layer stayed");
        assert!(layers.join(&used).exists(), "a container's layer went");
    }

    #[tokio::test]
    async fn removal_without_leases_collects_at_once() {
        let d = tempfile::tempdir().expect("tmp");
        let (images, id) = one_image(d.path());
        images.remove(&id, &HashSet::new()).await.expect("remove");
        assert!(!images.content.has(&id));
    }
}
