//! The pod network's CNI configuration: which network the daemon would set
//! pods up with, found the way kubelet's runtimes look for it (the first
//! valid `.conf`, `.conflist` or `.json` file of the conf dir in name
//! order).

use std::path::{Path, PathBuf};

/// The network configuration in use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkConf {
    /// The file it came from.
    pub path: PathBuf,
    /// Its `name`.
    pub name: String,
    /// The plugin types, in order (`bridge`, `portmap`, …).
    pub plugins: Vec<String>,
}

/// Why no network configuration could be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CniError {
    /// The conf dir has no usable file.
    #[error("no network config found in {0}")]
    NoConfig(PathBuf),
}

/// Parses one config file's text; `None` when it is not a usable network
/// configuration (invalid JSON, no name, no plugin type).
pub fn parse_conf(path: &Path, text: &str) -> Option<NetworkConf> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let name = v.get("name")?.as_str()?.to_string();
    let plugins: Vec<String> = match v.get("plugins") {
        Some(list) => list
            .as_array()?
            .iter()
            .filter_map(|p| p.get("type").and_then(|t| t.as_str()).map(str::to_string))
            .collect(),
        None => vec![v.get("type")?.as_str()?.to_string()],
    };
    if plugins.is_empty() {
        return None;
    }
    Some(NetworkConf {
        path: path.to_path_buf(),
        name,
        plugins,
    })
}

/// Finds the network configuration in `dir`.
pub fn find_conf(dir: &Path) -> Result<NetworkConf, CniError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|_| CniError::NoConfig(dir.to_path_buf()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("conf" | "conflist" | "json")
            )
        })
        .collect();
    files.sort();
    files
        .iter()
        .find_map(|p| parse_conf(p, &std::fs::read_to_string(p).ok()?))
        .ok_or_else(|| CniError::NoConfig(dir.to_path_buf()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflists_and_single_confs_are_recognised() {
        let c = parse_conf(
            Path::new("/x/10-pods.conflist"),
            r#"{"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"bridge"},{"type":"portmap"}]}"#,
        )
        .expect("conflist");
        assert_eq!(c.name, "pods");
        assert_eq!(c.plugins, ["bridge", "portmap"]);
        let c =
            parse_conf(Path::new("/x/a.conf"), r#"{"name":"n","type":"bridge"}"#).expect("conf");
        assert_eq!(c.plugins, ["bridge"]);
        assert!(parse_conf(Path::new("/x/b.conf"), "not json").is_none());
        assert!(parse_conf(Path::new("/x/b.conf"), r#"{"type":"bridge"}"#).is_none());
        assert!(parse_conf(Path::new("/x/b.conf"), r#"{"name":"n","plugins":[]}"#).is_none());
    }

    #[test]
    fn the_first_valid_file_in_name_order_wins() {
        let d = tempfile::tempdir().expect("tmp");
        assert!(find_conf(d.path()).is_err());
        std::fs::write(d.path().join("05-broken.conf"), "{").expect("write");
        std::fs::write(d.path().join("README"), "{\"name\":\"x\",\"type\":\"t\"}").expect("write");
        std::fs::write(
            d.path().join("20-b.conflist"),
            r#"{"name":"b","plugins":[{"type":"bridge"}]}"#,
        )
        .expect("write");
        std::fs::write(d.path().join("10-a.conf"), r#"{"name":"a","type":"ptp"}"#).expect("write");
        assert_eq!(find_conf(d.path()).expect("found").name, "a");
        assert!(find_conf(&d.path().join("missing")).is_err());
    }
}
