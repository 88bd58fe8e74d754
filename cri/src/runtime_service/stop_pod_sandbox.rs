//! `StopPodSandbox`: stop the pod's processes and take it off the network.

use std::sync::Arc;

use k8s_cri::v1 as cri;
use tonic::Status;

use crate::container::Containers;

/// Stops the pod; stopping a stopped pod succeeds, and so does stopping a
/// pod that is gone (critest's idempotence test and kubelet expect this,
/// as containerd answers); an empty ID is NotFound.
pub async fn handle(
    cs: &Arc<Containers>,
    req: cri::StopPodSandboxRequest,
) -> Result<cri::StopPodSandboxResponse, Status> {
    tracing::info!(pod = %req.pod_sandbox_id, "StopPodSandbox");
    crate::pod::stop(cs, &req.pod_sandbox_id).await?;
    Ok(cri::StopPodSandboxResponse {})
}
