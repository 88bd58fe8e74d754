//! Resource usage of containers and pods for the CRI stats calls
//! (ContainerStats, ListContainerStats, PodSandboxStats,
//! ListPodSandboxStats): what kubelet's eviction manager, the summary API
//! and `kubectl top` are fed from.
//!
//! The daemon reads everything itself, without asking the shims: CPU and
//! memory from the container's (or pod's) cgroup through
//! `carapace_cgroups` (the same on cgroup v1 and v2), the writable layer's
//! disk usage by walking the container's overlay upper directory, and a
//! pod's network counters from `/proc/net/dev` as seen from inside its
//! pinned network namespace.
//!
//! A stats answer is a snapshot, so a part that cannot be read (a cgroup
//! that is already gone, a layer directory being removed) is left out of
//! it — every CRI usage field is optional — and logged, rather than
//! failing the whole call kubelet depends on for every pod.
//!
//! Two things need memory between calls, kept in [`Sampler`]: the previous
//! CPU sample of each container and pod (CPU *rate* is a difference of two
//! samples, [`cpu`]), and each container's last writable-layer measurement
//! (walking a layer is too slow to do on every request, [`layer`]).

pub mod cgroup;
pub mod container;
pub mod cpu;
pub mod filter;
pub mod layer;
pub mod netdev;
pub mod pod;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use crate::container::Containers;
use crate::error_kind::{ErrorKind, Kinded};

pub use cpu::{CpuSampler, Subject};
pub use layer::{LayerCache, LayerUsage};

/// Why a part of a stats answer could not be read. Most of them only
/// leave that part out (and are logged); [`StatsError::NotReady`] is the
/// one a caller sees as a gRPC status.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// Reading (or finding) a container's or pod's cgroup failed.
    #[error("cgroup {path:?} of {id}: {source}")]
    Cgroup {
        /// The container or pod ID.
        id: String,
        /// Its cgroups path as recorded.
        path: String,
        /// What the cgroup library said.
        source: carapace_cgroups::Error,
    },
    /// A system call on a file failed (walking a layer, entering a netns).
    #[error("{what} {}: {errno}", path.display())]
    Sys {
        /// What was being done.
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The kernel's answer.
        errno: nix::errno::Errno,
    },
    /// Reading a file failed.
    #[error("read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `/proc/net/dev` held a line this parser does not understand.
    #[error("parse /proc/net/dev: unexpected line {0:?}")]
    NetDev(String),
    /// A helper thread (netns reader, layer walker) died.
    #[error("stats helper thread failed: {0}")]
    Thread(String),
    /// The pod is not Ready: its infra, and so what is measured, is gone.
    #[error("pod sandbox {0} is not ready: no stats")]
    NotReady(String),
}

/// What the stats calls remember between requests: previous CPU samples
/// (for `usage_nano_cores`) and cached writable-layer usage. One per
/// daemon, shared by every stats call; entries of containers and pods
/// that no longer exist are dropped by [`Sampler::retain`], which the list
/// calls run.
#[derive(Debug, Default)]
pub struct Sampler {
    /// Previous CPU sample per container and pod.
    pub cpu: CpuSampler,
    /// Writable-layer usage per container (shared with its refresh tasks).
    pub layers: Arc<LayerCache>,
}

impl Sampler {
    /// An empty sampler: the first CPU sample of each container or pod
    /// reports no rate, the first layer request measures synchronously.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets everything about IDs not in `live` (removed containers and
    /// pods), so the sampler does not grow with the daemon's history.
    pub fn retain(&self, live: &HashSet<String>) {
        self.cpu.retain(|id| live.contains(id));
        self.layers.retain(|id| live.contains(id));
    }

    /// [`Sampler::retain`] with the containers and pods the daemon has now.
    pub fn forget_removed(&self, cs: &Containers) {
        let live: HashSet<String> = cs
            .all()
            .iter()
            .map(|c| c.record().id)
            .chain(cs.sandboxes.all().iter().map(|s| s.record().id))
            .collect();
        self.retain(&live);
    }
}

/// Runs `f` on the blocking pool: stats read many small kernel files and
/// may walk a directory tree, which must not stall the async workers.
pub async fn blocking<T, F>(f: F) -> Result<T, StatsError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StatsError::Thread(e.to_string()))
}

impl Kinded for StatsError {
    // containerd answers Unavailable for a pod that is not ready.
    fn kind(&self) -> ErrorKind {
        match self {
            StatsError::NotReady(_) => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        }
    }
}
