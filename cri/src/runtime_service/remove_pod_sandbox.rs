//! `RemovePodSandbox`: stop if needed, then remove every trace of the pod.

use std::sync::Arc;

use k8s_cri::v1 as cri;
use tonic::Status;

use crate::container::{self, Containers};
use crate::sandbox::{self, SandboxError};

/// Removes the pod. Removing a pod that is already gone succeeds, as
/// kubelet expects; an empty ID is NotFound.
pub async fn handle(
    cs: &Arc<Containers>,
    req: cri::RemovePodSandboxRequest,
) -> Result<cri::RemovePodSandboxResponse, Status> {
    tracing::info!(pod = %req.pod_sandbox_id, "RemovePodSandbox");
    let s = &cs.sandboxes;
    if let Ok(pod) = s.get(&req.pod_sandbox_id) {
        for c in cs.of_pod(&pod.record().id) {
            container::remove::remove(cs, &c.record().id).await?;
        }
    }
    match sandbox::remove::remove(s, &req.pod_sandbox_id).await {
        Ok(()) => Ok(cri::RemovePodSandboxResponse {}),
        Err(SandboxError::NotFound(id)) if !id.is_empty() => Ok(cri::RemovePodSandboxResponse {}),
        Err(e) => Err(e.into()),
    }
}
