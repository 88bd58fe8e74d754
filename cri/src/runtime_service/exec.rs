//! `Exec`: checks the request and answers with a single-use URL on the
//! streaming server, where the client runs the command interactively.

use std::sync::Arc;

use k8s_cri::v1 as cri;
use tonic::Status;

use crate::container::{Containers, Phase};
use crate::streaming::server::StreamingServer;
use crate::streaming::tokens::Pending;

/// Answers Exec with the URL to stream at.
pub fn handle(
    cs: &Arc<Containers>,
    streaming: &StreamingServer,
    req: cri::ExecRequest,
) -> Result<cri::ExecResponse, Status> {
    tracing::info!(container = %req.container_id, cmd = ?req.cmd, tty = req.tty, "Exec");
    let rec = cs.get(&req.container_id)?.record();
    if rec.phase != Phase::Running {
        return Err(Status::failed_precondition(format!(
            "container {} is {:?}, not running",
            rec.id, rec.phase
        )));
    }
    if req.cmd.first().is_none_or(|c| c.is_empty()) {
        return Err(Status::invalid_argument("exec needs a command"));
    }
    if !(req.stdin || req.stdout || req.stderr) {
        return Err(Status::invalid_argument(
            "one of stdin, stdout, or stderr must be set",
        ));
    }
    if req.tty && req.stderr {
        return Err(Status::invalid_argument(
            "tty and stderr cannot both be true",
        ));
    }
    let req = cri::ExecRequest {
        container_id: rec.id,
        ..req
    };
    let url = streaming
        .url_for(Pending::Exec(req))
        .map_err(|e| Status::internal(format!("streaming token: {e}")))?;
    Ok(cri::ExecResponse { url })
}
