//! `ContainerStats` and `ListContainerStats`: CPU, memory and writable
//! layer usage of containers, read by the stats module off the async
//! workers.

use std::sync::Arc;

use k8s_cri::v1 as cri;
use tonic::Status;

use crate::container::{ContainerRecord, Containers};
use crate::stats::{self, container, filter, Sampler};

/// Answers ContainerStats: NotFound for an unknown ID.
pub async fn handle_stats(
    cs: &Arc<Containers>,
    sampler: &Arc<Sampler>,
    req: cri::ContainerStatsRequest,
) -> Result<cri::ContainerStatsResponse, Status> {
    let rec = cs.get(&req.container_id)?.record();
    tracing::debug!(container = %rec.id, "ContainerStats");
    let (cs, sampler) = (cs.clone(), sampler.clone());
    let stats = stats::blocking(move || {
        let ctx = container::Context::new(&cs, &sampler);
        container::stats(&ctx, &rec)
    })
    .await?;
    Ok(cri::ContainerStatsResponse { stats: Some(stats) })
}

/// Answers ListContainerStats: every container the filter selects, oldest
/// first.
pub async fn handle_list(
    cs: &Arc<Containers>,
    sampler: &Arc<Sampler>,
    req: cri::ListContainerStatsRequest,
) -> Result<cri::ListContainerStatsResponse, Status> {
    let f = req.filter.unwrap_or_default();
    let mut recs: Vec<ContainerRecord> = cs
        .all()
        .iter()
        .map(|c| c.record())
        .filter(|r| filter::container_matches(r, &f))
        .collect();
    recs.sort_by_key(|r| r.created_at);
    let (cs, sampler) = (cs.clone(), sampler.clone());
    let stats = stats::blocking(move || {
        let ctx = container::Context::new(&cs, &sampler);
        let stats = recs.iter().map(|r| container::stats(&ctx, r)).collect();
        sampler.forget_removed(&cs);
        stats
    })
    .await?;
    Ok(cri::ListContainerStatsResponse { stats })
}
