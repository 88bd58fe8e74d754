//! `PortForward`: checks the pod and answers with a single-use URL on the
//! streaming server, where the client forwards connections to its ports.

use std::sync::Arc;

use k8s_cri::v1 as cri;
use tonic::Status;

use crate::container::Containers;
use crate::sandbox::Phase;
use crate::streaming::server::StreamingServer;
use crate::streaming::tokens::Pending;

/// Answers PortForward with the URL to stream at.
pub fn handle(
    cs: &Arc<Containers>,
    streaming: &StreamingServer,
    req: cri::PortForwardRequest,
) -> Result<cri::PortForwardResponse, Status> {
    tracing::info!(pod = %req.pod_sandbox_id, ports = ?req.port, "PortForward");
    let rec = cs.sandboxes.get(&req.pod_sandbox_id)?.record();
    if rec.phase != Phase::Ready {
        return Err(Status::failed_precondition(format!(
            "pod sandbox {} is not ready",
            rec.id
        )));
    }
    if let Some(p) = req.port.iter().find(|p| !(1..=65535).contains(*p)) {
        return Err(Status::invalid_argument(format!("invalid port {p}")));
    }
    let req = cri::PortForwardRequest {
        pod_sandbox_id: rec.id,
        ..req
    };
    let url = super::exec::stream_url(streaming, Pending::PortForward(req))?;
    Ok(cri::PortForwardResponse { url })
}
