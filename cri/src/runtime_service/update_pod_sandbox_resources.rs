//! `UpdatePodSandboxResources`: kubelet tells the runtime a pod's new
//! overhead and resources after an in-place resize (KEP 1287).

use std::sync::Arc;

use k8s_cri::v1 as cri;
use tonic::Status;

use crate::container::Containers;
use crate::sandbox;

/// Records (and where the pod cgroup is the daemon's, applies) the pod's
/// new resources.
pub async fn handle(
    cs: &Arc<Containers>,
    req: cri::UpdatePodSandboxResourcesRequest,
) -> Result<cri::UpdatePodSandboxResourcesResponse, Status> {
    tracing::info!(pod = %req.pod_sandbox_id, "UpdatePodSandboxResources");
    if req.overhead.is_none() && req.resources.is_none() {
        return Err(Status::invalid_argument(
            "UpdatePodSandboxResources needs overhead or resources",
        ));
    }
    sandbox::resources::update(
        &cs.sandboxes,
        &req.pod_sandbox_id,
        req.overhead.as_ref(),
        req.resources.as_ref(),
    )
    .await?;
    Ok(cri::UpdatePodSandboxResourcesResponse {})
}
