//! `ReopenContainerLog`: kubelet's log rotation asks for a fresh log file.

use std::sync::Arc;

use k8s_cri::v1 as cri;
use tonic::Status;

use crate::container::{logs, Containers};

/// Makes the container's shim reopen its log file.
pub async fn handle(
    cs: &Arc<Containers>,
    req: cri::ReopenContainerLogRequest,
) -> Result<cri::ReopenContainerLogResponse, Status> {
    tracing::info!(container = %req.container_id, "ReopenContainerLog");
    logs::reopen(cs, &req.container_id).await?;
    Ok(cri::ReopenContainerLogResponse {})
}
