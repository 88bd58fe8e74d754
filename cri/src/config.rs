//! The daemon's configuration (`/etc/carapace/config.toml`). Every key is
//! optional and has the default `carapace config default` prints, so an
//! empty file (or none) gives a working daemon.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where the config file is read from when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/carapace/config.toml";

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// CRI unix socket kubelet and crictl connect to.
    pub socket: PathBuf,
    /// Persistent data: metadata store, images, container layers.
    pub root: PathBuf,
    /// Volatile state: shim sockets, pinned namespaces, bundles.
    pub state: PathBuf,
    /// cgroup driver: "cgroupfs" or "systemd".
    pub cgroup_driver: String,
    /// Runtime handler used when a pod names none.
    pub default_runtime_handler: String,
    /// Runtime handlers by name (the CRI `runtime_handler` of a pod).
    pub runtime_handlers: BTreeMap<String, RuntimeHandler>,
    /// Pod networking.
    pub cni: Cni,
    /// Image registries.
    pub registry: Registry,
    /// Image store limits.
    pub images: ImageStore,
    /// Daemon logging.
    pub log: Log,
    /// Exec/attach/port-forward streaming server.
    pub streaming: Streaming,
    /// Prometheus metrics endpoint.
    pub metrics: Metrics,
    /// CDI (Container Device Interface) devices.
    pub cdi: Cdi,
}

/// Where CDI spec files are read from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Cdi {
    /// Hand out CDI devices that containers ask for.
    pub enabled: bool,
    /// Spec dirs, lowest precedence first.
    pub spec_dirs: Vec<PathBuf>,
}

impl Default for Cdi {
    fn default() -> Self {
        Cdi {
            enabled: true,
            spec_dirs: vec![PathBuf::from("/etc/cdi"), PathBuf::from("/var/run/cdi")],
        }
    }
}

/// One OCI runtime the daemon can run containers with: a runc-compatible
/// binary under `carapace-shim` (the default), or a containerd shim v2
/// (`runtime_type`), the way Kata Containers and gVisor plug in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeHandler {
    /// runc-compatible binary (name on PATH or absolute path). With a
    /// `runtime_type` of the runc kind, the binary that shim drives
    /// (its `BinaryName` option; empty: the shim's own default, runc).
    #[serde(default)]
    pub path: PathBuf,
    /// Its `--root` state directory (the runc shim's `Root` option).
    #[serde(default)]
    pub root: PathBuf,
    /// Empty: `carapace-shim` runs `path`. Otherwise a containerd shim v2
    /// runs the pods of this handler: `io.containerd.runc.v2` names the
    /// binary `containerd-shim-runc-v2` (looked up as `path` is), as
    /// containerd resolves its `runtime_type`; an absolute path names the
    /// shim binary itself.
    #[serde(default)]
    pub runtime_type: String,
}

impl RuntimeHandler {
    /// The containerd shim v2 binary this handler runs, if it is one:
    /// `io.containerd.<name>.<version>` → `containerd-shim-<name>-<version>`,
    /// or an absolute path as given. `Err` for a type of neither form.
    pub fn shim_v2_binary(&self) -> Result<Option<PathBuf>, String> {
        let t = self.runtime_type.as_str();
        if t.is_empty() {
            return Ok(None);
        }
        if t.starts_with('/') {
            return Ok(Some(PathBuf::from(t)));
        }
        let parts: Vec<&str> = t.split('.').collect();
        let word = |w: &str| {
            !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        match parts.as_slice() {
            [.., name, version] if parts.len() >= 3 && word(name) && word(version) => Ok(Some(
                PathBuf::from(format!("containerd-shim-{name}-{version}")),
            )),
            _ => Err(format!(
                "runtime_type {t:?}: want io.containerd.<name>.<version> (e.g. \
                 io.containerd.runc.v2) or an absolute path to a shim v2 binary"
            )),
        }
    }

    /// Whether the shim is containerd's runc shim (or one taking its
    /// options, `containerd.runc.v1.Options`): then `path`, `root` and the
    /// cgroup driver are passed to it as options. Other shims (Kata,
    /// gVisor) read their own configuration files.
    pub fn takes_runc_options(&self) -> bool {
        self.runtime_type.is_empty() || self.runtime_type.starts_with("io.containerd.runc.")
    }
}

/// CNI settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Cni {
    /// Directory of network configurations (first valid .conf/.conflist).
    pub conf_dir: PathBuf,
    /// Directories searched for plugin binaries.
    pub bin_dirs: Vec<PathBuf>,
}

