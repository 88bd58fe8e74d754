//! `RemovePodSandbox`: stop if needed, then remove every trace of the pod.

use std::sync::Arc;

use k8s_cri::v1 as cri;
use tonic::Status;

use crate::sandbox::{self, SandboxError, Sandboxes};

/// Removes the pod. Removing a pod that is already gone succeeds, as
/// kubelet expects; an empty ID is NotFound.
pub async fn handle(
    s: &Arc<Sandboxes>,
    req: cri::RemovePodSandboxRequest,
) -> Result<cri::RemovePodSandboxResponse, Status> {
    tracing::info!(pod = %req.pod_sandbox_id, "RemovePodSandbox");
    match sandbox::remove::remove(s, &req.pod_sandbox_id).await {
        Ok(()) => Ok(cri::RemovePodSandboxResponse {}),
        Err(SandboxError::NotFound(id)) if !id.is_empty() => Ok(cri::RemovePodSandboxResponse {}),
        Err(e) => Err(e.into()),
    }
}
