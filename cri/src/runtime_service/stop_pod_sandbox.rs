//! `StopPodSandbox`: stop the pod's processes and take it off the network.

use std::sync::Arc;

use k8s_cri::v1 as cri;
use tonic::Status;

use crate::sandbox::{self, Sandboxes};

/// Stops the pod; stopping a stopped pod succeeds.
pub async fn handle(
    s: &Arc<Sandboxes>,
    req: cri::StopPodSandboxRequest,
) -> Result<cri::StopPodSandboxResponse, Status> {
    tracing::info!(pod = %req.pod_sandbox_id, "StopPodSandbox");
    sandbox::stop::stop(s, &req.pod_sandbox_id).await?;
    Ok(cri::StopPodSandboxResponse {})
}
