//! `RunPodSandbox`: a new pod with its namespaces, network and infra.

use std::sync::Arc;

use k8s_cri::v1 as cri;
use tonic::Status;

use crate::sandbox::{self, Sandboxes};

/// Validates the request and runs the pod.
pub async fn handle(
    s: &Arc<Sandboxes>,
    req: cri::RunPodSandboxRequest,
) -> Result<cri::RunPodSandboxResponse, Status> {
    let Some(config) = req.config else {
        return Err(Status::invalid_argument("RunPodSandbox without a config"));
    };
    let m = config.metadata.clone().unwrap_or_default();
    tracing::info!(pod = %m.name, namespace = %m.namespace, uid = %m.uid, attempt = m.attempt, "RunPodSandbox");
    let id = sandbox::run::run(s, config, &req.runtime_handler).await?;
    Ok(cri::RunPodSandboxResponse { pod_sandbox_id: id })
}