/// Registry settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Registry {
    /// Mirrors per registry host, tried in order before the host itself
    /// (e.g. "docker.io" = ["http://127.0.0.1:5000"]).
    pub mirrors: BTreeMap<String, Vec<String>>,
    /// Hosts spoken to over plain HTTP.
    pub insecure: Vec<String>,
    /// Seconds a registry may take to accept a connection (containerd's
    /// dial timeout is 30 s).
    pub connect_timeout_secs: u64,
    /// Seconds a registry may stay silent in the middle of an answer
    /// before the pull fails and frees its layer locks: a registry that
    /// stops answering must not pin a pull for ever. 0: no limit.
    pub read_timeout_secs: u64,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            mirrors: BTreeMap::new(),
            insecure: Vec::new(),
            connect_timeout_secs: 30,
            read_timeout_secs: 60,
        }
    }
}

/// Image store settings: how much one layer may unpack to, so that a
/// compression bomb from any registry cannot fill the image filesystem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageStore {
    /// Bytes of file content one layer may unpack to (0: no limit).
    pub max_layer_bytes: u64,
    /// Entries one layer may unpack to (0: no limit).
    pub max_layer_inodes: u64,
    /// Bytes of file content all the layers of one image may unpack to
    /// together (0: no limit).
    pub max_image_bytes: u64,
    /// Entries all the layers of one image may unpack to together (0: no
    /// limit).
    pub max_image_inodes: u64,
}

impl Default for ImageStore {
    fn default() -> Self {
        // Far above real layers (the largest common ones, CUDA and ML
        // framework layers, are a few GiB and a few 100k files).
        Self {
            max_layer_bytes: 64 << 30,
            max_layer_inodes: 4_000_000,
            max_image_bytes: 128 << 30,
            max_image_inodes: 8_000_000,
        }
    }
}

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Log {
    /// error, warn, info, debug or trace (or a tracing filter directive).
    pub level: String,
    /// "text" or "json".
    pub format: String,
}

/// Streaming server settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Streaming {
    /// Listen address; port 0 picks a free port.
    pub address: String,
    /// PEM certificate (chain) to serve the streaming URLs over TLS
    /// (https://); empty serves plain HTTP. Set with `tls_key_file`.
    pub tls_cert_file: PathBuf,
    /// PEM private key of `tls_cert_file`; empty with it.
    pub tls_key_file: PathBuf,
    /// How long an Exec/Attach/PortForward URL stays valid, in seconds
    /// (kubelet's streaming server: one minute).
    pub token_ttl_seconds: u64,
    /// How long the first stream of a forwarded connection waits for its
    /// partner (error + data) before the pair is given up with an error,
    /// in seconds (kubelet's stream creation timeout: 30).
    pub stream_creation_timeout_seconds: u64,
}

impl Streaming {
    /// The certificate and key files when TLS is on; None for plain
    /// HTTP. [`Config::validate`] has checked they come together.
    pub fn tls_files(&self) -> Option<(&Path, &Path)> {
        let (cert, key) = (&self.tls_cert_file, &self.tls_key_file);
        (!cert.as_os_str().is_empty() && !key.as_os_str().is_empty())
            .then_some((cert.as_path(), key.as_path()))
    }

    /// Checks what the streaming section's values must be.
    fn validate(&self) -> Result<(), String> {
        let cert = !self.tls_cert_file.as_os_str().is_empty();
        let key = !self.tls_key_file.as_os_str().is_empty();
        if cert != key {
            return Err(format!(
                "streaming.tls_cert_file {:?} and streaming.tls_key_file {:?}: set both (TLS) or neither (plain HTTP)",
                self.tls_cert_file, self.tls_key_file
            ));
        }
        if self.token_ttl_seconds == 0 {
            return Err(
                "streaming.token_ttl_seconds 0: a URL must stay valid at least one second".into(),
            );
        }
        if self.stream_creation_timeout_seconds == 0 {
            return Err(
                "streaming.stream_creation_timeout_seconds 0: a stream pair needs at least one second to form".into(),
            );
        }
        Ok(())
    }
}

