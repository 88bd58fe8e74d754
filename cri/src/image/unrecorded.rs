//! What pulls and imports stored that no image record names yet: blobs
//! and unpacked layers of a pull that failed or was cancelled would
//! otherwise stay on the image filesystem until some removal's collection.
//! Recording an image settles its parts; the rest is swept once no pull,
//! import or container creation holds a lease.

use std::collections::HashSet;
use std::sync::Mutex;

/// Blob digests and layer chain IDs stored but not yet recorded.
#[derive(Debug, Default)]
pub struct Unrecorded(Mutex<Parts>);

/// The two kinds of part.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parts {
    /// Blob digests.
    pub blobs: HashSet<String>,
    /// Chain IDs of unpacked layers.
    pub chains: HashSet<String>,
}

impl Unrecorded {
    fn parts(&self) -> std::sync::MutexGuard<'_, Parts> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A blob was stored.
    pub fn blob(&self, digest: &str) {
        self.parts().blobs.insert(digest.to_string());
    }

    /// A layer was unpacked.
    pub fn chain(&self, chain_id: &str) {
        self.parts().chains.insert(chain_id.to_string());
    }

    /// An image naming these blobs and chains was recorded.
    pub fn recorded<'a>(
        &self,
        blobs: impl IntoIterator<Item = &'a String>,
        chains: impl IntoIterator<Item = &'a String>,
    ) {
        let mut p = self.parts();
        for b in blobs {
            p.blobs.remove(b);
        }
        for c in chains {
            p.chains.remove(c);
        }
    }

    /// Everything still unrecorded, forgotten here.
    pub fn take(&self) -> Parts {
        std::mem::take(&mut *self.parts())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_an_image_settles_its_parts_only() {
        let u = Unrecorded::default();
        u.blob("sha256:a");
        u.blob("sha256:b");
        u.chain("sha256:c");
        u.chain("sha256:d");
        u.recorded(&["sha256:a".to_string()], &["sha256:c".to_string()]);
        let left = u.take();
        assert_eq!(left.blobs, HashSet::from(["sha256:b".to_string()]));
        assert_eq!(left.chains, HashSet::from(["sha256:d".to_string()]));
        assert_eq!(u.take(), Parts::default());
    }
}
