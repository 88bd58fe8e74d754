//! `RemovePodSandbox`: stop if needed, then remove every trace of the pod.

use std::sync::Arc;

use k8s_cri::v1 as cri;
use tonic::Status;

use crate::container::Containers;

/// Removes the pod. Removing a pod that is already gone succeeds, as
/// kubelet expects; an empty ID is NotFound.
pub async fn handle(
    cs: &Arc<Containers>,
    req: cri::RemovePodSandboxRequest,
) -> Result<cri::RemovePodSandboxResponse, Status> {
    tracing::info!(pod = %req.pod_sandbox_id, "RemovePodSandbox");
    crate::pod::remove(cs, &req.pod_sandbox_id).await?;
    Ok(cri::RemovePodSandboxResponse {})
}
