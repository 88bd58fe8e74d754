//! `Attach`: checks the request and answers with a single-use URL on the
//! streaming server, where the client joins the container's own stdio.

use std::sync::Arc;

use k8s_cri::v1 as cri;
use tonic::Status;

use crate::container::{Containers, Phase};
use crate::streaming::server::StreamingServer;
use crate::streaming::tokens::Pending;

/// Answers Attach with the URL to stream at.
pub fn handle(
    cs: &Arc<Containers>,
    streaming: &StreamingServer,
    req: cri::AttachRequest,
) -> Result<cri::AttachResponse, Status> {
    tracing::info!(container = %req.container_id, tty = req.tty, stdin = req.stdin, "Attach");
    let rec = cs.get(&req.container_id)?.record();
    if rec.phase != Phase::Running {
        return Err(Status::failed_precondition(format!(
            "container {} is {:?}, not running",
            rec.id, rec.phase
        )));
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
    if req.stdin && !rec.config.stdin {
        return Err(Status::invalid_argument(format!(
            "container {} was created without stdin",
            rec.id
        )));
    }
    if req.tty && !rec.config.tty {
        return Err(Status::invalid_argument(format!(
            "container {} has no terminal to attach to",
            rec.id
        )));
    }
    let req = cri::AttachRequest {
        container_id: rec.id,
        ..req
    };
    let url = streaming
        .url_for(Pending::Attach(req))
        .map_err(|e| Status::internal(format!("streaming token: {e}")))?;
    Ok(cri::AttachResponse { url })
}
