//! What the metadata store keeps per image: its ID (the config digest),
//! names, layers and config — everything ListImages, ImageStatus and
//! container creation need without touching the content store.

use serde::{Deserialize, Serialize};

/// One layer of an image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// The (compressed) blob's digest.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// The blob's size.
    pub size: u64,
    /// Digest of the uncompressed tar.
    pub diff_id: String,
    /// Chain ID: names the unpacked directory.
    pub chain_id: String,
    /// Bytes of file content unpacked.
    pub unpacked_size: u64,
    /// Entries unpacked.
    pub inodes: u64,
}

/// One image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// `sha256:<config digest>`.
    pub id: String,
    /// `registry/repo:tag` names pointing here.
    pub repo_tags: Vec<String>,
    /// `registry/repo@sha256:<manifest digest>` names.
    pub repo_digests: Vec<String>,
    /// The manifest's digest (of the platform manifest, not the index).
    pub manifest_digest: String,
    /// The index's digest, when the reference named an index.
    pub index_digest: Option<String>,
    /// The manifest's media type.
    pub media_type: String,
    /// The config blob (OCI image config), as JSON.
    pub config: serde_json::Value,
    /// Layers, base first.
    pub layers: Vec<LayerRecord>,
    /// Manifest + config + compressed layers: what CRI reports as size.
    pub size: u64,
    /// When it was pulled, nanoseconds since the epoch.
    pub pulled_at: i64,
}

impl ImageRecord {
    /// Every blob this image holds in the content store.
    pub fn blobs(&self) -> Vec<String> {
        let mut b = vec![self.id.clone(), self.manifest_digest.clone()];
        b.extend(self.index_digest.iter().cloned());
        b.extend(self.layers.iter().map(|l| l.digest.clone()));
        b
    }

    /// The config's `config` object (entrypoint, cmd, env, user, …).
    pub fn runtime_config(&self) -> &serde_json::Value {
        &self.config["config"]
    }
}

/// The chain IDs of `diff_ids`: the first is its diff_id, each next one
/// `sha256(parent_chain + " " + diff_id)`, as the OCI image spec defines.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(parent) => super::content::digest_of(format!("{parent} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let c = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(c[0], a);
        assert_eq!(
            c[1],
            super::super::content::digest_of(format!("{a} {b}").as_bytes())
        );
        assert!(chain_ids(&[]).is_empty());
    }
}
