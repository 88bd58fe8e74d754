//! CDI, the Container Device Interface: device plugins and DRA drivers
//! describe a device (a GPU, an FPGA, a NIC) in a spec file under
//! /etc/cdi or /var/run/cdi, and a container asks for it by its qualified
//! name, `vendor.com/class=name`, in CRI's `CDI_devices` or in a
//! `cdi.k8s.io/*` annotation. The device's edits (nodes, mounts, env,
//! hooks, groups) then go into the container's OCI spec, as containerd
//! and CRI-O apply them with the CNCF library.
//!
//! The spec dirs are read when a container first asks for a device and
//! read again whenever a file in them changed (name, size or mtime), so
//! a driver's new spec is seen by the next container without a restart.
//! Later dirs take precedence over earlier ones (/var/run/cdi over
//! /etc/cdi); a device defined twice at the same precedence is refused as
//! ambiguous, as the CNCF library does.

pub mod apply;
pub mod spec;

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use k8s_cri::v1 as cri;

pub use apply::Edits;
use spec::{ContainerEdits, Spec};

/// The annotation prefix that asks for CDI devices.
pub const ANNOTATION_PREFIX: &str = "cdi.k8s.io/";
/// A spec file larger than this is refused (they are a few KiB).
const MAX_SPEC_BYTES: u64 = 1 << 20;

/// Why a container's CDI devices cannot be given to it.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CdiError {
    /// A name that is not `vendor/class=name`.
    #[error("CDI device {0:?} is not a qualified name (vendor.com/class=name)")]
    BadName(String),
    /// No spec defines the device.
    #[error("CDI device {0:?} is not defined by any spec in {1}")]
    Unknown(String, String),
    /// Two specs of the same precedence define it.
    #[error("CDI device {0:?} is defined by both {1} and {2}")]
    Ambiguous(String, String, String),
    /// CDI is off in the configuration.
    #[error("CDI device {0:?} asked for, but CDI is disabled ([cdi] enabled = false)")]
    Disabled(String),
    /// A device node's host side could not be read.
    #[error("CDI device {device:?}: device node {path}: {reason}")]
    DeviceNode {
        /// The device.
        device: String,
        /// The host path.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

/// The devices the spec dirs define, read again when they change.
#[derive(Debug)]
pub struct Registry {
    enabled: bool,
    dirs: Vec<PathBuf>,
    state: Mutex<State>,
}

/// A spec file as a change of it is told: name, size, mtime (s, ns), inode.
type Stamp = (String, u64, i64, i64, u64);

#[derive(Debug, Default)]
struct State {
    /// Name, size, mtime and inode of every spec file, by dir; None
    /// before the first read.
    seen: Option<Vec<Vec<Stamp>>>,
    devices: HashMap<String, Entry>,
    errors: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
enum Entry {
    Device {
        file: String,
        priority: usize,
        spec_edits: Box<ContainerEdits>,
        edits: Box<ContainerEdits>,
    },
    Conflict(String, String),
}

impl Registry {
    /// A registry of `dirs` (lowest precedence first).
    pub fn new(enabled: bool, dirs: Vec<PathBuf>) -> Registry {
        Registry {
            enabled,
            dirs,
            state: Mutex::new(State::default()),
        }
    }

    /// The edits for `names`, in order: each device's spec-wide edits
    /// (once per spec) and its own.
    pub fn resolve(&self, names: &[String]) -> Result<Edits, CdiError> {
        if names.is_empty() {
            return Ok(Edits::default());
        }
        if !self.enabled {
            return Err(CdiError::Disabled(names[0].clone()));
        }
        for n in names {
            parse_qualified(n)?;
        }
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.refresh(&mut st);
        let mut edits = Edits::default();
        let mut specs_applied: Vec<String> = Vec::new();
        for n in names {
            match st.devices.get(n) {
                None => return Err(CdiError::Unknown(n.clone(), self.dirs_shown())),
                Some(Entry::Conflict(a, b)) => {
                    return Err(CdiError::Ambiguous(n.clone(), a.clone(), b.clone()))
                }
                Some(Entry::Device {
                    file,
                    spec_edits,
                    edits: own,
                    ..
                }) => {
                    if !specs_applied.contains(file) {
                        specs_applied.push(file.clone());
                        edits.add(n, spec_edits);
                    }
                    edits.add(n, own);
                }
            }
        }
        Ok(edits)
    }

    /// What Status's verbose info says: enabled, the dirs, the devices
    /// they define and the spec files that could not be used.
    pub fn describe(&self) -> serde_json::Value {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if self.enabled {
            self.refresh(&mut st);
        }
        let mut devices: Vec<&String> = st
            .devices
            .iter()
            .filter(|(_, e)| matches!(e, Entry::Device { .. }))
            .map(|(n, _)| n)
            .collect();
        devices.sort();
        serde_json::json!({
            "enabled": self.enabled,
            "specDirs": self.dirs,
            "devices": devices,
            "errors": st.errors,
        })
    }

    fn dirs_shown(&self) -> String {
        self.dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Reads the dirs again if any spec file changed since the last read.
    fn refresh(&self, st: &mut State) {
        let now: Vec<_> = self.dirs.iter().map(|d| listing(d)).collect();
        if st.seen.as_ref() == Some(&now) {
            return;
        }
        st.devices.clear();
        st.errors.clear();
        for (priority, (dir, files)) in self.dirs.iter().zip(&now).enumerate() {
            for (name, ..) in files {
                let path = dir.join(name);
                match read_spec(&path) {
                    Ok(spec) => add_spec(st, &path, priority, spec),
                    Err(e) => {
                        tracing::warn!(spec = %path.display(), error = %e, "CDI spec not used");
                        st.errors.insert(path.display().to_string(), e);
                    }
                }
            }
        }
        st.seen = Some(now);
    }
}

/// The spec files of `dir` (`*.json`, `*.yaml`, `*.yml`), sorted by name,
/// with what tells a change.
fn listing(dir: &Path) -> Vec<Stamp> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let spec = [".json", ".yaml", ".yml"].iter().any(|x| name.ends_with(x));
            let md = std::fs::metadata(e.path()).ok()?;
            (spec && md.is_file()).then(|| (name, md.len(), md.mtime(), md.mtime_nsec(), md.ino()))
        })
        .collect();
    out.sort();
    out
}

