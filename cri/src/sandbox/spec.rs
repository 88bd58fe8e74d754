//! The OCI spec of a pod's infra process: `carapace-infra` bind-mounted
//! into an empty read-only root, joining the pod's pinned namespaces,
//! with no capabilities, no privileges to gain and an unprivileged user —
//! it only has to exist (and reap, as PID 1 of a shared PID namespace).

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde_json::{json, Value};

/// Where the infra binary appears inside its root.
pub const INFRA_PATH: &str = "/.carapace-infra";

/// The user the infra runs as (containerd's pause image uses 65535).
const INFRA_UID: u32 = 65535;

/// What the infra spec is made from.
#[derive(Clone, Debug)]
pub struct InfraSpec {
    /// The static `carapace-infra` binary on the host.
    pub binary: PathBuf,
    /// The pod's pinned network namespace; None on the host network.
    pub net: Option<PathBuf>,
    /// The pod's pinned IPC namespace; None with host IPC.
    pub ipc: Option<PathBuf>,
    /// The pod's pinned UTS namespace; None on the host network.
    pub uts: Option<PathBuf>,
    /// A new PID namespace (false: the host's, for hostPID pods).
    pub new_pid: bool,
    /// The infra's `linux.cgroupsPath`.
    pub cgroups_path: String,
}

fn ns(kind: &str, path: Option<&Path>) -> Value {
    match path {
        Some(p) => json!({"type": kind, "path": p}),
        None => json!({"type": kind}),
    }
}

impl InfraSpec {
    /// The OCI spec (root `rootfs` relative to the bundle).
    pub fn build(&self) -> Result<Spec, serde_json::Error> {
        let mut namespaces = vec![ns("mount", None)];
        if self.new_pid {
            namespaces.push(ns("pid", None));
        }
        for (kind, path) in [
            ("network", &self.net),
            ("ipc", &self.ipc),
            ("uts", &self.uts),
        ] {
            if let Some(p) = path {
                namespaces.push(ns(kind, Some(p)));
            }
        }
        let v = json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false,
                "user": {"uid": INFRA_UID, "gid": INFRA_UID},
                "args": [INFRA_PATH],
                "env": ["PATH=/"],
                "cwd": "/",
                "capabilities": {
                    "bounding": [], "effective": [], "inheritable": [],
                    "permitted": [], "ambient": []
                },
                "noNewPrivileges": true
            },
            "root": {"path": "rootfs", "readonly": true},
            // The runtime's init needs /proc (its exec FIFO is reopened
            // through /proc/self/fd, as runc's is); containerd's pause
            // spec has it too.
            "mounts": [{
                "destination": "/proc",
                "type": "proc",
                "source": "proc",
                "options": ["nosuid", "noexec", "nodev"]
            }, {
                "destination": INFRA_PATH,
                "type": "bind",
                "source": self.binary,
                "options": ["rbind", "ro", "nosuid", "nodev"]
            }],
            "linux": {
                "namespaces": namespaces,
                "cgroupsPath": self.cgroups_path,
                "resources": {"cpu": {"shares": 2}},
                "maskedPaths": [],
                "readonlyPaths": []
            }
        });
        serde_json::from_value(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> InfraSpec {
        InfraSpec {
            binary: "/usr/bin/carapace-infra".into(),
            net: Some("/run/carapace/pods/p/ns/net".into()),
            ipc: Some("/run/carapace/pods/p/ns/ipc".into()),
            uts: Some("/run/carapace/pods/p/ns/uts".into()),
            new_pid: true,
            cgroups_path: "/carapace/pods/p/p".into(),
        }
    }

    fn kinds(s: &Spec) -> Vec<(String, Option<PathBuf>)> {
        let v = serde_json::to_value(s).expect("json");
        v["linux"]["namespaces"]
            .as_array()
            .expect("namespaces")
            .iter()
            .map(|n| {
                (
                    n["type"].as_str().unwrap_or_default().to_string(),
                    n["path"].as_str().map(PathBuf::from),
                )
            })
            .collect()
    }

    #[test]
    fn infra_joins_the_pinned_namespaces_with_nothing_else() {
        let s = base().build().expect("spec");
        let k = kinds(&s);
        assert_eq!(k[0], ("mount".into(), None));
        assert_eq!(k[1], ("pid".into(), None));
        assert_eq!(
            k[2],
            ("network".into(), Some("/run/carapace/pods/p/ns/net".into()))
        );
        assert_eq!(k.len(), 5);
        let v = serde_json::to_value(&s).expect("json");
        assert_eq!(v["process"]["args"], json!([INFRA_PATH]));
        assert_eq!(v["process"]["capabilities"]["bounding"], json!([]));
        assert_eq!(v["process"]["noNewPrivileges"], json!(true));
        assert_eq!(v["process"]["user"]["uid"], json!(65535));
        assert_eq!(v["root"]["readonly"], json!(true));
        assert_eq!(v["mounts"][1]["source"], json!("/usr/bin/carapace-infra"));
    }

    #[test]
    fn host_namespaces_are_left_out() {
        let s = InfraSpec {
            net: None,
            uts: None,
            ipc: None,
            new_pid: false,
            ..base()
        }
        .build()
        .expect("spec");
        assert_eq!(kinds(&s), vec![("mount".to_string(), None)]);
    }
}
