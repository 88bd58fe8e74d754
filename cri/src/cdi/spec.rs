//! CDI spec files (the Container Device Interface specification, versions
//! 0.3.0 to 0.8.0): their form, read from JSON or YAML, and the checks
//! the CNCF library makes before a spec's devices may be used.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

/// The newest spec version read here; a newer file is refused, as the
/// CNCF library refuses versions it does not know.
const NEWEST: (u32, u32, u32) = (0, 8, 0);
/// The oldest spec version with the form read here.
const OLDEST: (u32, u32, u32) = (0, 3, 0);

/// One spec file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    /// Spec version, "0.3.0" … "0.8.0".
    pub cdi_version: String,
    /// `vendor/class`, e.g. "nvidia.com/gpu".
    pub kind: String,
    /// Free-form annotations (0.6.0).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The devices.
    pub devices: Vec<Device>,
    /// Edits for a container that gets any device of this spec.
    #[serde(default)]
    pub container_edits: ContainerEdits,
}

/// One device of a spec.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// Its name within the kind.
    pub name: String,
    /// Free-form annotations (0.6.0).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// What a container that gets it needs.
    pub container_edits: ContainerEdits,
}

/// Changes to a container's OCI spec.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerEdits {
    /// `KEY=value` entries.
    pub env: Vec<String>,
    /// Device nodes to create (and allow in the device cgroup).
    pub device_nodes: Vec<DeviceNode>,
    /// OCI hooks.
    pub hooks: Vec<Hook>,
    /// Mounts.
    pub mounts: Vec<Mount>,
    /// Intel RDT settings (0.7.0).
    pub intel_rdt: Option<IntelRdt>,
    /// Groups the container's process joins (0.7.0).
    #[serde(rename = "additionalGIDs")]
    pub additional_gids: Vec<u32>,
}

impl ContainerEdits {
    fn is_empty(&self) -> bool {
        *self == ContainerEdits::default()
    }
}

/// A device node.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeviceNode {
    /// Path in the container.
    pub path: String,
    /// Path on the host (0.5.0); the container path when absent.
    #[serde(default)]
    pub host_path: Option<String>,
    /// "c", "b", "u" or "p"; read from the host node when absent.
    #[serde(default, rename = "type")]
    pub typ: Option<String>,
    /// Major number; read from the host node when absent.
    #[serde(default)]
    pub major: Option<i64>,
    /// Minor number; read from the host node when absent.
    #[serde(default)]
    pub minor: Option<i64>,
    /// Mode bits; the host node's when absent.
    #[serde(default)]
    pub file_mode: Option<u32>,
    /// Device cgroup access, "rwm" when absent.
    #[serde(default)]
    pub permissions: Option<String>,
    /// Owner in the container (0 when absent).
    #[serde(default)]
    pub uid: Option<u32>,
    /// Group in the container (0 when absent).
    #[serde(default)]
    pub gid: Option<u32>,
}

/// An OCI hook.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Hook {
    /// prestart, createRuntime, createContainer, startContainer,
    /// poststart or poststop.
    pub hook_name: String,
    /// The program.
    pub path: String,
    /// Its arguments (argv\[0\] included).
    #[serde(default)]
    pub args: Vec<String>,
    /// Its environment.
    #[serde(default)]
    pub env: Vec<String>,
    /// Seconds it may take.
    #[serde(default)]
    pub timeout: Option<i64>,
}

/// A mount.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    /// Source on the host.
    pub host_path: String,
    /// Destination in the container.
    pub container_path: String,
    /// Mount options.
    #[serde(default)]
    pub options: Vec<String>,
    /// Filesystem type ("bind" when absent).
    #[serde(default, rename = "type")]
    pub typ: Option<String>,
}

/// Intel RDT settings.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IntelRdt {
    /// The class of service.
    #[serde(default, rename = "closID")]
    pub clos_id: Option<String>,
    /// L3 cache allocation schema.
    #[serde(default)]
    pub l3_cache_schema: Option<String>,
    /// Memory bandwidth schema.
    #[serde(default)]
    pub mem_bw_schema: Option<String>,
    /// Cache monitoring.
    #[serde(default, rename = "enableCMT")]
    pub enable_cmt: bool,
    /// Memory bandwidth monitoring.
    #[serde(default, rename = "enableMBM")]
    pub enable_mbm: bool,
}

