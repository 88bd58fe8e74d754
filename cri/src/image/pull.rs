//! Pulling an image from a registry (OCI distribution / Docker registry
//! v2, through oci-client): try the configured mirrors, then the registry
//! itself; resolve an index to this host's platform; store manifest and
//! config; download every layer in parallel straight into the content
//! store and unpack each as soon as it has arrived. Two pulls that need
//! the same blob or layer share one transfer and one unpack.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::RegistryOperation;
use oci_client::{Client, Reference};
use serde_json::Value;

use super::content::{digest_of, hex_of, ContentStore};
use super::progress::{Progress, PullEvent};
use super::records::{chain_ids, LayerRecord};
use super::unpack::{unpack_layer, Compression, ImageBudget, Limits, UnpackError};
use super::ImageError;

pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Layers downloaded and unpacked at once, per pull.
const PARALLEL_LAYERS: usize = 6;

/// Credentials for one pull (the CRI `AuthConfig`, decoded).
///
/// Its `Debug` shows the user name only: the password and token never
/// reach a log line through a `{:?}`.
#[derive(Clone, Default)]
pub struct Credentials {
    /// Basic auth user (also from a decoded `auth` field).
    pub username: String,
    /// Basic auth password.
    pub password: String,
    /// A bearer token for the registry (`registry_token`).
    pub registry_token: String,
    /// The registry the credentials were issued for (CRI's
    /// `server_address`: a host, or a URL as docker's config keeps them);
    /// "" for the image's own registry. They go to that host only.
    pub server_address: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |secret: &str| if secret.is_empty() { "" } else { "<redacted>" };
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &hidden(&self.password))
            .field("registry_token", &hidden(&self.registry_token))
            .finish()
    }
}

/// A registry host as credentials name it: no scheme, no path, lower
/// case, and docker.io for Docker Hub's other names.
fn registry_host(s: &str) -> String {
    let s = s
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = s.split('/').next().unwrap_or("").to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".into(),
        _ => host,
    }
}

/// Whether credentials issued for `creds_host` may go to `endpoint` (a
/// mirror or the registry itself): only to that very host, and over plain
/// HTTP only if the operator listed the host in `[registry] insecure`
/// (a mirror given as an `http://` URL is plain HTTP without being
/// trusted with secrets).
fn credentials_go_to(
    endpoint: &str,
    creds_host: &str,
    plain_http: bool,
    configured_insecure: bool,
) -> bool {
    registry_host(endpoint) == creds_host && (!plain_http || configured_insecure)
}

impl Credentials {
    fn auth(&self) -> RegistryAuth {
        if !self.registry_token.is_empty() {
            RegistryAuth::Bearer(self.registry_token.clone())
        } else if !self.username.is_empty() {
            RegistryAuth::Basic(self.username.clone(), self.password.clone())
        } else {
            RegistryAuth::Anonymous
        }
    }
}

/// What a pull produced (before it becomes an image record).
#[derive(Clone, Debug)]
pub struct Pulled {
    /// Config digest: the image ID.
    pub id: String,
    /// The platform manifest's digest.
    pub manifest_digest: String,
    /// The index's digest, if the reference named one.
    pub index_digest: Option<String>,
    /// The manifest's media type.
    pub media_type: String,
    /// The config JSON.
    pub config: Value,
    /// Layers, base first.
    pub layers: Vec<LayerRecord>,
    /// Manifest + config + layer blob sizes.
    pub size: u64,
}

/// The largest image config read: containers/image (CRI-O) caps it at
/// 4 MiB too; real configs are a few KiB.
const CONFIG_LIMIT: u64 = 4 << 20;
/// The largest manifest or index read (containers/image and
/// go-containerregistry use 4 MiB too).
const MANIFEST_LIMIT: u64 = 4 << 20;

