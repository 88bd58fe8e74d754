//! The OCI spec of a pod's infra process: `carapace-infra` bind-mounted
//! into an empty read-only root, joining the pod's pinned namespaces,
//! with no capabilities, no privileges to gain and an unprivileged user —
//! it only has to exist (and reap, as PID 1 of a shared PID namespace).

use std::path::{Path, PathBuf};

use k8s_cri::v1 as cri;
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
    /// For a pod in a user namespace of its own: the infra makes it and
    /// the pod's network, IPC and UTS namespaces (owned by it), to be
    /// pinned from the infra; `net`, `ipc` and `uts` are None then.
    pub own: Option<OwnNamespaces>,
    /// The spec's annotations (containerd's sandbox keys: shim v2
    /// runtimes group a pod's tasks by them).
    pub annotations: std::collections::BTreeMap<String, String>,
    /// Give the infra a `/dev` tmpfs, as the pause container has under
    /// containerd. runc (under a shim v2) makes its default device nodes
    /// in the rootfs, and reopens /dev/null there for a process whose
    /// stdio is /dev/null: on a `nodev` state directory that open is
    /// refused unless /dev is a filesystem of its own. carapace-runtime
    /// needs none of it.
    pub dev_tmpfs: bool,
}

/// What the namespaces an infra makes for its pod start with.
#[derive(Clone, Debug)]
pub struct OwnNamespaces {
    /// The pod's user namespace option (mode POD, its mappings).
    pub userns: cri::UserNamespace,
    /// The pod's hostname, in its new UTS namespace.
    pub hostname: String,
    /// The pod's sysctls (the runtime writes them inside).
    pub sysctls: Vec<(String, String)>,
}

impl OwnNamespaces {
    /// The host uid and gid of the pod's root.
    pub fn root_ids(&self) -> (u32, u32) {
        crate::idmap::root_ids(&self.userns)
    }
}

fn mappings(m: &[cri::IdMapping]) -> Value {
    m.iter()
        .map(|m| json!({"containerID": m.container_id, "hostID": m.host_id, "size": m.length}))
        .collect()
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
        if self.own.is_some() {
            for kind in ["user", "network", "ipc", "uts"] {
                namespaces.push(ns(kind, None));
            }
        }
        let mut v = json!({
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
        if !self.annotations.is_empty() {
            v["annotations"] = json!(self.annotations);
        }
        if self.dev_tmpfs {
            if let Some(m) = v["mounts"].as_array_mut() {
                m.push(json!({
                    "destination": "/dev",
                    "type": "tmpfs",
                    "source": "tmpfs",
                    "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]
                }));
            }
        }
        if let Some(own) = &self.own {
            v["hostname"] = json!(own.hostname);
            let l = &mut v["linux"];
            l["uidMappings"] = mappings(&own.userns.uids);
            l["gidMappings"] = mappings(&own.userns.gids);
            let sysctl: serde_json::Map<String, Value> = own
                .sysctls
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            l["sysctl"] = Value::Object(sysctl);
        }
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
            own: None,
            annotations: Default::default(),
            dev_tmpfs: false,
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
    fn an_infra_in_its_own_user_namespace_makes_the_pods_namespaces() {
        let map = vec![cri::IdMapping {
            container_id: 0,
            host_id: 100000,
            length: 65536,
        }];
        let s = InfraSpec {
            net: None,
            ipc: None,
            uts: None,
            own: Some(OwnNamespaces {
                userns: cri::UserNamespace {
                    mode: cri::NamespaceMode::Pod as i32,
                    uids: map.clone(),
                    gids: map,
                },
                hostname: "web-0".into(),
                sysctls: vec![("net.ipv4.ip_unprivileged_port_start".into(), "0".into())],
            }),
            ..base()
        }
        .build()
        .expect("spec");
        let k: Vec<_> = kinds(&s)
            .into_iter()
            .map(|(t, p)| (t, p.is_none()))
            .collect();
        let want: Vec<_> = ["mount", "pid", "user", "network", "ipc", "uts"]
            .iter()
            .map(|t| (t.to_string(), true))
            .collect();
        assert_eq!(k, want);
        let v = serde_json::to_value(&s).expect("json");
        assert_eq!(v["hostname"], json!("web-0"));
        let m = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        assert_eq!(v["linux"]["uidMappings"], m);
        assert_eq!(v["linux"]["gidMappings"], m);
        assert_eq!(
            v["linux"]["sysctl"]["net.ipv4.ip_unprivileged_port_start"],
            json!("0")
        );
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
