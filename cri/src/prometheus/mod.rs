//! The daemon's own Prometheus metrics, served at `/metrics` on
//! `[metrics] address` for operators (kubelet's container metrics come
//! through CRI instead, see [`crate::metrics`]): every CRI call counted and
//! timed by method and status code, as go-grpc-prometheus names them for
//! containerd; pods and containers by state; the process's memory, CPU,
//! threads and file descriptors.

pub mod grpc;
pub mod process;
pub mod server;

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::container::{Containers, Phase};
use crate::sandbox::Phase as PodPhase;

/// Labels of a CRI call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// `runtime.v1.RuntimeService` or `runtime.v1.ImageService`.
    pub grpc_service: String,
    /// The method, e.g. `RunPodSandbox`.
    pub grpc_method: String,
}

/// Labels of a finished CRI call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandledLabels {
    /// See [`CallLabels`].
    pub grpc_service: String,
    /// See [`CallLabels`].
    pub grpc_method: String,
    /// The gRPC status, as Go names it (`OK`, `NotFound`, …).
    pub grpc_code: String,
}

/// A state label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    /// `ready`/`notready` for pods; `created`/`running`/`exited` for
    /// containers (those being created or removed are not counted).
    pub state: String,
}

/// Every metric of the daemon, and the registry that encodes them.
pub struct DaemonMetrics {
    registry: Registry,
    /// Calls handled, by method and status.
    pub handled: Family<HandledLabels, Counter>,
    /// Call latency until the response (for streams: until it starts).
    pub handling: Family<CallLabels, Histogram>,
    pods: Family<StateLabels, Gauge>,
    containers: Family<StateLabels, Gauge>,
    process: process::ProcessMetrics,
}

impl std::fmt::Debug for DaemonMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonMetrics").finish_non_exhaustive()
    }
}

impl DaemonMetrics {
    /// A fresh set, registered.
    pub fn new() -> Arc<DaemonMetrics> {
        let mut registry = Registry::default();
        let handled = Family::<HandledLabels, Counter>::default();
        registry.register(
            "grpc_server_handled",
            "CRI calls completed by the daemon, by method and gRPC status code",
            handled.clone(),
        );
        // 0.5 ms … ~4 min: image pulls are the slow end.
        let handling = Family::<CallLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.5, 16))
        });
        registry.register(
            "grpc_server_handling_seconds",
            "Time the daemon took to answer a CRI call (for streaming calls, until the stream began)",
            handling.clone(),
        );
        let pods = Family::<StateLabels, Gauge>::default();
        registry.register(
            "carapace_pod_sandboxes",
            "Pod sandboxes by state",
            pods.clone(),
        );
        let containers = Family::<StateLabels, Gauge>::default();
        registry.register(
            "carapace_containers",
            "Containers by state",
            containers.clone(),
        );
        let process = process::ProcessMetrics::register(&mut registry);
        Arc::new(DaemonMetrics {
            registry,
            handled,
            handling,
            pods,
            containers,
            process,
        })
    }

    /// The OpenMetrics text of every metric, with the gauges read now
    /// from `containers` and /proc.
    pub fn encode(&self, containers: &Containers) -> Result<String, std::fmt::Error> {
        let state = |s: &str| StateLabels {
            state: s.to_string(),
        };
        for s in ["ready", "notready"] {
            self.pods.get_or_create(&state(s)).set(0);
        }
        for p in containers.sandboxes.all() {
            let s = match p.record().phase {
                PodPhase::Ready => "ready",
                PodPhase::NotReady => "notready",
                PodPhase::Creating | PodPhase::Removing => continue,
            };
            self.pods.get_or_create(&state(s)).inc();
        }
        for s in ["created", "running", "exited"] {
            self.containers.get_or_create(&state(s)).set(0);
        }
        for c in containers.all() {
            let s = match c.record().phase {
                Phase::Created => "created",
                Phase::Running => "running",
                Phase::Exited => "exited",
                Phase::Creating | Phase::Removing => continue,
            };
            self.containers.get_or_create(&state(s)).inc();
        }
        self.process.sample();
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
