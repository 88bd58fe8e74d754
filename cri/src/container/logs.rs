//! ReopenContainerLog: after kubelet renames a container's CRI log away to
//! rotate it, the shim (which writes the log) opens a fresh file at the
//! same path.

use std::sync::Arc;

use crate::shim_client::Shim;

use super::registry::Containers;
use super::ContainerError;

/// Reopens the running container's log file.
pub async fn reopen(cs: &Arc<Containers>, id: &str) -> Result<(), ContainerError> {
    let c = cs.get(id)?;
    let rec = c.record();
    rec.ensure_running()?;
    if rec.log_path.as_os_str().is_empty() {
        return Err(ContainerError::FailedPrecondition(format!(
            "container {} has no log file",
            rec.id
        )));
    }
    let shim = Shim::connect(&rec.shim_address)
        .await
        .map_err(|e| ContainerError::from_shim(&rec.id, e))?;
    shim.reopen_log(&rec.id, "")
        .await
        .map_err(|e| ContainerError::from_shim(&rec.id, e))
}