/// The registry client with the daemon's mirror and plain-HTTP settings.
pub struct Puller {
    /// Made at the first anonymous pull: building one loads the system's
    /// CA certificates, which a daemon that never pulls need not pay for.
    client: std::sync::OnceLock<Client>,
    timeouts: Timeouts,
    /// The hosts the operator listed as plain HTTP: the only plain-HTTP
    /// hosts credentials may go to.
    configured_insecure: Vec<String>,
    /// What one layer may unpack to.
    limits: Limits,
    /// What all the layers of one image may unpack to together.
    image_limits: Limits,
    /// Plain HTTP for manifests, read through a size limit.
    http: std::sync::OnceLock<reqwest::Client>,
    insecure: Vec<String>,
    mirrors: BTreeMap<String, Vec<String>>,
    content: Arc<ContentStore>,
    layers_dir: PathBuf,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for Puller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Puller")
            .field("mirrors", &self.mirrors)
            .finish()
    }
}

/// `host[:port]` of a mirror URL, and whether it is plain HTTP.
fn mirror_host(url: &str) -> (String, bool) {
    let (rest, http) = match url.strip_prefix("http://") {
        Some(r) => (r, true),
        None => (url.strip_prefix("https://").unwrap_or(url), false),
    };
    (rest.trim_end_matches('/').to_string(), http)
}

/// How long a registry may take: to connect, and to send the next bytes
/// of an answer.
#[derive(Clone, Copy, Debug)]
struct Timeouts {
    connect: Option<Duration>,
    read: Option<Duration>,
}

impl Timeouts {
    fn of(registry: &crate::config::Registry) -> Timeouts {
        let secs = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        Timeouts {
            connect: secs(registry.connect_timeout_secs),
            read: secs(registry.read_timeout_secs),
        }
    }
}

/// The registry client's settings: plain HTTP for `insecure` hosts, the
/// configured timeouts, the system's CA certificates as its roots
/// ([`super::tls_roots`]), and no platform resolver (the platform is picked
/// here).
fn config_for(insecure: &[String], timeouts: Timeouts) -> ClientConfig {
    ClientConfig {
        protocol: ClientProtocol::HttpsExcept(insecure.to_vec()),
        platform_resolver: None,
        connect_timeout: timeouts.connect,
        read_timeout: timeouts.read,
        tls_certs_only: super::tls_roots::for_oci(),
        ..Default::default()
    }
}

/// This host's architecture in OCI terms.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

impl Puller {
    /// A puller storing into `content` and unpacking under `layers_dir`.
    pub fn new(
        registry: &crate::config::Registry,
        limits: Limits,
        image_limits: Limits,
        content: Arc<ContentStore>,
        layers_dir: &Path,
    ) -> Result<Puller, ImageError> {
        let mut insecure = registry.insecure.clone();
        for urls in registry.mirrors.values() {
            for u in urls {
                let (host, http) = mirror_host(u);
                if http {
                    insecure.push(host);
                }
            }
        }
        std::fs::create_dir_all(layers_dir).map_err(|e| ImageError::io("create", layers_dir, e))?;
        Ok(Puller {
            client: std::sync::OnceLock::new(),
            timeouts: Timeouts::of(registry),
            configured_insecure: registry.insecure.clone(),
            limits,
            image_limits,
            http: std::sync::OnceLock::new(),
            insecure,
            mirrors: registry.mirrors.clone(),
            content,
            layers_dir: layers_dir.to_path_buf(),
            locks: Mutex::new(HashMap::new()),
        })
    }

    /// The directory a chain ID unpacks to.
    /// What one layer may unpack to (also the bound on other unpacked
    /// input, such as a checkpoint's rootfs changes).
    pub fn layer_limits(&self) -> Limits {
        self.limits
    }

    pub fn layer_dir(&self, chain_id: &str) -> Result<PathBuf, ImageError> {
        Ok(self.layers_dir.join(hex_of(chain_id)?))
    }

