//! `Attach`: checks the request and answers with a single-use URL on the
//! streaming server, where the client joins the container's own stdio.

use std::sync::Arc;

use k8s_cri::v1 as cri;
use tonic::Status;

use crate::container::Containers;
use crate::streaming::server::StreamingServer;
use crate::streaming::tokens::Pending;

use super::exec::{check_stdio, stream_url};

/// Answers Attach with the URL to stream at.
pub fn handle(
    cs: &Arc<Containers>,
    streaming: &StreamingServer,
    req: cri::AttachRequest,
) -> Result<cri::AttachResponse, Status> {
    tracing::info!(container = %req.container_id, tty = req.tty, stdin = req.stdin, "Attach");
    let rec = cs.get(&req.container_id)?.record();
    rec.ensure_running()?;
    check_stdio(req.stdin, req.stdout, req.stderr, req.tty)?;
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
    let url = stream_url(streaming, Pending::Attach(req))?;
    Ok(cri::AttachResponse { url })
}