fn read_spec(path: &Path) -> Result<Spec, String> {
    let md = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if md.len() > MAX_SPEC_BYTES {
        return Err(format!(
            "{} bytes, over the {MAX_SPEC_BYTES}-byte limit",
            md.len()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let json = path.extension().is_some_and(|x| x == "json");
    spec::parse(&text, json).map_err(|e| e.to_string())
}

fn add_spec(st: &mut State, path: &Path, priority: usize, spec: Spec) {
    let file = path.display().to_string();
    for d in spec.devices {
        let name = format!("{}={}", spec.kind, d.name);
        let entry = Entry::Device {
            file: file.clone(),
            priority,
            spec_edits: Box::new(spec.container_edits.clone()),
            edits: Box::new(d.container_edits),
        };
        match st.devices.get(&name) {
            Some(Entry::Device {
                priority: p,
                file: other,
                ..
            }) if *p == priority => {
                let conflict = Entry::Conflict(other.clone(), file.clone());
                st.devices.insert(name, conflict);
            }
            Some(Entry::Conflict(..)) => {}
            _ => {
                st.devices.insert(name, entry);
            }
        }
    }
}

/// Splits `vendor.com/class=name`, checking each part.
pub fn parse_qualified(name: &str) -> Result<(&str, &str), CdiError> {
    let bad = || CdiError::BadName(name.to_string());
    let (kind, dev) = name.split_once('=').ok_or_else(bad)?;
    spec::check_kind(kind).map_err(|_| bad())?;
    spec::check_device_name(dev).map_err(|_| bad())?;
    Ok((kind, dev))
}

/// The devices a container asks for: CRI's `CDI_devices`, then those its
/// `cdi.k8s.io/*` annotations name (comma-separated), each once, in order.
pub fn requested(config: &cri::ContainerConfig) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |n: &str| {
        let n = n.trim();
        if !n.is_empty() && !out.iter().any(|o| o == n) {
            out.push(n.to_string());
        }
    };
    for d in &config.cdi_devices {
        push(&d.name);
    }
    let mut keys: Vec<&String> = config
        .annotations
        .keys()
        .filter(|k| k.starts_with(ANNOTATION_PREFIX))
        .collect();
    keys.sort();
    for k in keys {
        for n in config.annotations[k].split(',') {
            push(n);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_file(dir: &Path, file: &str, kind: &str, devs: &[(&str, &str)]) {
        let devices: Vec<serde_json::Value> = devs
            .iter()
            .map(|(n, env)| serde_json::json!({"name": n, "containerEdits": {"env": [env]}}))
            .collect();
        let s = serde_json::json!({
            "cdiVersion": "0.5.0", "kind": kind, "devices": devices,
            "containerEdits": {"env": [format!("SPEC={file}")]},
        });
        std::fs::write(dir.join(file), s.to_string()).expect("write spec");
    }

    #[test]
    fn names_come_from_the_field_then_the_annotations_once_each() {
        let mut c = cri::ContainerConfig {
            cdi_devices: vec![cri::CdiDevice {
                name: "a.com/x=1".into(),
            }],
            ..Default::default()
        };
        c.annotations
            .insert("cdi.k8s.io/plugin".into(), "a.com/x=2, a.com/x=1".into());
        c.annotations.insert("other/key".into(), "a.com/x=3".into());
        assert_eq!(requested(&c), ["a.com/x=1", "a.com/x=2"]);
    }

    #[test]
    fn devices_resolve_by_precedence_and_changes_are_read_again() {
        let d = tempfile::tempdir().expect("tmp");
        let (etc, run) = (d.path().join("etc"), d.path().join("run"));
        std::fs::create_dir_all(&etc).expect("mkdir");
        std::fs::create_dir_all(&run).expect("mkdir");
        let r = Registry::new(true, vec![etc.clone(), run.clone()]);
        spec_file(
            &etc,
            "a.json",
            "a.com/x",
            &[("1", "DEV=etc"), ("2", "TWO=1")],
        );
        let e = r
            .resolve(&["a.com/x=1".into(), "a.com/x=2".into()])
            .expect("resolve");
        // The spec's own edits once, then each device's.
        assert_eq!(e.env, ["SPEC=a.json", "DEV=etc", "TWO=1"]);
        // The later dir wins.
        spec_file(&run, "a.yaml", "a.com/x", &[("1", "DEV=run")]);
        let e = r.resolve(&["a.com/x=1".into()]).expect("resolve");
        assert_eq!(e.env, ["SPEC=a.yaml", "DEV=run"]);
        // Two definitions at one precedence: ambiguous.
        spec_file(&run, "b.json", "a.com/x", &[("1", "DEV=b")]);
        assert!(matches!(
            r.resolve(&["a.com/x=1".into()]),
            Err(CdiError::Ambiguous(..))
        ));
        std::fs::remove_file(run.join("b.json")).expect("rm");
        assert!(r.resolve(&["a.com/x=1".into()]).is_ok());
        // Unknown, malformed, and a bad file reported, not fatal.
        assert!(matches!(
            r.resolve(&["a.com/x=9".into()]),
            Err(CdiError::Unknown(..))
        ));
        assert!(matches!(
            r.resolve(&["nonsense".into()]),
            Err(CdiError::BadName(_))
        ));
        std::fs::write(etc.join("broken.yaml"), "cdiVersion: [").expect("write");
        assert!(r.resolve(&["a.com/x=2".into()]).is_ok());
        let info = r.describe();
        assert!(
            info["errors"]
                .as_object()
                .is_some_and(|m| m.keys().any(|k| k.ends_with("broken.yaml"))),
            "{info}"
        );
        assert_eq!(
            info["devices"],
            serde_json::json!(["a.com/x=1", "a.com/x=2"])
        );
        let off = Registry::new(false, vec![etc]);
        assert!(matches!(
            off.resolve(&["a.com/x=2".into()]),
            Err(CdiError::Disabled(_))
        ));
        assert!(off.resolve(&[]).is_ok());
    }
}
