//! `UpdateContainerResources`: live cgroup limits (in-place pod resize).

use std::sync::Arc;

use k8s_cri::v1 as cri;
use tonic::Status;

use crate::container::{update, Containers};

/// Applies the new limits.
pub async fn handle(
    cs: &Arc<Containers>,
    req: cri::UpdateContainerResourcesRequest,
) -> Result<cri::UpdateContainerResourcesResponse, Status> {
    tracing::info!(container = %req.container_id, "UpdateContainerResources");
    let Some(linux) = req.linux else {
        return Err(Status::invalid_argument(
            "UpdateContainerResources needs linux resources",
        ));
    };
    update::update(cs, &req.container_id, &linux).await?;
    Ok(cri::UpdateContainerResourcesResponse {})
}
