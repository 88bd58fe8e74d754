//! `StopContainer`: stop signal, grace period, SIGKILL; idempotent.

use std::sync::Arc;

use k8s_cri::v1 as cri;
use tonic::Status;

use crate::container::{self, Containers};

/// Stops the container.
pub async fn handle(
    cs: &Arc<Containers>,
    req: cri::StopContainerRequest,
) -> Result<cri::StopContainerResponse, Status> {
    tracing::info!(container = %req.container_id, timeout = req.timeout, "StopContainer");
    container::stop::stop(cs, &req.container_id, req.timeout).await?;
    Ok(cri::StopContainerResponse {})
}
