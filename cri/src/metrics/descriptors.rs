//! The table of every metric the daemon serves: name (cAdvisor's, so
//! dashboards and alerts written against kubelet's /metrics/cadvisor keep
//! working), help text, type and label keys.
//!
//! ListMetricDescriptors answers with this table, and every sample is
//! made through [`Descriptor::sample`] of its entry, so a sample's label
//! values always line up with its descriptor's keys — kubelet drops a
//! sample whose label count differs from its descriptor.

use k8s_cri::v1 as cri;

use super::labels::{BaseLabels, BASE_LABEL_KEYS};

/// Whether a metric only ever grows (CPU seconds, bytes received) or goes
/// up and down (memory in use), as Prometheus and kubelet distinguish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic since the container (or pod network) started.
    Counter,
    /// A current level.
    Gauge,
}

impl Kind {
    /// The CRI wire value.
    pub fn cri(self) -> i32 {
        match self {
            Kind::Counter => cri::MetricType::Counter as i32,
            Kind::Gauge => cri::MetricType::Gauge as i32,
        }
    }
}

/// One metric the daemon serves: its name, help, type, and the label keys
/// it has on top of [`BASE_LABEL_KEYS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// cAdvisor's metric name.
    pub name: &'static str,
    /// The Prometheus HELP text.
    pub help: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// Label keys after the base ones (`cpu`, `interface`).
    pub extra_labels: &'static [&'static str],
}

impl Descriptor {
    /// All label keys, base first: what ListMetricDescriptors declares.
    pub fn label_keys(&self) -> Vec<String> {
        BASE_LABEL_KEYS
            .iter()
            .chain(self.extra_labels)
            .map(|k| k.to_string())
            .collect()
    }

    /// The CRI descriptor.
    pub fn cri(&self) -> cri::MetricDescriptor {
        cri::MetricDescriptor {
            name: self.name.to_string(),
            help: self.help.to_string(),
            label_keys: self.label_keys(),
        }
    }

    /// A sample of this metric: `base` label values, then `extra` (one
    /// per [`Descriptor::extra_labels`], in that order), `value` taken at
    /// `timestamp` (ns since the epoch; kubelet exposes it as the
    /// sample's time).
    pub fn sample(
        &self,
        base: &BaseLabels,
        extra: &[&str],
        value: u64,
        timestamp: i64,
    ) -> cri::Metric {
        debug_assert_eq!(extra.len(), self.extra_labels.len(), "{}", self.name);
        cri::Metric {
            name: self.name.to_string(),
            timestamp,
            metric_type: self.kind.cri(),
            label_values: base
                .values()
                .iter()
                .cloned()
                .chain(extra.iter().map(|v| v.to_string()))
                .collect(),
            value: Some(cri::UInt64Value { value }),
        }
    }
}

const fn counter(name: &'static str, help: &'static str) -> Descriptor {
    Descriptor {
        name,
        help,
        kind: Kind::Counter,
        extra_labels: &[],
    }
}

const fn gauge(name: &'static str, help: &'static str) -> Descriptor {
    Descriptor {
        name,
        help,
        kind: Kind::Gauge,
        extra_labels: &[],
    }
}

/// The `cpu` label of [`CPU_USAGE`]: always `total` (cAdvisor's per-CPU
/// series are off by default in kubelet, and cgroup v2 has none).
pub const CPU_TOTAL: &str = "total";

/// The label of the network metrics: which pod interface.
const INTERFACE: &[&str] = &["interface"];

