//! Container and pod metrics in cAdvisor's names for the CRI calls
//! ListMetricDescriptors and ListPodSandboxMetrics: what kubelet serves on
//! /metrics/cadvisor when it takes container metrics from the runtime
//! instead of cAdvisor (the PodAndContainerStatsFromCRI feature).
//!
//! Kubelet asks for the descriptors once ([`descriptors`]), turns each
//! into a Prometheus metric with its label keys, and on every scrape asks
//! for the samples of every pod: pod-level network counters
//! ([`network`]) and, per container, when it was last seen and, while it
//! runs, its cgroup's CPU, memory, OOM kills, memory limit and task count
//! ([`container`]). The values come from the same places as the stats
//! calls' ([`crate::stats`]); the label set and units follow CRI-O
//! ([`labels`], [`container`]).
//!
//! Like the stats calls, a scrape is a snapshot: a part that cannot be
//! read is left out (and logged at debug), never failing the call every
//! pod's metrics depend on.

pub mod container;
pub mod descriptors;
pub mod labels;
pub mod network;
pub mod pod;

pub use descriptors::list as list_descriptors;
