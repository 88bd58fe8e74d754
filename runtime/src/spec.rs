//! Loading and checking a bundle's config.json, and the default spec that
//! `carapace-runtime spec` writes (runc's defaults, as oci-spec provides).

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use crate::error::{Error, Result};

/// Read `bundle/config.json` and check what the runtime relies on.
pub fn load(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    let invalid = |reason: String| Error::InvalidConfig {
        path: path.clone(),
        reason,
    };
    let data = std::fs::read(&path).map_err(|e| invalid(e.to_string()))?;
    let spec: Spec = serde_json::from_slice(&data).map_err(|e| invalid(e.to_string()))?;
    validate(&spec).map_err(invalid)?;
    Ok(spec)
}

/// The checks that must pass before anything is created.
pub fn validate(spec: &Spec) -> std::result::Result<(), String> {
    let version = spec.version();
    if !version.starts_with("1.") {
        return Err(format!("unsupported ociVersion {version:?}: need 1.x"));
    }
    let process = spec.process().as_ref().ok_or("process is missing")?;
    match process.args() {
        Some(a) if !a.is_empty() && !a[0].is_empty() => {}
        _ => return Err("process.args must name a program".into()),
    }
    if !process.cwd().is_absolute() {
        return Err(format!(
            "process.cwd {} is not absolute",
            process.cwd().display()
        ));
    }
    spec.root().as_ref().ok_or("root is missing")?;
    if spec.linux().is_none() {
        return Err("linux section is missing".into());
    }
    for kv in process.env().iter().flatten() {
        if !kv.contains('=') {
            return Err(format!("process.env entry {kv:?} is not KEY=VALUE"));
        }
    }
    Ok(())
}

/// The absolute, canonical rootfs path of a bundle.
pub fn rootfs(bundle: &Path, spec: &Spec) -> Result<PathBuf> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| Error::InvalidArgument("root is missing".into()))?;
    let p = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    let c = p.canonicalize().map_err(|e| Error::InvalidConfig {
        path: bundle.join("config.json"),
        reason: format!("rootfs {}: {e}", p.display()),
    })?;
    if !c.is_dir() {
        return Err(Error::InvalidConfig {
            path: bundle.join("config.json"),
            reason: format!("rootfs {} is not a directory", c.display()),
        });
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_spec_is_valid() {
        assert_eq!(validate(&Spec::default()), Ok(()));
    }

    #[test]
    fn broken_configs_are_explained() {
        let d = tempfile::tempdir().expect("tmp");
        let e = load(d.path()).expect_err("missing");
        assert!(e.to_string().contains("config.json"), "{e}");
        std::fs::write(d.path().join("config.json"), "{not json").expect("write");
        assert!(load(d.path()).is_err());
        let mut s = Spec::default();
        s.set_version("0.9".into());
        assert!(validate(&s).unwrap_err().contains("ociVersion"));
        let mut s = Spec::default();
        if let Some(p) = s.process_mut() {
            p.set_args(Some(vec![]));
        }
        assert!(validate(&s).is_err());
    }
}
