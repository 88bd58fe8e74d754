//! `StartContainer`: run a created container's process.

use std::sync::Arc;

use k8s_cri::v1 as cri;
use tonic::Status;

use crate::container::{self, Containers};

/// Starts the container.
pub async fn handle(
    cs: &Arc<Containers>,
    req: cri::StartContainerRequest,
) -> Result<cri::StartContainerResponse, Status> {
    tracing::info!(container = %req.container_id, "StartContainer");
    container::start::start(cs, &req.container_id).await?;
    Ok(cri::StartContainerResponse {})
}