/// Why a spec file cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SpecError {
    /// Neither JSON nor YAML of a spec's form.
    #[error("parse: {0}")]
    Parse(String),
    /// Something the specification forbids.
    #[error("{0}")]
    Invalid(String),
}

/// Reads a spec from `text`: JSON for a `.json` file, YAML otherwise.
pub fn parse(text: &str, json: bool) -> Result<Spec, SpecError> {
    let spec: Spec = if json {
        serde_json::from_str(text).map_err(|e| SpecError::Parse(e.to_string()))?
    } else {
        serde_norway::from_str(text).map_err(|e| SpecError::Parse(e.to_string()))?
    };
    validate(&spec)?;
    Ok(spec)
}

fn invalid(msg: impl Into<String>) -> SpecError {
    SpecError::Invalid(msg.into())
}

/// "0.6.0" as numbers.
fn version(v: &str) -> Option<(u32, u32, u32)> {
    let mut it = v.strip_prefix('v').unwrap_or(v).split('.');
    let n = |s: Option<&str>| s.and_then(|s| s.parse::<u32>().ok());
    let parsed = (n(it.next())?, n(it.next())?, n(it.next())?);
    it.next().is_none().then_some(parsed)
}

/// The CNCF library's checks, as far as they decide whether a device can
/// be handed out.
fn validate(spec: &Spec) -> Result<(), SpecError> {
    let v = version(&spec.cdi_version).ok_or_else(|| {
        invalid(format!(
            "cdiVersion {:?} is not a version",
            spec.cdi_version
        ))
    })?;
    if v < OLDEST || v > NEWEST {
        return Err(invalid(format!(
            "cdiVersion {} is not supported (0.3.0 to 0.8.0)",
            spec.cdi_version
        )));
    }
    check_kind(&spec.kind)?;
    if spec.devices.is_empty() {
        return Err(invalid("the spec has no devices"));
    }
    check_edits(&spec.container_edits, "the spec's containerEdits")?;
    let mut seen = HashSet::new();
    for d in &spec.devices {
        check_device_name(&d.name)?;
        if !seen.insert(d.name.as_str()) {
            return Err(invalid(format!("device {:?} is defined twice", d.name)));
        }
        if d.container_edits.is_empty() {
            return Err(invalid(format!(
                "device {:?} has no containerEdits",
                d.name
            )));
        }
        check_edits(&d.container_edits, &format!("device {:?}", d.name))?;
    }
    Ok(())
}