/// Total CPU time, label `cpu="total"`.
pub const CPU_USAGE: Descriptor = Descriptor {
    name: "container_cpu_usage_seconds_total",
    help: "Cumulative cpu time consumed in seconds.",
    kind: Kind::Counter,
    extra_labels: &["cpu"],
};
/// CPU time in user mode.
pub const CPU_USER: Descriptor = counter(
    "container_cpu_user_seconds_total",
    "Cumulative user cpu time consumed in seconds.",
);
/// CPU time in kernel mode.
pub const CPU_SYSTEM: Descriptor = counter(
    "container_cpu_system_seconds_total",
    "Cumulative system cpu time consumed in seconds.",
);
/// CFS periods elapsed.
pub const CPU_CFS_PERIODS: Descriptor = counter(
    "container_cpu_cfs_periods_total",
    "Number of elapsed enforcement period intervals.",
);
/// CFS periods throttled.
pub const CPU_CFS_THROTTLED_PERIODS: Descriptor = counter(
    "container_cpu_cfs_throttled_periods_total",
    "Number of throttled period intervals.",
);
/// Time throttled.
pub const CPU_CFS_THROTTLED_SECONDS: Descriptor = counter(
    "container_cpu_cfs_throttled_seconds_total",
    "Total time duration the container has been throttled.",
);

/// Memory charged to the cgroup, page cache included.
pub const MEMORY_USAGE: Descriptor = gauge(
    "container_memory_usage_bytes",
    "Current memory usage in bytes, including all memory regardless of when it was accessed.",
);
/// Usage minus inactive file pages: what kubelet evicts on.
pub const MEMORY_WORKING_SET: Descriptor = gauge(
    "container_memory_working_set_bytes",
    "Current working set in bytes.",
);
/// Anonymous memory.
pub const MEMORY_RSS: Descriptor = gauge("container_memory_rss", "Size of RSS in bytes.");
/// Page cache.
pub const MEMORY_CACHE: Descriptor = gauge(
    "container_memory_cache",
    "Number of bytes of page cache memory.",
);
/// Swap in use.
pub const MEMORY_SWAP: Descriptor =
    gauge("container_memory_swap", "Container swap usage in bytes.");
/// Peak usage (v1 always, v2 from kernel 5.19 on).
pub const MEMORY_MAX_USAGE: Descriptor = gauge(
    "container_memory_max_usage_bytes",
    "Maximum memory usage recorded in bytes.",
);
/// Times the memory limit was hit.
pub const MEMORY_FAILCNT: Descriptor = counter(
    "container_memory_failcnt",
    "Number of memory usage hits limits.",
);
/// Processes the OOM killer killed in the cgroup.
pub const OOM_EVENTS: Descriptor = counter(
    "container_oom_events_total",
    "Count of out of memory events observed for the container.",
);
/// The enforced memory limit (0: none).
pub const SPEC_MEMORY_LIMIT: Descriptor = gauge(
    "container_spec_memory_limit_bytes",
    "Memory limit for the container in bytes.",
);
/// Tasks in the cgroup (`pids.current`).
pub const PROCESSES: Descriptor = gauge(
    "container_processes",
    "Number of processes running inside the container.",
);
/// When the daemon last saw the container, in seconds since the epoch.
pub const LAST_SEEN: Descriptor = gauge(
    "container_last_seen",
    "Last time a container was seen by the exporter.",
);

/// Bytes received by a pod interface.
pub const NET_RX_BYTES: Descriptor = Descriptor {
    extra_labels: INTERFACE,
    ..counter(
        "container_network_receive_bytes_total",
        "Cumulative count of bytes received.",
    )
};
/// Packets received.
pub const NET_RX_PACKETS: Descriptor = Descriptor {
    extra_labels: INTERFACE,
    ..counter(
        "container_network_receive_packets_total",
        "Cumulative count of packets received.",
    )
};
/// Received packets dropped.
pub const NET_RX_DROPPED: Descriptor = Descriptor {
    extra_labels: INTERFACE,
    ..counter(
        "container_network_receive_packets_dropped_total",
        "Cumulative count of packets dropped while receiving.",
    )
};
/// Receive errors.
pub const NET_RX_ERRORS: Descriptor = Descriptor {
    extra_labels: INTERFACE,
    ..counter(
        "container_network_receive_errors_total",
        "Cumulative count of errors encountered while receiving.",
    )
};
/// Bytes sent by a pod interface.
pub const NET_TX_BYTES: Descriptor = Descriptor {
    extra_labels: INTERFACE,
    ..counter(
        "container_network_transmit_bytes_total",
        "Cumulative count of bytes transmitted.",
    )
};
/// Packets sent.
pub const NET_TX_PACKETS: Descriptor = Descriptor {
    extra_labels: INTERFACE,
    ..counter(
        "container_network_transmit_packets_total",
        "Cumulative count of packets transmitted.",
    )
};
/// Sent packets dropped.
pub const NET_TX_DROPPED: Descriptor = Descriptor {
    extra_labels: INTERFACE,
    ..counter(
        "container_network_transmit_packets_dropped_total",
        "Cumulative count of packets dropped while transmitting.",
    )
};
/// Transmit errors.
pub const NET_TX_ERRORS: Descriptor = Descriptor {
    extra_labels: INTERFACE,
    ..counter(
        "container_network_transmit_errors_total",
        "Cumulative count of errors encountered while transmitting.",
    )
};

