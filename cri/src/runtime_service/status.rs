//! `Status`: whether the runtime and the pod network are ready (kubelet
//! marks the node NotReady otherwise), with the reasons a person needs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use k8s_cri::v1 as cri;
use tonic::Status;

use crate::daemon::Daemon;
use crate::network;

/// CRI condition types.
const RUNTIME_READY: &str = "RuntimeReady";
const NETWORK_READY: &str = "NetworkReady";

/// Answers Status from what is on disk now: the runtime binary of the
/// default handler and the CNI configuration.
pub fn handle(d: &Daemon, req: cri::StatusRequest) -> Result<cri::StatusResponse, Status> {
    let cfg = &d.config;
    let runtime = cfg
        .runtime_handlers
        .get(&cfg.default_runtime_handler)
        .map(|h| h.path.clone());
    let runtime_cond = match runtime.as_deref().map(find_binary) {
        Some(Some(_)) => condition(RUNTIME_READY, true, "", ""),
        Some(None) => condition(
            RUNTIME_READY,
            false,
            "RuntimeBinaryMissing",
            &format!(
                "runtime binary {:?} of handler {:?} not found",
                runtime.unwrap_or_default(),
                cfg.default_runtime_handler
            ),
        ),
        None => condition(
            RUNTIME_READY,
            false,
            "RuntimeHandlerMissing",
            &format!("no runtime handler {:?}", cfg.default_runtime_handler),
        ),
    };
    let net = network::find_conf(&cfg.cni.conf_dir);
    let network_cond = match &net {
        Ok(_) => condition(NETWORK_READY, true, "", ""),
        Err(e) => condition(
            NETWORK_READY,
            false,
            "NetworkPluginNotReady",
            &format!("Network plugin returns error: {e}"),
        ),
    };
    let mut info = HashMap::new();
    if req.verbose {
        info.insert(
            "config".to_string(),
            serde_json::to_string(cfg).unwrap_or_default(),
        );
        if let Ok(n) = &net {
            info.insert(
                "cniconfig".to_string(),
                serde_json::json!({"path": n.path, "name": n.name, "plugins": n.plugins})
                    .to_string(),
            );
        }
        info.insert("podCIDR".to_string(), d.pod_cidr());
    }
    let mut runtime_handlers: Vec<cri::RuntimeHandler> = cfg
        .runtime_handlers
        .iter()
        .map(|(name, h)| cri::RuntimeHandler {
            name: name.clone(),
            // User namespaces are made and idmapped by the daemon itself
            // (infra + idmapped mounts), so every handler has them; `rro`
            // only where the runtime's `features` lists it, as containerd
            // decides.
            features: Some(cri::RuntimeHandlerFeatures {
                recursive_read_only_mounts: find_binary(&h.path).is_some_and(|b| rro_supported(&b)),
                user_namespaces: true,
            }),
        })
        .collect();
    // CRI: "an empty string denotes the default handler". kubelet and
    // critest look the default's features up under "" (containerd lists
    // it there too, first).
    if let Some(default) = runtime_handlers
        .iter()
        .find(|h| h.name == cfg.default_runtime_handler)
    {
        let unnamed = cri::RuntimeHandler {
            name: String::new(),
            features: default.features,
        };
        runtime_handlers.insert(0, unnamed);
    }
    Ok(cri::StatusResponse {
        status: Some(cri::RuntimeStatus {
            conditions: vec![runtime_cond, network_cond],
        }),
        info,
        runtime_handlers,
        features: Some(cri::RuntimeFeatures {
            supplemental_groups_policy: true,
        }),
    })
}

fn condition(kind: &str, ok: bool, reason: &str, message: &str) -> cri::RuntimeCondition {
    cri::RuntimeCondition {
        r#type: kind.into(),
        status: ok,
        reason: reason.into(),
        message: message.into(),
    }
}

/// How long a runtime's `features` may take before it counts as "no".
const FEATURES_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether the OCI runtime `binary` knows the `rro` mount option, from
/// its `features` document (runc 1.1+, carapace-runtime; a runtime
/// without the subcommand, like Debian's crun 1.8, does not). Asked once
/// per binary: Status is polled every few seconds, and CreateContainer
/// refuses `recursive_read_only` mounts for a runtime without it.
pub fn rro_supported(binary: &Path) -> bool {
    static KNOWN: std::sync::Mutex<Vec<(PathBuf, bool)>> = std::sync::Mutex::new(Vec::new());
    let Ok(mut known) = KNOWN.lock() else {
        return false;
    };
    if let Some((_, v)) = known.iter().find(|(b, _)| b == binary) {
        return *v;
    }
    let v = features(binary).is_some_and(|f| {
        f["mountOptions"]
            .as_array()
            .is_some_and(|o| o.iter().any(|x| x == "rro"))
    });
    known.push((binary.to_path_buf(), v));
    v
}

