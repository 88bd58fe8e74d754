//! `StopPodSandbox`: stop the pod's processes and take it off the network.

use std::sync::Arc;

use k8s_cri::v1 as cri;
use tonic::Status;

use crate::container::{self, Containers};
use crate::sandbox::{self, SandboxError};

/// Stops the pod; stopping a stopped pod succeeds, and so does stopping a
/// pod that is gone (critest's idempotence test and kubelet expect this,
/// as containerd answers); an empty ID is NotFound.
pub async fn handle(
    cs: &Arc<Containers>,
    req: cri::StopPodSandboxRequest,
) -> Result<cri::StopPodSandboxResponse, Status> {
    tracing::info!(pod = %req.pod_sandbox_id, "StopPodSandbox");
    let s = &cs.sandboxes;
    // The pod's containers first, without grace (as containerd).
    if let Ok(pod) = s.get(&req.pod_sandbox_id) {
        for c in cs.of_pod(&pod.record().id) {
            container::stop::stop(cs, &c.record().id, 0).await?;
        }
    }
    match sandbox::stop::stop(s, &req.pod_sandbox_id).await {
        Ok(()) => Ok(cri::StopPodSandboxResponse {}),
        Err(SandboxError::NotFound(id)) if !id.is_empty() => Ok(cri::StopPodSandboxResponse {}),
        Err(e) => Err(e.into()),
    }
}
