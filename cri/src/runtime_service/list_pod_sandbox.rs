//! `ListPodSandbox`: every pod, filtered by ID (or ID prefix), state and
//! labels. Pods still being created are not listed yet.

use std::sync::Arc;

use k8s_cri::v1 as cri;
use tonic::Status;

use super::pod_sandbox_status::state;
use crate::sandbox::{Phase, SandboxRecord, Sandboxes};

/// Whether `rec` passes `f`.
pub fn matches(rec: &SandboxRecord, f: &cri::PodSandboxFilter) -> bool {
    if !f.id.is_empty() && !rec.id.starts_with(&f.id) {
        return false;
    }
    if let Some(st) = &f.state {
        if state(rec.phase) as i32 != st.state {
            return false;
        }
    }
    f.label_selector
        .iter()
        .all(|(k, v)| rec.config.labels.get(k) == Some(v))
}

/// Answers ListPodSandbox.
pub fn handle(
    s: &Arc<Sandboxes>,
    req: cri::ListPodSandboxRequest,
) -> Result<cri::ListPodSandboxResponse, Status> {
    let filter = req.filter.unwrap_or_default();
    let mut items: Vec<cri::PodSandbox> = s
        .all()
        .iter()
        .filter_map(|sb| {
            sb.with_record(|r| {
                (r.phase != Phase::Creating && matches(r, &filter)).then(|| cri::PodSandbox {
                    id: r.id.clone(),
                    metadata: r.config.metadata.clone(),
                    state: state(r.phase) as i32,
                    created_at: r.created_at,
                    labels: r.config.labels.clone(),
                    annotations: r.config.annotations.clone(),
                    runtime_handler: r.runtime_handler.clone(),
                })
            })
        })
        .collect();
    items.sort_by_key(|p| p.created_at);
    Ok(cri::ListPodSandboxResponse { items })
}
