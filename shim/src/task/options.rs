//! Which OCI runtime drives the container: the runc-style options that
//! containerd (or the daemon) attaches to CreateTask, persisted in the
//! bundle for `carapace-shim delete`.

use std::path::{Path, PathBuf};

use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::oci::Options;

use crate::error::{Error, Result};
use crate::runtime_cli::{RuntimeCli, DEFAULT_BINARY};

/// File in the bundle recording which runtime the container was made with,
/// so `carapace-shim delete` can clean up after a dead shim.
pub const RUNTIME_FILE: &str = "shim-runtime.json";

/// The runtime a container is driven with, as persisted in the bundle.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct RuntimeChoice {
    /// Binary name or path.
    pub binary: String,
    /// `--root`, if set.
    pub root: Option<PathBuf>,
    /// `--systemd-cgroup`.
    pub systemd_cgroup: bool,
}

impl RuntimeChoice {
    /// From the runc-style options containerd (or our daemon) attaches to
    /// CreateTask; defaults to carapace-runtime with a per-namespace root.
    pub fn from_options(opts: Option<&Options>, namespace: &str) -> RuntimeChoice {
        let binary = opts
            .map(|o| o.binary_name.clone())
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| DEFAULT_BINARY.to_string());
        let root = opts
            .map(|o| o.root.clone())
            .filter(|r| !r.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                let name = Path::new(&binary)
                    .file_name()?
                    .to_string_lossy()
                    .into_owned();
                let ns = if namespace.is_empty() {
                    "default"
                } else {
                    namespace
                };
                Some(PathBuf::from("/run").join(name).join(ns))
            });
        RuntimeChoice {
            binary,
            root,
            systemd_cgroup: opts.is_some_and(|o| o.systemd_cgroup),
        }
    }

    /// The CLI driver for this choice, logging into `bundle`.
    pub fn cli(&self, bundle: &Path) -> RuntimeCli {
        RuntimeCli::new(
            &self.binary,
            self.root.clone(),
            self.systemd_cgroup,
            bundle.join("log.json"),
        )
    }

    /// Reads the choice saved at create time.
    pub fn load(bundle: &Path) -> Option<RuntimeChoice> {
        let data = std::fs::read(bundle.join(RUNTIME_FILE)).ok()?;
        serde_json::from_slice(&data).ok()
    }

    pub(super) fn save(&self, bundle: &Path) -> Result<()> {
        let p = bundle.join(RUNTIME_FILE);
        let data = serde_json::to_vec(self)
            .map_err(|e| Error::InvalidArgument(format!("encode runtime choice: {e}")))?;
        std::fs::write(&p, data).map_err(|e| Error::io(format!("write {}", p.display()), e))
    }
}

pub(super) fn parse_options(
    any: Option<&containerd_shim_protos::protobuf::well_known_types::any::Any>,
) -> Result<Option<Options>> {
    let Some(any) = any else { return Ok(None) };
    if any.type_url.is_empty() && any.value.is_empty() {
        return Ok(None);
    }
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    if name != "containerd.runc.v1.Options" && name != "runtimeoptions.v1.Options" {
        return Err(Error::InvalidArgument(format!(
            "unsupported runtime options type {:?}: expected containerd.runc.v1.Options",
            any.type_url
        )));
    }
    Options::parse_from_bytes(&any.value)
        .map(Some)
        .map_err(|e| Error::InvalidArgument(format!("decode runtime options: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_defaults_to_carapace_runtime_under_a_namespace_root() {
        let c = RuntimeChoice::from_options(None, "k8s.io");
        assert_eq!(c.binary, DEFAULT_BINARY);
        assert_eq!(c.root, Some(PathBuf::from("/run/carapace-runtime/k8s.io")));
        assert!(!c.systemd_cgroup);
        let o = Options {
            binary_name: "/usr/sbin/runc".into(),
            systemd_cgroup: true,
            ..Default::default()
        };
        let c = RuntimeChoice::from_options(Some(&o), "");
        assert_eq!(c.root, Some(PathBuf::from("/run/runc/default")));
        assert!(c.systemd_cgroup);
    }

    #[test]
    fn foreign_runtime_options_are_refused() {
        let mut any = containerd_shim_protos::protobuf::well_known_types::any::Any::new();
        any.type_url = "type.googleapis.com/some.Other".into();
        any.value = vec![1, 2, 3];
        assert!(matches!(
            parse_options(Some(&any)),
            Err(Error::InvalidArgument(_))
        ));
        let o = Options {
            binary_name: "crun".into(),
            ..Default::default()
        };
        any.type_url = "containerd.runc.v1.Options".into();
        any.value = o.write_to_bytes().expect("encode");
        let back = parse_options(Some(&any)).expect("parse").expect("some");
        assert_eq!(back.binary_name, "crun");
    }
}