/// The runtime's `features` JSON, if it answers in time.
fn features(binary: &Path) -> Option<serde_json::Value> {
    let child = std::process::Command::new(binary)
        .arg("features")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(FEATURES_TIMEOUT) {
        Ok(Ok(out)) if out.status.success() => serde_json::from_slice(&out.stdout).ok(),
        Ok(_) => None,
        Err(_) => {
            // Our own child, still unreaped (its waiter holds it).
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            tracing::warn!(runtime = %binary.display(), "no answer to `features`");
            None
        }
    }
}

/// Finds a runtime binary: a path as given, a bare name beside the
/// daemon's own executable first, then on PATH.
pub fn find_binary(name: &Path) -> Option<PathBuf> {
    if name.components().count() > 1 || name.is_absolute() {
        return name.is_file().then(|| name.to_path_buf());
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join(name)));
    let path = std::env::var_os("PATH").unwrap_or_default();
    beside
        .into_iter()
        .chain(std::env::split_paths(&path).map(|d| d.join(name)))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, RuntimeHandler};

    fn conds(r: &cri::StatusResponse) -> Vec<(String, bool, String)> {
        r.status
            .as_ref()
            .map(|s| {
                s.conditions
                    .iter()
                    .map(|c| (c.r#type.clone(), c.status, c.reason.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn rro_is_advertised_only_where_features_lists_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        let script = |name: &str, body: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            p
        };
        let yes = script("yes", r#"echo '{"mountOptions": ["ro", "rro"]}'"#);
        let no = script("no", r#"echo '{"mountOptions": ["ro"]}'"#);
        let old = script("old", "echo 'unknown command features' >&2; exit 1");
        let garbage = script("garbage", "echo '{'");
        assert!(rro_supported(&yes));
        assert!(!rro_supported(&no));
        assert!(!rro_supported(&old));
        assert!(!rro_supported(&garbage));
        assert!(!rro_supported(&dir.path().join("missing")));
        // Asked once: a changed answer is not seen (Status is polled).
        std::fs::write(&yes, "#!/bin/sh\nexit 1\n").expect("rewrite");
        assert!(rro_supported(&yes));
    }

    #[test]
    fn network_is_not_ready_until_a_cni_config_exists() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut c = Config::default();
        c.cni.conf_dir = dir.path().to_path_buf();
        c.runtime_handlers.insert(
            "carapace".into(),
            RuntimeHandler {
                path: "/bin/sh".into(),
                root: "/run/x".into(),
            },
        );
        let d = Daemon::new(c);
        let r = handle(&d, cri::StatusRequest { verbose: true }).expect("status");
        assert_eq!(
            conds(&r),
            [
                ("RuntimeReady".to_string(), true, String::new()),
                (
                    "NetworkReady".to_string(),
                    false,
                    "NetworkPluginNotReady".to_string()
                )
            ]
        );
        assert!(r.info.contains_key("config"));
        std::fs::write(
            dir.path().join("10-pods.conflist"),
            r#"{"name":"pods","plugins":[{"type":"bridge"}]}"#,
        )
        .expect("write");
        let r = handle(&d, cri::StatusRequest { verbose: false }).expect("status");
        assert!(conds(&r).iter().all(|c| c.1), "{:?}", conds(&r));
        assert!(r.info.is_empty());
        let names: Vec<&str> = r.runtime_handlers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            ["", "carapace"],
            "the default is listed under \"\" too"
        );
        assert_eq!(
            r.runtime_handlers[0].features,
            r.runtime_handlers[1].features
        );
    }

    #[test]
    fn a_missing_runtime_binary_is_reported() {
        let mut c = Config::default();
        c.runtime_handlers.insert(
            "carapace".into(),
            RuntimeHandler {
                path: "/no/such/runtime".into(),
                root: "/run/x".into(),
            },
        );
        let r = handle(&Daemon::new(c), Default::default()).expect("status");
        assert_eq!(
            conds(&r)[0],
            ("RuntimeReady".into(), false, "RuntimeBinaryMissing".into())
        );
    }
}