    fn lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(key.to_string()).or_default().clone()
    }

    /// Where to try `r`: each mirror of its registry, then the registry.
    fn endpoints(&self, r: &Reference) -> Vec<Reference> {
        let mut out = Vec::new();
        if let Some(urls) = self.mirrors.get(r.registry()) {
            for u in urls {
                let (host, _) = mirror_host(u);
                let m = match (r.tag(), r.digest()) {
                    (Some(t), Some(d)) => Reference::with_tag_and_digest(
                        host,
                        r.repository().into(),
                        t.into(),
                        d.into(),
                    ),
                    (None, Some(d)) => {
                        Reference::with_digest(host, r.repository().into(), d.into())
                    }
                    (Some(t), None) => Reference::with_tag(host, r.repository().into(), t.into()),
                    (None, None) => {
                        Reference::with_tag(host, r.repository().into(), "latest".into())
                    }
                };
                out.push(m);
            }
        }
        out.push(r.clone());
        out
    }

    /// Pulls `r` (every layer stored and unpacked) with `creds`, telling
    /// `progress` how each layer goes.
    pub async fn pull(
        &self,
        r: &Reference,
        creds: &Credentials,
        progress: &Progress,
    ) -> Result<Pulled, ImageError> {
        let creds_host = if creds.server_address.is_empty() {
            registry_host(r.registry())
        } else {
            registry_host(&creds.server_address)
        };
        // oci-client keeps the first credentials it sees per registry:
        // a pull with credentials gets a client of its own, so earlier
        // anonymous or wrong ones are never reused for it.
        let own = std::sync::OnceLock::new();
        let own = || own.get_or_init(|| self.new_client());
        let shared = || self.client.get_or_init(|| self.new_client());
        let mut errors = Vec::new();
        for ep in self.endpoints(r) {
            let host = ep.registry();
            let plain_http = self.insecure.iter().any(|h| h == host);
            let trusted = self.configured_insecure.iter().any(|h| h == host);
            let (client, auth) = match creds.auth() {
                RegistryAuth::Anonymous => (shared(), RegistryAuth::Anonymous),
                auth if credentials_go_to(host, &creds_host, plain_http, trusted) => (own(), auth),
                _ => {
                    tracing::debug!(image = %r.whole(), endpoint = %host, "credentials are not for this endpoint: pulling anonymously");
                    (shared(), RegistryAuth::Anonymous)
                }
            };
            match self.pull_from(client, &ep, &auth, progress).await {
                Ok(p) => return Ok(p),
                // Content that is wrong is wrong everywhere: do not retry.
                Err(
                    e @ (ImageError::DigestMismatch { .. }
                    | ImageError::DiffIdMismatch { .. }
                    | ImageError::Unpack { .. }),
                ) => return Err(e),
                Err(e) => {
                    tracing::info!(image = %r.whole(), endpoint = %ep.registry(), error = %e, "pull from endpoint failed");
                    errors.push(e);
                }
            }
        }
        // The registry's own answer (the last) says most.
        Err(errors
            .pop()
            .unwrap_or_else(|| ImageError::NotFound(r.whole())))
    }

    /// GETs the manifest (or index) `r` names, read through a size limit:
    /// oci-client reads a manifest body whole, whatever its size. The
    /// request authenticates as oci-client would (it negotiates the token,
    /// anonymous ones included); a body over [`MANIFEST_LIMIT`] is refused
    /// from its Content-Length, or as soon as it passes the limit.
    async fn fetch_manifest(
        &self,
        client: &Client,
        r: &Reference,
        auth: &RegistryAuth,
    ) -> Result<Vec<u8>, ImageError> {
        let failed = |message: String| ImageError::Registry {
            reference: r.whole(),
            message,
        };
        let token = client
            .auth(r, auth, RegistryOperation::Pull)
            .await
            .map_err(|e| failed(super::error::with_causes(&e)))?;
        let host = r.resolve_registry();
        let scheme = if self.insecure.iter().any(|h| h == host) {
            "http"
        } else {
            "https"
        };
        let reference = r.digest().or(r.tag()).unwrap_or("latest");
        let url = format!(
            "{scheme}://{host}/v2/{}/manifests/{reference}{}",
            r.repository(),
            r.namespace()
                .map(|ns| format!("?ns={ns}"))
                .unwrap_or_default()
        );
        let mut req = self
            .http()
            .map_err(|e| failed(format!("HTTP client: {e}")))?
            .get(&url)
            .header(
                reqwest::header::ACCEPT,
                [OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST].join(", "),
            );
        req = match (token, auth) {
            (Some(t), _) => req.bearer_auth(t),
            (None, RegistryAuth::Basic(u, p)) => req.basic_auth(u, Some(p)),
            _ => req,
        };
        let mut res = req
            .send()
            .await
            .map_err(|e| failed(format!("GET {url}: {}", super::error::with_causes(&e))))?;
        let status = res.status();
        let too_big = |n: u64| ImageError::BadManifest {
            reference: r.whole(),
            message: format!(
                "the manifest is {n} bytes or more, over the {} MiB limit",
                MANIFEST_LIMIT >> 20
            ),
        };
        if !status.is_success() {
            // The registry's own words, bounded.
            let mut body = Vec::new();
            while let Ok(Some(chunk)) = res.chunk().await {
                body.extend_from_slice(&chunk);
                if body.len() >= 1024 {
                    break;
                }
            }
            body.truncate(1024);
            return Err(failed(format!(
                "GET {url}: {status}: {}",
                String::from_utf8_lossy(&body).trim()
            )));
        }
        if let Some(n) = res.content_length().filter(|n| *n > MANIFEST_LIMIT) {
            return Err(too_big(n));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = res
            .chunk()
            .await
            .map_err(|e| failed(format!("GET {url}: {e}")))?
        {
            if (bytes.len() + chunk.len()) as u64 > MANIFEST_LIMIT {
                return Err(too_big((bytes.len() + chunk.len()) as u64));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    /// A registry client with the daemon's plain-HTTP hosts and timeouts.
    fn new_client(&self) -> Client {
        crate::tls_crypto::provider();
        Client::new(config_for(&self.insecure, self.timeouts))
    }

    /// Makes the anonymous registry client and the manifest client now
    /// rather than in the first pull: each loads the system's CA
    /// certificates (tens of ms), which the first pull after a start
    /// would otherwise wait for. The daemon calls it off the async workers
    /// once it serves; tests that never pull never pay for it.
    pub fn warm(&self) {
        self.client.get_or_init(|| self.new_client());
        if let Err(e) = self.http() {
            tracing::warn!(error = %e, "registry HTTP client");
        }
    }

    /// The HTTP client of [`Puller::fetch_manifest`], with the daemon's
    /// timeouts; made once.
    fn http(&self) -> Result<&reqwest::Client, reqwest::Error> {
        if let Some(c) = self.http.get() {
            return Ok(c);
        }
        crate::tls_crypto::provider();
        let mut b = reqwest::Client::builder().tls_certs_only(super::tls_roots::for_reqwest());
        if let Some(t) = self.timeouts.connect {
            b = b.connect_timeout(t);
        }
        if let Some(t) = self.timeouts.read {
            b = b.read_timeout(t);
        }
        let c = b.build()?;
        Ok(self.http.get_or_init(|| c))
    }

    async fn manifest(
        &self,
        client: &Client,
        r: &Reference,
        auth: &RegistryAuth,
    ) -> Result<(Vec<u8>, String, String), ImageError> {
        let bytes = self.fetch_manifest(client, r, auth).await?;
        let digest = digest_of(&bytes);
        if let Some(want) = r.digest() {
            if want != digest {
                return Err(ImageError::DigestMismatch {
                    expected: want.to_string(),
                    got: digest,
                });
            }
        }
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| ImageError::BadManifest {
            reference: r.whole(),
            message: format!("manifest is not JSON: {e}"),
        })?;
        let media_type = v["mediaType"].as_str().unwrap_or_else(|| {
            if v.get("manifests").is_some() {
                OCI_INDEX
            } else {
                OCI_MANIFEST
            }
        });
        Ok((bytes, digest, media_type.to_string()))
    }

    async fn pull_from(
        &self,
        client: &Client,
        r: &Reference,
        auth: &RegistryAuth,
        progress: &Progress,
    ) -> Result<Pulled, ImageError> {
        let started = Instant::now();
        let (mut bytes, mut digest, mut media_type) = self.manifest(client, r, auth).await?;
        let mut index_digest = None;
        let mut manifest_ref = r.clone();
        if media_type == OCI_INDEX || media_type == DOCKER_LIST {
            self.content.put(&digest, &bytes)?;
            let index: Value =
                serde_json::from_slice(&bytes).map_err(|e| ImageError::BadManifest {
                    reference: r.whole(),
                    message: e.to_string(),
                })?;
            let chosen = select_platform(&index, "linux", host_arch()).ok_or_else(|| {
                ImageError::NoPlatform {
                    reference: r.whole(),
                    platform: format!("linux/{}", host_arch()),
                }
            })?;
            index_digest = Some(digest.clone());
            manifest_ref = r.clone_with_digest(chosen);
            (bytes, digest, media_type) = self.manifest(client, &manifest_ref, auth).await?;
        }
        if media_type != OCI_MANIFEST && media_type != DOCKER_MANIFEST {
            return Err(ImageError::BadManifest {
                reference: r.whole(),
                message: format!("unsupported manifest media type {media_type:?}"),
            });
        }
        self.content.put(&digest, &bytes)?;
        let manifest: Value =
            serde_json::from_slice(&bytes).map_err(|e| ImageError::BadManifest {
                reference: r.whole(),
                message: e.to_string(),
            })?;
        let bad = |m: &str| ImageError::BadManifest {
            reference: r.whole(),
            message: m.to_string(),
        };
        let config_digest = manifest["config"]["digest"]
            .as_str()
            .ok_or_else(|| bad("manifest has no config digest"))?
            .to_string();
        // The config is read whole: its size is declared, capped, and held
        // to while it downloads.
        let config_size = match manifest["config"]["size"].as_u64() {
            Some(n) if n <= CONFIG_LIMIT => n,
            Some(n) => {
                return Err(bad(&format!(
                    "the config is {n} bytes, over the {} MiB limit",
                    CONFIG_LIMIT >> 20
                )))
            }
            None => return Err(bad("manifest gives no config size")),
        };
        let config_size = Some(config_size);
        self.fetch_blob(
            client,
            &manifest_ref,
            auth,
            &config_digest,
            config_size,
            &Progress::none(),
        )
        .await?;
        let config_bytes = self.content.read(&config_digest)?;
        let config: Value = serde_json::from_slice(&config_bytes)
            .map_err(|e| bad(&format!("config is not JSON: {e}")))?;
        let plan = plan_layers(&r.whole(), &manifest, &config)?;
        for l in &plan {
            progress.send(PullEvent::Pending {
                layer: l.digest.clone(),
                total: l.size,
            });
        }
        let scope = Scope::new(self.image_budget());
        let jobs = plan.into_iter().map(|l| {
            let (scope, manifest_ref) = (&scope, &manifest_ref);
            async move {
                let r = self
                    .layer(client, manifest_ref, auth, l, scope, progress)
                    .await;
                if r.is_err() {
                    scope.stop();
                }
                r
            }
        });
        // Every layer ends before the pull does: a failed one stops the
        // rest (downloads dropped, unpacks stopped at their next chunk), so
        // a failed pull returns with nothing of it still being written.
        let mut layers = Vec::new();
        let mut failure: Option<ImageError> = None;
        for r in futures_util::future::join_all(jobs).await {
            match r {
                Ok(l) => layers.push(l),
                Err(e) if failure.as_ref().is_none_or(|f| f.is_cancelled()) => failure = Some(e),
                Err(_) => {}
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        let size = bytes.len() as u64
            + config_bytes.len() as u64
            + layers.iter().map(|l| l.size).sum::<u64>();
        tracing::info!(image = %r.whole(), id = %config_digest, layers = layers.len(), bytes = size, ms = started.elapsed().as_millis() as u64, "image pulled");
        Ok(Pulled {
            id: config_digest,
            manifest_digest: digest,
            index_digest,
            media_type,
            config,
            layers,
            size,
        })
    }

    /// Downloads a blob unless present; concurrent callers share the one
    /// transfer. Whether this call transferred it.
    async fn fetch_blob(
        &self,
        client: &Client,
        r: &Reference,
        auth: &RegistryAuth,
        digest: &str,
        size: Option<u64>,
        progress: &Progress,
    ) -> Result<bool, ImageError> {
        hex_of(digest)?;
        let lock = self.lock(digest);
        let _held = lock.lock().await;
        if self.content.has(digest) {
            return Ok(false);
        }
        // Authenticates once per registry and scope (a no-op if done).
        client
            .store_auth_if_needed(r.resolve_registry(), auth)
            .await;
        let stream =
            client
                .pull_blob_stream(r, digest)
                .await
                .map_err(|e| ImageError::Registry {
                    reference: r.whole(),
                    message: format!("blob {digest}: {}", super::error::with_causes(&e)),
                })?;
        self.content
            .ingest(
                digest,
                size,
                stream.stream,
                progress.bytes(digest, size.unwrap_or(0)),
            )
            .await?;
        Ok(true)
    }

    /// One layer: downloaded, then unpacked once per chain ID.
    async fn layer(
        &self,
        client: &Client,
        r: &Reference,
        auth: &RegistryAuth,
        mut l: LayerRecord,
        scope: &Scope,
        progress: &Progress,
    ) -> Result<LayerRecord, ImageError> {
        let budget = &scope.budget;
        let stopped = || ImageError::Unpack {
            digest: l.digest.clone(),
            source: UnpackError::Cancelled,
        };
        let mut stop = scope.stop.subscribe();
        let _permit = tokio::select! {
            p = scope.slots.acquire() => p.map_err(|_| stopped())?,
            _ = stop.wait_for(|s| *s) => return Err(stopped()),
        };
        let t = Instant::now();
        let dir = self.layer_dir(&l.chain_id)?;
        if dir.is_dir() && self.content.has(&l.digest) {
            let (size, inodes) = read_usage(&dir);
            l.unpacked_size = size;
            l.inodes = inodes;
            charge(budget, &l)?;
            progress.send(PullEvent::Downloaded {
                layer: l.digest.clone(),
            });
            progress.send(PullEvent::Unpacked {
                layer: l.digest.clone(),
            });
            return Ok(l);
        }
        let transferred = tokio::select! {
            t = self.fetch_blob(client, r, auth, &l.digest, Some(l.size), progress) => t?,
            _ = stop.wait_for(|s| *s) => return Err(stopped()),
        };
        if transferred {
            tracing::info!(layer = %l.digest, bytes = l.size, ms = t.elapsed().as_millis() as u64, "layer downloaded");
        }
        progress.send(PullEvent::Downloaded {
            layer: l.digest.clone(),
        });
        let l = self.unpack_stored(l, budget).await?;
        progress.send(PullEvent::Unpacked {
            layer: l.digest.clone(),
        });
        Ok(l)
    }

    /// A fresh budget for the layers of one image.
    pub(crate) fn image_budget(&self) -> Arc<ImageBudget> {
        Arc::new(ImageBudget::new(self.image_limits))
    }

    /// Unpacks a layer whose blob is in the content store, once per chain
    /// ID (a concurrent pull or import of the same chain waits for it),
    /// charging `budget`.
    ///
    /// Cancel-safe: the unpack, from staging dir to renamed layer, runs on
    /// the blocking pool holding the chain's lock, so a pull dropped
    /// mid-unpack (a cancelled admin pull, a sibling layer's failure)
    /// leaves either nothing or a whole layer, which is noted unrecorded
    /// for the next sweep.
    pub(crate) async fn unpack_stored(
        &self,
        mut l: LayerRecord,
        budget: &Arc<ImageBudget>,
    ) -> Result<LayerRecord, ImageError> {
        let t = Instant::now();
        let dir = self.layer_dir(&l.chain_id)?;
        let held = self.lock(&l.chain_id).lock_owned().await;
        if dir.is_dir() {
            let (size, inodes) = read_usage(&dir);
            l.unpacked_size = size;
            l.inodes = inodes;
            charge(budget, &l)?;
            return Ok(l);
        }
        let compression =
            Compression::from_media_type(&l.media_type).map_err(|source| ImageError::Unpack {
                digest: l.digest.clone(),
                source,
            })?;
        let blob = self.content.path(&l.digest)?;
        let tmp = self.layers_dir.join(format!(
            ".tmp-{}-{}",
            hex_of(&l.chain_id)?,
            std::process::id()
        ));
        let (limits, budget, content) = (self.limits, budget.clone(), self.content.clone());
        let job =
            {
                let l = l.clone();
                move || {
                    let _held = held;
                    let _ = std::fs::remove_dir_all(&tmp);
                    let unpacked = unpack_layer(&blob, compression, &tmp, limits, &budget)
                        .map_err(|source| ImageError::Unpack {
                            digest: l.digest.clone(),
                            source,
                        })?;
                    if unpacked.diff_id != l.diff_id {
                        let _ = std::fs::remove_dir_all(&tmp);
                        return Err(ImageError::DiffIdMismatch {
                            digest: l.digest.clone(),
                            expected: l.diff_id.clone(),
                            got: unpacked.diff_id,
                        });
                    }
                    std::fs::rename(&tmp, &dir).map_err(|e| {
                        let _ = std::fs::remove_dir_all(&tmp);
                        ImageError::io("rename unpacked layer to", &dir, e)
                    })?;
                    write_usage(&dir, unpacked.size, unpacked.inodes);
                    content.unrecorded().chain(&l.chain_id);
                    Ok(unpacked)
                }
            };
        let unpacked =
            tokio::task::spawn_blocking(job)
                .await
                .map_err(|e| ImageError::Transfer {
                    digest: l.digest.clone(),
                    message: format!("unpack task: {e}"),
                })??;
        l.unpacked_size = unpacked.size;
        l.inodes = unpacked.inodes;
        tracing::info!(layer = %l.digest, chain = %l.chain_id, ms = t.elapsed().as_millis() as u64, "layer unpacked");
        Ok(l)
    }
}

/// The layers of one pull: how many may transfer at once, their shared
/// budget, and the signal that stops them all, sent when one fails or the
/// pull is dropped.
struct Scope {
    slots: tokio::sync::Semaphore,
    budget: Arc<ImageBudget>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Scope {
    fn new(budget: Arc<ImageBudget>) -> Scope {
        Scope {
            slots: tokio::sync::Semaphore::new(PARALLEL_LAYERS),
            budget,
            stop: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Stops the downloads waiting or under way, and the unpacks at their
    /// next chunk.
    fn stop(&self) {
        self.budget.cancel();
        self.stop.send_replace(true);
    }
}

impl Drop for Scope {
    /// A pull dropped mid-way (a cancelled admin pull) stops the unpacks
    /// it leaves running on the blocking pool.
    fn drop(&mut self) {
        self.budget.cancel();
    }
}

/// Charges a layer already unpacked (by an earlier pull, or a concurrent
/// one) to the image budget of this pull.
fn charge(budget: &ImageBudget, l: &LayerRecord) -> Result<(), ImageError> {
    budget
        .charge(l.unpacked_size, l.inodes)
        .map_err(|source| ImageError::Unpack {
            digest: l.digest.clone(),
            source,
        })
}

/// The layers a manifest lists, with the diff and chain IDs its config
/// gives them (usage still zero: unpacking fills it in).
pub(crate) fn plan_layers(
    name: &str,
    manifest: &Value,
    config: &Value,
) -> Result<Vec<LayerRecord>, ImageError> {
    let bad = |m: &str| ImageError::BadManifest {
        reference: name.to_string(),
        message: m.to_string(),
    };
    let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
        .as_array()
        .ok_or_else(|| bad("config has no rootfs.diff_ids"))?
        .iter()
        .map(|d| {
            d.as_str()
                .map(str::to_string)
                .ok_or_else(|| bad("diff_id is not a string"))
        })
        .collect::<Result<_, _>>()?;
    let layers = manifest["layers"]
        .as_array()
        .ok_or_else(|| bad("manifest has no layers"))?;
    if layers.len() != diff_ids.len() {
        return Err(bad(&format!(
            "{} layers but {} diff_ids",
            layers.len(),
            diff_ids.len()
        )));
    }
    let chains = chain_ids(&diff_ids);
    let mut plan = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        plan.push(LayerRecord {
            digest: l["digest"]
                .as_str()
                .ok_or_else(|| bad("layer without digest"))?
                .to_string(),
            media_type: l["mediaType"].as_str().unwrap_or(OCI_MANIFEST).to_string(),
            size: l["size"]
                .as_u64()
                .ok_or_else(|| bad("layer without size"))?,
            diff_id: diff_ids[i].clone(),
            chain_id: chains[i].clone(),
            unpacked_size: 0,
            inodes: 0,
        });
    }
    Ok(plan)
}

/// The usage of an unpacked layer is kept beside it (`<dir>.usage`), so a
/// later pull sharing the layer reports it without walking the tree.
fn usage_path(dir: &Path) -> PathBuf {
    let mut p = dir.as_os_str().to_owned();
    p.push(".usage");
    PathBuf::from(p)
}

/// Records a layer's usage beside it (best effort: a missing file reads
/// as zero, it never fails a pull).
fn write_usage(dir: &Path, size: u64, inodes: u64) {
    let _ = std::fs::write(usage_path(dir), format!("{size} {inodes}\n"));
}

fn read_usage(dir: &Path) -> (u64, u64) {
    std::fs::read_to_string(usage_path(dir))
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|x| x.parse::<u64>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((0, 0))
}

/// The digest of the manifest for `os`/`arch` in an index.
pub fn select_platform(index: &Value, os: &str, arch: &str) -> Option<String> {
    let manifests = index["manifests"].as_array()?;
    let matching: Vec<&Value> = manifests
        .iter()
        .filter(|m| m["platform"]["os"] == os && m["platform"]["architecture"] == arch)
        .collect();
    // arm64 prefers v8 (or no variant); otherwise the first match.
    let best = matching
        .iter()
        .find(|m| arch != "arm64" || matches!(m["platform"]["variant"].as_str(), None | Some("v8")))
        .or(matching.first())?;
    best["digest"].as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn credentials_debug_hides_password_and_token() {
        let c = Credentials {
            username: "alice".into(),
            password: "hunter2".into(),
            registry_token: "tok-123".into(),
            server_address: String::new(),
        };
        let shown = format!("{c:?}");
        assert!(shown.contains("alice"), "{shown}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("tok-123"),
            "{shown}"
        );
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    /// Credentials go only to the host they were issued for, and over
    /// plain HTTP only where the operator said so.
    #[test]
    fn credentials_go_only_to_their_own_registry() {
        let own = registry_host("registry.example.com");
        // The registry itself, over HTTPS.
        assert!(credentials_go_to(
            "registry.example.com",
            &own,
            false,
            false
        ));
        // A mirror on another host gets none, over HTTPS or HTTP.
        assert!(!credentials_go_to("mirror.example.net", &own, false, false));
        assert!(!credentials_go_to("127.0.0.1:5000", &own, true, true));
        // Plain HTTP only for a host listed insecure, not merely for a
        // host an http:// mirror URL names.
        assert!(!credentials_go_to(
            "registry.example.com",
            &own,
            true,
            false
        ));
        assert!(credentials_go_to("registry.example.com", &own, true, true));
        // server_address names the host, in any of the forms kubelet and
        // docker's config use.
        for addr in [
            "https://index.docker.io/v1/",
            "index.docker.io",
            "registry-1.docker.io",
            "docker.io",
        ] {
            assert!(
                credentials_go_to("docker.io", &registry_host(addr), false, false),
                "{addr}"
            );
        }
        // Credentials for another registry do not go to the image's.
        assert!(!credentials_go_to(
            "registry.example.com",
            &registry_host("https://other.example.org"),
            false,
            false
        ));
    }

    #[test]
    fn the_host_platform_is_chosen_from_an_index() {
        let idx = json!({"manifests": [
            {"digest": "sha256:arm", "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"digest": "sha256:amd", "platform": {"os": "linux", "architecture": "amd64"}},
            {"digest": "sha256:win", "platform": {"os": "windows", "architecture": "amd64"}}
        ]});
        assert_eq!(
            select_platform(&idx, "linux", "amd64").as_deref(),
            Some("sha256:amd")
        );
        assert_eq!(
            select_platform(&idx, "linux", "arm64").as_deref(),
            Some("sha256:arm")
        );
        assert_eq!(select_platform(&idx, "linux", "s390x"), None);
    }

    #[test]
    fn mirrors_are_tried_before_the_registry() {
        let d = tempfile::tempdir().expect("tmp");
        let content = Arc::new(ContentStore::open(d.path()).expect("content"));
        let mut reg = crate::config::Registry::default();
        reg.mirrors
            .insert("docker.io".into(), vec!["http://127.0.0.1:5000".into()]);
        let p = Puller::new(
            &reg,
            Limits::NONE,
            Limits::NONE,
            content,
            &d.path().join("layers"),
        )
        .expect("puller");
        let r = super::super::reference::parse("busybox").expect("ref");
        let eps: Vec<String> = p.endpoints(&r).iter().map(|e| e.whole()).collect();
        assert_eq!(
            eps,
            vec![
                "127.0.0.1:5000/library/busybox:latest",
                "docker.io/library/busybox:latest"
            ]
        );
    }
}
