//! `ExecSync`: a command run to completion in a running container, its
//! output and exit code returned — kubelet's exec probes.

use std::sync::Arc;
use std::time::Duration;

use k8s_cri::v1 as cri;
use tonic::Status;

use crate::container::{exec, Containers};

/// Runs the command and answers with its output.
pub async fn handle(
    cs: &Arc<Containers>,
    req: cri::ExecSyncRequest,
) -> Result<cri::ExecSyncResponse, Status> {
    tracing::debug!(container = %req.container_id, cmd = ?req.cmd, timeout = req.timeout, "ExecSync");
    if req.timeout < 0 {
        return Err(Status::invalid_argument("timeout must not be negative"));
    }
    let timeout = Duration::from_secs(req.timeout.unsigned_abs());
    let out = exec::exec_sync(cs, &req.container_id, &req.cmd, timeout).await?;
    Ok(cri::ExecSyncResponse {
        stdout: out.stdout,
        stderr: out.stderr,
        exit_code: out.exit_code,
    })
}
