//! `RemoveContainer`: stop if needed, then remove every trace; idempotent.

use std::sync::Arc;

use k8s_cri::v1 as cri;
use tonic::Status;

use crate::container::{self, Containers};

/// Removes the container.
pub async fn handle(
    cs: &Arc<Containers>,
    req: cri::RemoveContainerRequest,
) -> Result<cri::RemoveContainerResponse, Status> {
    tracing::info!(container = %req.container_id, "RemoveContainer");
    container::remove::remove(cs, &req.container_id).await?;
    Ok(cri::RemoveContainerResponse {})
}