/// Metrics settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Metrics {
    /// Listen address of /metrics; empty turns it off.
    pub address: String,
}

impl Default for Config {
    fn default() -> Self {
        let mut handlers = BTreeMap::new();
        handlers.insert(
            "carapace".to_string(),
            RuntimeHandler {
                path: PathBuf::from("carapace-runtime"),
                root: PathBuf::from("/run/carapace-runtime"),
                runtime_type: String::new(),
            },
        );
        Self {
            socket: PathBuf::from("/run/carapace/carapace.sock"),
            root: PathBuf::from("/var/lib/carapace"),
            state: PathBuf::from("/run/carapace"),
            cgroup_driver: "cgroupfs".into(),
            default_runtime_handler: "carapace".into(),
            runtime_handlers: handlers,
            cni: Cni::default(),
            registry: Registry::default(),
            images: ImageStore::default(),
            log: Log::default(),
            streaming: Streaming::default(),
            metrics: Metrics::default(),
            cdi: Cdi::default(),
        }
    }
}

impl Default for Cni {
    fn default() -> Self {
        Self {
            conf_dir: PathBuf::from("/etc/cni/net.d"),
            bin_dirs: vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")],
        }
    }
}

impl Default for Log {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

impl Default for Streaming {
    fn default() -> Self {
        Self {
            address: "127.0.0.1:0".into(),
            tls_cert_file: PathBuf::new(),
            tls_key_file: PathBuf::new(),
            token_ttl_seconds: 60,
            stream_creation_timeout_seconds: 30,
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but could not be read.
    #[error("read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML of our schema.
    #[error("parse config {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column.
        source: toml::de::Error,
    },
    /// A value is out of its allowed set.
    #[error("config {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// Load `path`; a missing file at the default path means all defaults,
    /// a missing file given explicitly is an error.
    pub fn load(path: &Path, explicit: bool) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => String::new(),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.into(),
                    source,
                })
            }
        };
        let c: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source,
        })?;
        c.validate().map_err(|message| ConfigError::Invalid {
            path: path.into(),
            message,
        })?;
        Ok(c)
    }

    /// Check values that have a fixed set.
    pub fn validate(&self) -> Result<(), String> {
        if !["cgroupfs", "systemd"].contains(&self.cgroup_driver.as_str()) {
            return Err(format!(
                "cgroup_driver {:?}: want \"cgroupfs\" or \"systemd\"",
                self.cgroup_driver
            ));
        }
        if !["text", "json"].contains(&self.log.format.as_str()) {
            return Err(format!(
                "log.format {:?}: want \"text\" or \"json\"",
                self.log.format
            ));
        }
        if !self
            .runtime_handlers
            .contains_key(&self.default_runtime_handler)
        {
            return Err(format!(
                "default_runtime_handler {:?} is not in [runtime_handlers]",
                self.default_runtime_handler
            ));
        }
        for (name, h) in &self.runtime_handlers {
            let v2 = h
                .shim_v2_binary()
                .map_err(|e| format!("runtime_handlers.{name}: {e}"))?;
            if v2.is_none() && h.path.as_os_str().is_empty() {
                return Err(format!("runtime_handlers.{name}: path is required"));
            }
            if h.takes_runc_options() && h.root.as_os_str().is_empty() {
                // The runc shim's default root is containerd's own
                // (/run/containerd/runc/k8s.io): never share it.
                return Err(format!("runtime_handlers.{name}: root is required"));
            }
        }
        self.streaming.validate()?;
        Ok(())
    }
}

/// The commented default configuration `carapace config default` prints.
pub const DEFAULT_TOML: &str = r#"# Carapace daemon configuration. Every key is optional; these are the defaults.