/// Every metric served, in the order ListMetricDescriptors lists them.
pub const ALL: &[Descriptor] = &[
    LAST_SEEN,
    CPU_USAGE,
    CPU_USER,
    CPU_SYSTEM,
    CPU_CFS_PERIODS,
    CPU_CFS_THROTTLED_PERIODS,
    CPU_CFS_THROTTLED_SECONDS,
    MEMORY_USAGE,
    MEMORY_WORKING_SET,
    MEMORY_RSS,
    MEMORY_CACHE,
    MEMORY_SWAP,
    MEMORY_MAX_USAGE,
    MEMORY_FAILCNT,
    OOM_EVENTS,
    SPEC_MEMORY_LIMIT,
    PROCESSES,
    NET_RX_BYTES,
    NET_RX_PACKETS,
    NET_RX_DROPPED,
    NET_RX_ERRORS,
    NET_TX_BYTES,
    NET_TX_PACKETS,
    NET_TX_DROPPED,
    NET_TX_ERRORS,
];

/// The CRI descriptors of every metric served: ListMetricDescriptors'
/// answer.
pub fn list() -> Vec<cri::MetricDescriptor> {
    ALL.iter().map(Descriptor::cri).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn names_are_unique_and_cadvisor_shaped() {
        let mut seen = HashSet::new();
        for d in ALL {
            assert!(seen.insert(d.name), "{} twice", d.name);
            assert!(d.name.starts_with("container_"), "{}", d.name);
            assert!(!d.help.is_empty(), "{}", d.name);
            // Prometheus convention: counters end in _total, except the
            // names cAdvisor fixed before it (failcnt).
            if d.kind == Kind::Counter && d.name != MEMORY_FAILCNT.name {
                assert!(d.name.ends_with("_total"), "{}", d.name);
            }
        }
    }

    #[test]
    fn label_keys_are_the_base_then_the_extra() {
        assert_eq!(
            CPU_USAGE.label_keys(),
            ["id", "image", "namespace", "pod", "container", "cpu"]
        );
        assert_eq!(
            NET_RX_BYTES.label_keys(),
            ["id", "image", "namespace", "pod", "container", "interface"]
        );
        assert_eq!(
            MEMORY_WORKING_SET.label_keys(),
            ["id", "image", "namespace", "pod", "container"]
        );
        let listed = list();
        assert_eq!(listed.len(), ALL.len());
        let ws = listed
            .iter()
            .find(|d| d.name == "container_memory_working_set_bytes")
            .expect("working set listed");
        assert_eq!(ws.label_keys, MEMORY_WORKING_SET.label_keys());
    }

    #[test]
    fn samples_carry_one_value_per_label_key() {
        let base = BaseLabels::pod("p1", "ns", "web");
        let m = NET_TX_BYTES.sample(&base, &["eth0"], 42, 7);
        assert_eq!(m.name, "container_network_transmit_bytes_total");
        assert_eq!(m.metric_type, cri::MetricType::Counter as i32);
        assert_eq!(m.timestamp, 7);
        assert_eq!(m.value, Some(cri::UInt64Value { value: 42 }));
        assert_eq!(m.label_values, ["p1", "", "ns", "web", "POD", "eth0"]);
        assert_eq!(m.label_values.len(), NET_TX_BYTES.label_keys().len());
        let g = MEMORY_USAGE.sample(&base, &[], 1, 7);
        assert_eq!(g.metric_type, cri::MetricType::Gauge as i32);
    }
}
