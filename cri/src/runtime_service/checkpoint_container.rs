//! `CheckpointContainer` (KEP 2008, kubelet's `/checkpoint` API): the
//! container is checked (it must exist and run), then the node: without a
//! CRIU that passes `criu check` the call is FailedPrecondition naming
//! why. Writing the checkpoint archive is not built yet, and where CRIU
//! could run the call says so (Unimplemented), never a fake success.

use std::sync::Arc;

use k8s_cri::v1 as cri;
use tonic::Status;

use crate::checkpoint::{self, Criu};
use crate::container::Containers;

/// Checks the request and the node; see the module doc.
pub async fn handle(
    cs: &Arc<Containers>,
    req: cri::CheckpointContainerRequest,
) -> Result<cri::CheckpointContainerResponse, Status> {
    tracing::info!(container = %req.container_id, location = %req.location, "CheckpointContainer");
    if req.container_id.is_empty() {
        return Err(Status::invalid_argument(
            "CheckpointContainer without a container ID",
        ));
    }
    let rec = cs.get(&req.container_id)?.record();
    rec.ensure_running()?;
    let criu = tokio::task::spawn_blocking(checkpoint::criu)
        .await
        .map_err(|e| Status::internal(format!("probe CRIU: {e}")))?;
    match criu {
        Criu::Unusable(why) => Err(Status::failed_precondition(format!(
            "cannot checkpoint container {} on this node: {why}",
            rec.id
        ))),
        Criu::Ready(version) => Err(Status::unimplemented(format!(
            "carapace does not implement CheckpointContainer yet (CRIU {version} is ready on this node)"
        ))),
    }
}