/// `vendor/class`: the vendor a domain-like name, the class a word.
pub fn check_kind(kind: &str) -> Result<(), SpecError> {
    let (vendor, class) = kind
        .split_once('/')
        .ok_or_else(|| invalid(format!("kind {kind:?} is not vendor/class")))?;
    let ok_vendor = name_like(vendor, |c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && vendor.starts_with(|c: char| c.is_ascii_alphabetic());
    let ok_class = name_like(class, |c| c.is_ascii_alphanumeric() || "-_".contains(c))
        && class.starts_with(|c: char| c.is_ascii_alphabetic());
    if !ok_vendor || !ok_class {
        return Err(invalid(format!(
            "kind {kind:?} is not a valid vendor/class"
        )));
    }
    Ok(())
}

/// A device name: letters, digits, `-_.:`, starting and ending with a
/// letter or digit.
pub fn check_device_name(name: &str) -> Result<(), SpecError> {
    if !name_like(name, |c| c.is_ascii_alphanumeric() || "-_.:".contains(c)) {
        return Err(invalid(format!("device name {name:?} is not valid")));
    }
    Ok(())
}

/// Non-empty, every char allowed, alphanumeric at both ends.
fn name_like(s: &str, allowed: impl Fn(char) -> bool) -> bool {
    !s.is_empty()
        && s.chars().all(allowed)
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn check_edits(e: &ContainerEdits, what: &str) -> Result<(), SpecError> {
    for v in &e.env {
        if !v.contains('=') || v.starts_with('=') {
            return Err(invalid(format!("{what}: env entry {v:?} is not KEY=value")));
        }
    }
    for n in &e.device_nodes {
        if !n.path.starts_with('/') {
            return Err(invalid(format!(
                "{what}: device node path {:?} is not absolute",
                n.path
            )));
        }
        if let Some(h) = n.host_path.as_deref() {
            if !h.starts_with('/') {
                return Err(invalid(format!(
                    "{what}: device node hostPath {h:?} is not absolute"
                )));
            }
        }
        if let Some(t) = n.typ.as_deref() {
            if !["b", "c", "u", "p"].contains(&t) {
                return Err(invalid(format!(
                    "{what}: device node {:?} has type {t:?}",
                    n.path
                )));
            }
        }
        if let Some(p) = n.permissions.as_deref() {
            if p.is_empty() || !p.chars().all(|c| "rwm".contains(c)) {
                return Err(invalid(format!(
                    "{what}: device node {:?} has permissions {p:?} (a mix of r, w and m)",
                    n.path
                )));
            }
        }
    }
    const HOOKS: [&str; 6] = [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ];
    for h in &e.hooks {
        if !HOOKS.contains(&h.hook_name.as_str()) {
            return Err(invalid(format!(
                "{what}: hook name {:?} is not an OCI hook",
                h.hook_name
            )));
        }
        if !h.path.starts_with('/') {
            return Err(invalid(format!(
                "{what}: hook path {:?} is not absolute",
                h.path
            )));
        }
    }
    for m in &e.mounts {
        if m.host_path.is_empty() || !m.container_path.starts_with('/') {
            return Err(invalid(format!(
                "{what}: mount {:?} -> {:?} needs a host path and an absolute container path",
                m.host_path, m.container_path
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
cdiVersion: "0.6.0"
kind: "example.com/fpga"
annotations:
  note: test
containerEdits:
  env: ["FPGA_RUNTIME=1"]
devices:
  - name: "card0"
    containerEdits:
      deviceNodes:
        - path: "/dev/fpga0"
          hostPath: "/dev/null"
          permissions: "rw"
      mounts:
        - hostPath: "/opt/fpga/lib"
          containerPath: "/usr/lib/fpga"
          options: ["ro", "nosuid", "nodev", "bind"]
      hooks:
        - hookName: createContainer
          path: /usr/bin/fpga-hook
          args: ["fpga-hook", "setup"]
      additionalGIDs: [44]
  - name: "card:1"
    containerEdits:
      env: ["FPGA=1"]
"#;

    #[test]
    fn yaml_and_json_specs_read_alike() {
        let s = parse(YAML, false).expect("yaml");
        assert_eq!(s.kind, "example.com/fpga");
        assert_eq!(s.devices.len(), 2);
        let d = &s.devices[0].container_edits;
        assert_eq!(d.device_nodes[0].host_path.as_deref(), Some("/dev/null"));
        assert_eq!(d.hooks[0].hook_name, "createContainer");
        assert_eq!(d.additional_gids, [44]);
        assert_eq!(s.container_edits.env, ["FPGA_RUNTIME=1"]);
        let json = serde_json::to_string(&s).expect("to json");
        let back = parse(&json, true).expect("json");
        assert_eq!(
            back.devices[0].container_edits,
            s.devices[0].container_edits
        );
    }

    #[test]
    fn what_the_specification_forbids_is_refused() {
        let bad = |edit: &str, from: &str, to: &str| {
            let text = YAML.replacen(from, to, 1);
            assert!(
                matches!(parse(&text, false), Err(SpecError::Invalid(_))),
                "{edit}: accepted"
            );
        };
        bad("newer version", "\"0.6.0\"", "\"0.9.0\"");
        bad("older version", "\"0.6.0\"", "\"0.2.0\"");
        bad("not a version", "\"0.6.0\"", "\"six\"");
        bad(
            "kind without class",
            "\"example.com/fpga\"",
            "\"example.com\"",
        );
        bad(
            "kind with a bad vendor",
            "\"example.com/fpga\"",
            "\"-x/fpga\"",
        );
        bad("bad device name", "\"card0\"", "\"card0/\"");
        bad("duplicate device", "\"card:1\"", "\"card0\"");
        bad("env without =", "[\"FPGA=1\"]", "[\"FPGA\"]");
        bad("relative node", "\"/dev/fpga0\"", "\"dev/fpga0\"");
        bad("bad permissions", "\"rw\"", "\"rx\"");
        bad("bad hook", "createContainer", "beforeEverything");
        bad(
            "relative mount target",
            "\"/usr/lib/fpga\"",
            "\"usr/lib/fpga\"",
        );
        bad(
            "empty device",
            "      env: [\"FPGA=1\"]\n",
            "      env: []\n",
        );
        assert!(matches!(parse("{", true), Err(SpecError::Parse(_))));
        assert!(matches!(
            parse("devices: 3", false),
            Err(SpecError::Parse(_))
        ));
    }
}
