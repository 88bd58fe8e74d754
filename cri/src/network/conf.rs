//! The pod network's CNI configuration: which network the daemon would set
//! pods up with, found the way kubelet's runtimes look for it (the first
//! valid `.conf`, `.conflist` or `.json` file of the conf dir in name
//! order), normalized to a plugin list as libcni does.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::CniError;

/// The network configuration in use, as a plugin chain: a single-plugin
/// `.conf` is a one-element list, as libcni's `ConfListFromConf` makes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkConf {
    /// The file it came from.
    pub path: PathBuf,
    /// Its `name`.
    pub name: String,
    /// The plugin types, in order (`bridge`, `portmap`, …), for display;
    /// the chain run is `plugin_confs`.
    pub plugins: Vec<String>,
    /// Its `cniVersion`, told to every plugin ("" when the file has none,
    /// which CNI reads as 0.1.0).
    pub cni_version: String,
    /// Each plugin's own configuration object, in chain order; each has a
    /// non-empty string `type`.
    pub plugin_confs: Vec<Map<String, Value>>,
}

/// Parses one config file's text; `None` when it is not a usable network
/// configuration (invalid JSON, no name, a version that is not a version,
/// no plugins, a plugin without a type).
pub fn parse_conf(path: &Path, text: &str) -> Option<NetworkConf> {
    let v: Value = serde_json::from_str(text).ok()?;
    let obj = v.as_object()?;
    let name = obj.get("name")?.as_str()?.to_string();
    if name.is_empty() {
        return None;
    }
    let cni_version = match obj.get("cniVersion") {
        None => String::new(),
        Some(v) => v.as_str()?.to_string(),
    };
    parse_version(&cni_version)?;
    let plugin_confs: Vec<Map<String, Value>> = match obj.get("plugins") {
        Some(list) => list
            .as_array()?
            .iter()
            .map(|p| p.as_object().cloned())
            .collect::<Option<_>>()?,
        None => vec![obj.clone()],
    };
    let plugins: Vec<String> = plugin_confs
        .iter()
        .map(|p| plugin_type(p).map(str::to_string))
        .collect::<Option<_>>()?;
    if plugins.is_empty() {
        return None;
    }
    Some(NetworkConf {
        path: path.to_path_buf(),
        name,
        plugins,
        cni_version,
        plugin_confs,
    })
}

/// A plugin configuration's `type`: the name of its binary.
pub(crate) fn plugin_type(plugin: &Map<String, Value>) -> Option<&str> {
    plugin
        .get("type")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
}

/// A CNI version as (major, minor, patch); "" is 0.1.0, as in libcni.
pub(crate) fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    if v.is_empty() {
        return Some((0, 1, 0));
    }
    let mut parts = [0u64; 3];
    let mut fields = v.split('.');
    for slot in &mut parts {
        if let Some(f) = fields.next() {
            *slot = f.parse().ok()?;
        }
    }
    if fields.next().is_some() {
        return None;
    }
    Some((parts[0], parts[1], parts[2]))
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
    fn a_single_plugin_conf_becomes_a_one_plugin_chain() {
        let c = parse_conf(
            Path::new("/x/10-a.conf"),
            r#"{"cniVersion":"0.4.0","name":"n","type":"bridge","bridge":"cni0"}"#,
        )
        .expect("conf");
        assert_eq!(c.cni_version, "0.4.0");
        assert_eq!(c.plugin_confs.len(), 1);
        assert_eq!(c.plugin_confs[0]["bridge"], "cni0");
        let c = parse_conf(
            Path::new("/x/10-a.conflist"),
            r#"{"name":"n","plugins":[{"type":"bridge"},{"type":"portmap","snat":true}]}"#,
        )
        .expect("conflist");
        assert_eq!(c.cni_version, "");
        assert_eq!(c.plugin_confs[1]["snat"], true);
    }

    #[test]
    fn chains_with_untyped_plugins_or_odd_versions_are_unusable() {
        for text in [
            r#"{"name":"n","plugins":[{"type":"bridge"},{"snat":true}]}"#,
            r#"{"name":"n","plugins":[{"type":"bridge"},{"type":""}]}"#,
            r#"{"name":"n","plugins":[{"type":"bridge"},"portmap"]}"#,
            r#"{"name":"n","cniVersion":"one","type":"bridge"}"#,
            r#"{"name":"n","cniVersion":"1.0.0.0","type":"bridge"}"#,
            r#"{"name":"n","cniVersion":1,"type":"bridge"}"#,
            r#"{"name":"","type":"bridge"}"#,
        ] {
            assert!(
                parse_conf(Path::new("/x/a.conflist"), text).is_none(),
                "{text}"
            );
        }
    }

    #[test]
    fn versions_compare_as_numbers() {
        assert_eq!(parse_version(""), Some((0, 1, 0)));
        assert_eq!(parse_version("0.3.1"), Some((0, 3, 1)));
        assert_eq!(parse_version("1.0"), Some((1, 0, 0)));
        assert!(parse_version("0.10.0") > parse_version("0.4.0"));
        assert_eq!(parse_version("1.x"), None);
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
