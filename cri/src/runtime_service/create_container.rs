//! `CreateContainer`: a container in a pod, from an image and a config.

use std::sync::Arc;

use k8s_cri::v1 as cri;
use tonic::Status;

use crate::container::{self, Containers};

/// Creates the container.
pub async fn handle(
    cs: &Arc<Containers>,
    req: cri::CreateContainerRequest,
) -> Result<cri::CreateContainerResponse, Status> {
    let Some(config) = req.config else {
        return Err(Status::invalid_argument("CreateContainer without a config"));
    };
    let name = config
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    tracing::info!(pod = %req.pod_sandbox_id, container = %name, "CreateContainer");
    let id = container::create::create(cs, &req.pod_sandbox_id, config).await?;
    Ok(cri::CreateContainerResponse { container_id: id })
}
