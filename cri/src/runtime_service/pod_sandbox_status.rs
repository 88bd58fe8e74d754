//! `PodSandboxStatus`: what kubelet knows a pod by — state, IPs, namespace
//! modes, labels — and, verbose, the daemon's own view for debugging.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_cri::v1 as cri;
use serde_json::json;
use tonic::Status;

use crate::container::Containers;
use crate::sandbox::{Phase, SandboxRecord};

/// The CRI state of a sandbox phase.
pub fn state(p: Phase) -> cri::PodSandboxState {
    match p {
        Phase::Ready => cri::PodSandboxState::SandboxReady,
        _ => cri::PodSandboxState::SandboxNotready,
    }
}

/// The status of one sandbox record.
pub fn status(rec: &SandboxRecord) -> cri::PodSandboxStatus {
    let mut ips = rec.ips.iter();
    let network = cri::PodSandboxNetworkStatus {
        ip: ips.next().cloned().unwrap_or_default(),
        additional_ips: ips.map(|ip| cri::PodIp { ip: ip.clone() }).collect(),
    };
    cri::PodSandboxStatus {
        id: rec.id.clone(),
        metadata: rec.config.metadata.clone(),
        state: state(rec.phase) as i32,
        created_at: rec.created_at,
        network: Some(network),
        linux: Some(cri::LinuxPodSandboxStatus {
            namespaces: Some(cri::Namespace {
                options: Some(rec.ns_options()),
            }),
        }),
        labels: rec.config.labels.clone(),
        annotations: rec.config.annotations.clone(),
        runtime_handler: rec.runtime_handler.clone(),
    }
}

/// The verbose `info` map: one JSON document under "info", as containerd.
fn info(rec: &SandboxRecord) -> HashMap<String, String> {
    let doc = json!({
        "pid": rec.infra_pid,
        "processStatus": match rec.phase {
            Phase::Ready => "running",
            Phase::Creating => "created",
            _ => "stopped",
        },
        "phase": format!("{:?}", rec.phase),
        "netNamespacePath": rec.netns,
        "netNamespaceClosed": rec.netns.is_none() || !rec.network_attached,
        "runtimeHandler": rec.runtime_handler,
        "runtimeBinary": rec.runtime_binary,
        "shimAddress": rec.shim_address,
        "sandboxDir": rec.dir,
        "cgroupParent": rec.cgroup_parent,
        "infraCgroupsPath": rec.infra_cgroup,
        "cniResult": rec.cni_result,
        "exit": rec.exit,
        "config": rec.config,
    });
    HashMap::from([("info".to_string(), doc.to_string())])
}

/// Answers PodSandboxStatus, with the pod's container statuses (what
/// kubelet's evented PLEG reads).
pub fn handle(
    cs: &Arc<Containers>,
    req: cri::PodSandboxStatusRequest,
) -> Result<cri::PodSandboxStatusResponse, Status> {
    let rec = cs.sandboxes.get(&req.pod_sandbox_id)?.record();
    tracing::debug!(pod = %rec.id, "PodSandboxStatus");
    Ok(cri::PodSandboxStatusResponse {
        status: Some(status(&rec)),
        info: if req.verbose {
            info(&rec)
        } else {
            HashMap::new()
        },
        containers_statuses: super::container_status::of_pod(cs, &rec.id),
        timestamp: crate::clock::now_ns(),
    })
}
