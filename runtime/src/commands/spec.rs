//! `spec`: write a default config.json (runc's defaults) into the bundle.

use std::io::Write;
use std::path::Path;

use oci_spec::runtime::Spec;

use crate::error::{Context, Error, Result};

/// Run `spec`.
pub fn run(bundle: &Path, rootless: bool) -> Result<i32> {
    let path = bundle.join("config.json");
    if path.exists() {
        return Err(Error::AlreadyExists(format!(
            "{} (File exists)",
            path.display()
        )));
    }
    let spec = if rootless {
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        Spec::rootless(uid, gid)
    } else {
        Spec::default()
    };
    let data = serde_json::to_string_pretty(&spec).map_err(|e| Error::Init(e.to_string()))?;
    let mut f = std::fs::File::create(&path).ctx(|| format!("create {}", path.display()))?;
    f.write_all(data.as_bytes())
        .ctx(|| format!("write {}", path.display()))?;
    Ok(0)
}
