//! `Status`: whether the runtime and the pod network are ready (kubelet
//! marks the node NotReady otherwise), with the reasons a person needs.

use std::collections::HashMap;

use k8s_cri::v1 as cri;
use tonic::Status;

use crate::daemon::Daemon;
use crate::network;
use crate::runtime_handler::{find_binary, rro_supported};

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
        // `crictl info` shows whether RuntimeDefault confines anything here.
        info.insert("apparmor".to_string(), d.apparmor.describe());
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
        info.insert("cdi".to_string(), d.cdi.describe().to_string());
        // Whether CheckpointContainer can work here (`criu check`).
        info.insert(
            "checkpoint".to_string(),
            crate::checkpoint::criu().describe(),
        );
    }
    let mut runtime_handlers: Vec<cri::RuntimeHandler> = cfg
        .runtime_handlers
        .iter()
        .map(|(name, h)| cri::RuntimeHandler {
            name: name.clone(),
            // User namespaces are made and idmapped by the daemon itself
            // (infra + idmapped mounts), so every carapace-shim handler has
            // them; a shim v2 runs its own sandbox and is not offered them.
            // `rro` only where the runtime's `features` lists it, as
            // containerd decides.
            features: Some(cri::RuntimeHandlerFeatures {
                recursive_read_only_mounts: !h.path.as_os_str().is_empty()
                    && find_binary(&h.path).is_some_and(|b| rro_supported(&b)),
                user_namespaces: h.runtime_type.is_empty(),
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
    fn network_is_not_ready_until_a_cni_config_exists() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut c = Config::default();
        c.cni.conf_dir = dir.path().to_path_buf();
        c.runtime_handlers.insert(
            "carapace".into(),
            RuntimeHandler {
                path: "/bin/sh".into(),
                root: "/run/x".into(),
                runtime_type: String::new(),
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
        assert!(
            r.info["apparmor"].starts_with("disabled"),
            "{:?}",
            r.info["apparmor"]
        );
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
                runtime_type: String::new(),
            },
        );
        let r = handle(&Daemon::new(c), Default::default()).expect("status");
        assert_eq!(
            conds(&r)[0],
            ("RuntimeReady".into(), false, "RuntimeBinaryMissing".into())
        );
    }
}
