//! Operations on a whole pod, containers included: StopPodSandbox and
//! RemovePodSandbox end the pod's containers first, then the sandbox. The
//! orchestration lives here, in the domain layer, not in the gRPC handlers,
//! so recovery and any other caller get the same order.

use std::sync::Arc;

use crate::container::{self, ContainerError, Containers};
use crate::error_kind::{ErrorKind, Kinded};
use crate::sandbox::{self, SandboxError};

/// Why a pod operation failed: in one of its containers or in the sandbox.
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    /// Stopping or removing one of the pod's containers failed.
    #[error(transparent)]
    Container(#[from] ContainerError),
    /// Stopping or removing the sandbox itself failed.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
}

impl Kinded for PodError {
    fn kind(&self) -> ErrorKind {
        match self {
            PodError::Container(e) => e.kind(),
            PodError::Sandbox(e) => e.kind(),
        }
    }
}

/// Stops the pod `id`: its containers (no grace: kubelet stopped them
/// gracefully before), then its infra and network. Stopping an unknown pod
/// succeeds, as kubelet expects of a repeated stop.
pub async fn stop(cs: &Arc<Containers>, id: &str) -> Result<(), PodError> {
    let s = &cs.sandboxes;
    if let Ok(pod) = s.get(id) {
        for c in cs.of_pod(&pod.record().id) {
            container::stop::stop(cs, &c.record().id, 0).await?;
        }
    }
    match sandbox::stop::stop(s, id).await {
        Ok(()) => Ok(()),
        Err(SandboxError::NotFound(id)) if !id.is_empty() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes the pod `id`: its containers, then everything of the sandbox.
/// Removing an unknown pod succeeds (kubelet retries removals).
pub async fn remove(cs: &Arc<Containers>, id: &str) -> Result<(), PodError> {
    let s = &cs.sandboxes;
    if let Ok(pod) = s.get(id) {
        for c in cs.of_pod(&pod.record().id) {
            container::remove::remove(cs, &c.record().id).await?;
        }
    }
    match sandbox::remove::remove(s, id).await {
        Ok(()) => Ok(()),
        Err(SandboxError::NotFound(id)) if !id.is_empty() => Ok(()),
        Err(e) => Err(e.into()),
    }
}