# CRI socket kubelet and crictl connect to (created with mode 0660).
socket = "/run/carapace/carapace.sock"
# Persistent data: metadata store, images, container layers.
root = "/var/lib/carapace"
# Volatile state: shim sockets, pinned namespaces, bundles.
state = "/run/carapace"
# "cgroupfs" or "systemd" (must match kubelet's --cgroup-driver). With
# "systemd" (which needs systemd as PID 1 and cgroup v2) pods are transient
# slices and containers transient scopes, made over systemd's private D-Bus
# socket.
cgroup_driver = "cgroupfs"
# Runtime handler for pods that name none.
default_runtime_handler = "carapace"

# OCI runtimes by handler name (a RuntimeClass's handler). Any
# runc-compatible binary works, e.g.:
#   [runtime_handlers.runc]
#   path = "runc"
#   root = "/run/carapace-runc"
# A containerd shim v2 runs a handler's pods when runtime_type names it
# (containerd-shim-<name>-<version> on PATH, or an absolute path), e.g.
# containerd's runc shim, with path/root as its BinaryName/Root options:
#   [runtime_handlers.runc-v2]
#   runtime_type = "io.containerd.runc.v2"
#   path = "runc"
#   root = "/run/carapace-runc-v2"
# or Kata Containers (reads /etc/kata-containers/configuration.toml):
#   [runtime_handlers.kata]
#   runtime_type = "io.containerd.kata.v2"
[runtime_handlers.carapace]
path = "carapace-runtime"
root = "/run/carapace-runtime"

[cni]
# First valid .conf/.conflist here configures pod networks.
conf_dir = "/etc/cni/net.d"
# Where plugin binaries are looked up (Debian installs them in /usr/lib/cni).
bin_dirs = ["/opt/cni/bin", "/usr/lib/cni"]

[registry]
# Hosts spoken to over plain HTTP.
insecure = []
# Seconds a registry may take to accept a connection, and may stay silent
# in the middle of an answer (0: no limit) before a pull fails.
connect_timeout_secs = 30
read_timeout_secs = 60

# Mirrors per registry host, tried in order before the host itself:
#   "docker.io" = ["http://127.0.0.1:5000"]
[registry.mirrors]

[images]
# The most one layer may unpack to, in bytes of file content and in
# entries (0: no limit); a layer past either fails its pull.
max_layer_bytes = 68719476736
max_layer_inodes = 4000000
# The most all the layers of one image may unpack to together.
max_image_bytes = 137438953472
max_image_inodes = 8000000

[log]
# error, warn, info, debug, trace, or a tracing filter directive.
level = "info"
# "text" or "json".
format = "text"

[streaming]
# Exec/attach/port-forward server; port 0 picks a free port.
address = "127.0.0.1:0"
# Serve it over TLS (https:// URLs) with this PEM certificate chain and
# PEM private key (PKCS#8, PKCS#1 or SEC1): both or neither. Empty: plain
# HTTP, fine on 127.0.0.1 where only the node can connect.
tls_cert_file = ""
tls_key_file = ""
# How long an Exec/Attach/PortForward URL stays valid (used once).
token_ttl_seconds = 60
# How long one stream of a port-forward connection waits for its partner
# (kubectl opens an error and a data stream per connection) before the
# connection is refused with "timed out waiting for streams".
stream_creation_timeout_seconds = 30

[metrics]
# Prometheus /metrics listen address; empty turns it off.
address = ""

