//! `Exec`: checks the request and answers with a single-use URL on the
//! streaming server, where the client runs the command interactively.

use std::sync::Arc;

use k8s_cri::v1 as cri;
use tonic::Status;

use crate::container::Containers;
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
    rec.ensure_running()?;
    if req.cmd.first().is_none_or(|c| c.is_empty()) {
        return Err(Status::invalid_argument("exec needs a command"));
    }
    check_stdio(req.stdin, req.stdout, req.stderr, req.tty)?;
    let req = cri::ExecRequest {
        container_id: rec.id,
        ..req
    };
    let url = stream_url(streaming, Pending::Exec(req))?;
    Ok(cri::ExecResponse { url })
}

/// The stdio rules Exec and Attach share: some stream, and no stderr with
/// a terminal (it has one output).
pub(super) fn check_stdio(
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
) -> Result<(), Status> {
    if !(stdin || stdout || stderr) {
        return Err(Status::invalid_argument(
            "one of stdin, stdout, or stderr must be set",
        ));
    }
    if tty && stderr {
        return Err(Status::invalid_argument(
            "tty and stderr cannot both be true",
        ));
    }
    Ok(())
}

/// A single-use streaming URL for `p`.
pub(super) fn stream_url(streaming: &StreamingServer, p: Pending) -> Result<String, Status> {
    streaming
        .url_for(p)
        .map_err(|e| Status::internal(format!("streaming token: {e}")))
}
