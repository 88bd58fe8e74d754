//! The content store: blobs (manifests, configs, layer tarballs) by digest
//! under `<root>/images/blobs/sha256/<hex>`. A blob is written to a
//! temporary file in `ingest/`, hashed and counted as it streams in, and
//! renamed into place only when its digest and size match what was asked
//! for; a mismatch or a broken stream leaves nothing behind.

use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest as _, Sha256};

use super::unrecorded::Unrecorded;
use super::ImageError;

/// The content store.
#[derive(Debug)]
pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
    /// Blobs (and layers, which the puller notes here) stored since no
    /// record named them.
    unrecorded: Unrecorded,
}

/// The hex part of a `sha256:<64 hex>` digest, or an error for anything else.
pub fn hex_of(digest: &str) -> Result<&str, ImageError> {
    match digest.strip_prefix("sha256:") {
        Some(h)
            if h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) =>
        {
            Ok(h)
        }
        _ => Err(ImageError::InvalidDigest(digest.to_string())),
    }
}

/// `sha256:<hex>` of `data`.
pub fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

/// A temporary file removed when this is dropped (if it still exists).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `sha256:<hex>` of a file's content, and its length. Blocking.
pub fn file_digest(path: &Path) -> Result<(String, u64), ImageError> {
    let mut f = std::fs::File::open(path).map_err(|e| ImageError::io("open", path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let k =
            std::io::Read::read(&mut f, &mut buf).map_err(|e| ImageError::io("read", path, e))?;
        if k == 0 {
            break;
        }
        hasher.update(&buf[..k]);
        n += k as u64;
    }
    Ok((format!("sha256:{}", hex(&hasher.finalize())), n))
}

/// Lower-case hex of bytes.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl ContentStore {
    /// Opens the store under `dir` (created), discarding interrupted
    /// downloads left in `ingest/` by a previous run.
    pub fn open(dir: &Path) -> Result<ContentStore, ImageError> {
        let blobs = dir.join("blobs").join("sha256");
        let ingest = dir.join("ingest");
        let _ = std::fs::remove_dir_all(&ingest);
        for d in [&blobs, &ingest] {
            std::fs::create_dir_all(d).map_err(|e| ImageError::io("create", d, e))?;
        }
        Ok(ContentStore {
            blobs,
            ingest,
            unrecorded: Unrecorded::default(),
        })
    }

    /// What was stored here, or unpacked from it, that no image record
    /// names yet.
    pub fn unrecorded(&self) -> &Unrecorded {
        &self.unrecorded
    }

    /// Where blob `digest` lives.
    pub fn path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        Ok(self.blobs.join(hex_of(digest)?))
    }

    /// Whether blob `digest` is present.
    pub fn has(&self, digest: &str) -> bool {
        self.path(digest).map(|p| p.is_file()).unwrap_or(false)
    }

    /// Reads a (small) blob whole: manifests and configs.
    pub fn read(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let p = self.path(digest)?;
        std::fs::read(&p).map_err(|e| ImageError::io("read", &p, e))
    }

    /// Size of a stored blob.
    pub fn size(&self, digest: &str) -> Result<u64, ImageError> {
        let p = self.path(digest)?;
        std::fs::metadata(&p)
            .map(|m| m.len())
            .map_err(|e| ImageError::io("stat", &p, e))
    }

    /// Stores `data` as blob `digest` after checking it hashes to it.
    pub fn put(&self, digest: &str, data: &[u8]) -> Result<PathBuf, ImageError> {
        let dst = self.path(digest)?;
        let got = digest_of(data);
        if got != digest {
            return Err(ImageError::DigestMismatch {
                expected: digest.to_string(),
                got,
            });
        }
        if dst.is_file() {
            return Ok(dst);
        }
        let tmp = self.temp(digest)?;
        let r = std::fs::write(&tmp, data)
            .and_then(|()| std::fs::rename(&tmp, &dst))
            .map_err(|e| ImageError::io("store blob", &dst, e));
        if r.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        r?;
        self.unrecorded.blob(digest);
        Ok(dst)
    }

    fn temp(&self, digest: &str) -> Result<PathBuf, ImageError> {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(self
            .ingest
            .join(format!("{}.{}.{n}", hex_of(digest)?, std::process::id())))
    }

    /// Streams blob `digest` of `size` bytes (when known) to disk, verifying
    /// both; `progress` is told the bytes received so far.
    pub async fn ingest<S, E>(
        &self,
        digest: &str,
        size: Option<u64>,
        mut stream: S,
        mut progress: impl FnMut(u64),
    ) -> Result<PathBuf, ImageError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let dst = self.path(digest)?;
        if dst.is_file() {
            return Ok(dst);
        }
        let tmp = self.temp(digest)?;
        // Removes the partial file however this ends: an error, or the
        // pull that awaits this being dropped (another layer failed). After
        // the rename there is nothing left to remove.
        let _partial = RemoveOnDrop(tmp.clone());
        async {
            let mut file =
                std::fs::File::create(&tmp).map_err(|e| ImageError::io("create", &tmp, e))?;
            let mut hasher = Sha256::new();
            let mut n: u64 = 0;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| ImageError::Transfer {
                    digest: digest.to_string(),
                    message: e.to_string(),
                })?;
                n += chunk.len() as u64;
                if let Some(s) = size {
                    if n > s {
                        return Err(ImageError::SizeMismatch {
                            digest: digest.to_string(),
                            expected: s,
                            got: n,
                        });
                    }
                }
                hasher.update(&chunk);
                file.write_all(&chunk)
                    .map_err(|e| ImageError::io("write", &tmp, e))?;
                progress(n);
            }
            if let Some(s) = size {
                if n != s {
                    return Err(ImageError::SizeMismatch {
                        digest: digest.to_string(),
                        expected: s,
                        got: n,
                    });
                }
            }
            let got = format!("sha256:{}", hex(&hasher.finalize()));
            if got != digest {
                return Err(ImageError::DigestMismatch {
                    expected: digest.to_string(),
                    got,
                });
            }
            file.sync_all()
                .map_err(|e| ImageError::io("sync", &tmp, e))?;
            std::fs::rename(&tmp, &dst).map_err(|e| ImageError::io("store blob", &dst, e))
        }
        .await?;
        self.unrecorded.blob(digest);
        Ok(dst)
    }

    /// Moves the file at `path` (on the store's filesystem) into the store
    /// as blob `digest`, after checking it hashes to it and, when given,
    /// has `size` bytes. An existing blob is kept and `path` left alone.
    /// Blocking: it reads the whole file.
    pub fn adopt(&self, digest: &str, size: Option<u64>, path: &Path) -> Result<(), ImageError> {
        let dst = self.path(digest)?;
        let (got, n) = file_digest(path)?;
        if let Some(s) = size.filter(|s| *s != n) {
            return Err(ImageError::SizeMismatch {
                digest: digest.to_string(),
                expected: s,
                got: n,
            });
        }
        if got != digest {
            return Err(ImageError::DigestMismatch {
                expected: digest.to_string(),
                got,
            });
        }
        if dst.is_file() {
            return Ok(());
        }
        std::fs::rename(path, &dst).map_err(|e| ImageError::io("store blob", &dst, e))?;
        self.unrecorded.blob(digest);
        Ok(())
    }

    /// Deletes blob `digest`; a missing one is fine.
    pub fn remove(&self, digest: &str) -> Result<(), ImageError> {
        let p = self.path(digest)?;
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ImageError::io("remove", &p, e)),
        }
    }

    /// Every stored blob's digest.
    pub fn list(&self) -> Vec<String> {
        std::fs::read_dir(&self.blobs)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| format!("sha256:{}", e.file_name().to_string_lossy()))
            .filter(|d| hex_of(d).is_ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(data: &'static [u8]) -> impl Stream<Item = Result<Bytes, String>> + Unpin {
        futures_util::stream::iter(data.chunks(3).map(|c| Ok(Bytes::from_static(c))))
    }

    #[tokio::test]
    async fn a_blob_is_stored_only_when_digest_and_size_match() {
        let d = tempfile::tempdir().expect("tmp");
        let cs = ContentStore::open(d.path()).expect("open");
        let data: &'static [u8] = b"hello content store";
        let digest = digest_of(data);
        let p = cs
            .ingest(&digest, Some(data.len() as u64), chunks(data), |_| {})
            .await
            .expect("ingest");
        assert_eq!(std::fs::read(&p).expect("read"), data);
        assert!(cs.has(&digest));
        assert_eq!(cs.list(), vec![digest.clone()]);

        let wrong = digest_of(b"something else");
        let e = cs
            .ingest(&wrong, None, chunks(data), |_| {})
            .await
            .expect_err("digest mismatch");
        assert!(matches!(e, ImageError::DigestMismatch { .. }), "{e}");
        let e = cs
            .ingest(&digest_of(b"x"), Some(2), chunks(data), |_| {})
            .await
            .expect_err("size mismatch");
        assert!(matches!(e, ImageError::SizeMismatch { .. }), "{e}");
        // Nothing half-written remains anywhere.
        assert_eq!(cs.list(), vec![digest]);
        assert_eq!(
            std::fs::read_dir(d.path().join("ingest"))
                .expect("ingest")
                .count(),
            0
        );
    }

    #[tokio::test]
    async fn a_broken_stream_leaves_nothing() {
        let d = tempfile::tempdir().expect("tmp");
        let cs = ContentStore::open(d.path()).expect("open");
        let s = futures_util::stream::iter(vec![
            Ok(Bytes::from_static(b"abc")),
            Err("connection reset".to_string()),
        ]);
        let e = cs
            .ingest(&digest_of(b"abcdef"), Some(6), s, |_| {})
            .await
            .expect_err("broken");
        assert!(e.to_string().contains("connection reset"), "{e}");
        assert!(cs.list().is_empty());
        assert_eq!(
            std::fs::read_dir(d.path().join("ingest"))
                .expect("ingest")
                .count(),
            0
        );
    }

    #[test]
    fn digests_are_checked_for_shape() {
        assert!(hex_of("sha256:../../etc/passwd").is_err());
        assert!(hex_of(&digest_of(b"")).is_ok());
        assert!(hex_of("md5:abc").is_err());
        let d = tempfile::tempdir().expect("tmp");
        let cs = ContentStore::open(d.path()).expect("open");
        assert!(cs.put(&digest_of(b"a"), b"b").is_err());
        let p = cs.put(&digest_of(b"a"), b"a").expect("put");
        assert!(p.is_file());
    }
}