[cdi]
# Give containers the CDI devices they ask for (CRI CDI_devices and
# cdi.k8s.io/* annotations), from the spec files (JSON or YAML) in
# spec_dirs; a later dir takes precedence over an earlier one.
enabled = true
spec_dirs = ["/etc/cdi", "/var/run/cdi"]
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_default_is_exactly_the_default() {
        let parsed: Config = toml::from_str(DEFAULT_TOML).expect("default parses");
        assert_eq!(parsed, Config::default());
        assert!(parsed.validate().is_ok());
    }

    #[test]
    fn empty_file_means_defaults_and_unknown_keys_are_refused() {
        let c: Config = toml::from_str("").expect("empty");
        assert_eq!(c, Config::default());
        assert!(toml::from_str::<Config>("sokcet = \"/x\"").is_err());
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("c.toml");
        std::fs::write(&p, "cgroup_driver = \"nope\"").expect("write");
        let e = Config::load(&p, true).expect_err("invalid");
        assert!(e.to_string().contains("cgroup_driver"), "{e}");
        assert!(Config::load(&d.path().join("missing.toml"), true).is_err());
        assert_eq!(
            Config::load(&d.path().join("missing.toml"), false).expect("defaults"),
            Config::default()
        );
    }

    #[test]
    fn streaming_tls_files_come_in_pairs() {
        let half: Config =
            toml::from_str("[streaming]\ntls_cert_file = \"/c.pem\"\n").expect("toml");
        let e = half.validate().expect_err("a certificate without a key");
        assert!(e.contains("tls_key_file"), "{e}");
        let half: Config =
            toml::from_str("[streaming]\ntls_key_file = \"/k.pem\"\n").expect("toml");
        assert!(half.validate().is_err());
        assert_eq!(half.streaming.tls_files(), None);
        let both: Config =
            toml::from_str("[streaming]\ntls_cert_file = \"/c.pem\"\ntls_key_file = \"/k.pem\"\n")
                .expect("toml");
        assert!(both.validate().is_ok());
        assert_eq!(
            both.streaming.tls_files(),
            Some((Path::new("/c.pem"), Path::new("/k.pem")))
        );
        assert_eq!(Config::default().streaming.tls_files(), None);
    }

    #[test]
    fn a_token_ttl_of_zero_is_refused() {
        let c: Config = toml::from_str("[streaming]\ntoken_ttl_seconds = 0\n").expect("toml");
        let e = c.validate().expect_err("zero TTL");
        assert!(e.contains("token_ttl_seconds"), "{e}");
        let c: Config = toml::from_str("[streaming]\ntoken_ttl_seconds = 1\n").expect("toml");
        assert!(c.validate().is_ok());
    }

    #[test]
    fn a_stream_creation_timeout_of_zero_is_refused() {
        let c: Config =
            toml::from_str("[streaming]\nstream_creation_timeout_seconds = 0\n").expect("toml");
        let e = c.validate().expect_err("zero timeout");
        assert!(e.contains("stream_creation_timeout_seconds"), "{e}");
    }

    #[test]
    fn a_shim_v2_handler_names_its_binary_as_containerd_does() {
        let c: Config = toml::from_str(
            "default_runtime_handler = \"runc-v2\"\n\
             [runtime_handlers.runc-v2]\nruntime_type = \"io.containerd.runc.v2\"\n\
             root = \"/run/x\"\n\
             [runtime_handlers.kata]\nruntime_type = \"io.containerd.kata.v2\"\n\
             [runtime_handlers.own]\nruntime_type = \"/opt/bin/containerd-shim-x-v2\"\n",
        )
        .expect("toml");
        c.validate().expect("valid");
        let bin = |n: &str| c.runtime_handlers[n].shim_v2_binary().expect("type");
        assert_eq!(
            bin("runc-v2"),
            Some(PathBuf::from("containerd-shim-runc-v2"))
        );
        assert_eq!(bin("kata"), Some(PathBuf::from("containerd-shim-kata-v2")));
        assert_eq!(
            bin("own"),
            Some(PathBuf::from("/opt/bin/containerd-shim-x-v2"))
        );
        assert_eq!(
            Config::default().runtime_handlers["carapace"].shim_v2_binary(),
            Ok(None)
        );
        assert!(c.runtime_handlers["runc-v2"].takes_runc_options());
        assert!(!c.runtime_handlers["kata"].takes_runc_options());
        // Bad types, a runc shim sharing containerd's root, a handler
        // with no runtime at all: refused at load.
        for (bad, why) in [
            ("runtime_type = \"runc\"\nroot = \"/r\"", "runtime_type"),
            (
                "runtime_type = \"io.containerd.r/unc.v2\"\nroot = \"/r\"",
                "runtime_type",
            ),
            (
                "runtime_type = \"io.containerd.runc.v2\"",
                "root is required",
            ),
            ("root = \"/r\"", "path is required"),
        ] {
            let c: Config = toml::from_str(&format!(
                "default_runtime_handler = \"x\"\n[runtime_handlers.x]\n{bad}\n"
            ))
            .expect("toml");
            let e = c.validate().expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
