//! The metrics of one container: when it was last seen, and — while it
//! runs — CPU, memory, OOM kills, its memory limit and task count from its
//! cgroup, read with the same `carapace_cgroups` snapshot the stats calls
//! use ([`crate::stats::cgroup`]).
//!
//! CPU times are sent in whole seconds, truncated: CRI `Metric` values
//! are integers and the names say `_seconds_total`, and CRI-O does the
//! same (internal/lib/statsserver/cpu_metrics_linux.go divides the
//! cgroup's nanoseconds by `time.Second`). Kubelet exposes the value as
//! is, so sending nanoseconds would make every `rate()` a billion times
//! too large; the price is one-second resolution.

use carapace_cgroups::Stats;
use k8s_cri::v1 as cri;

use crate::clock::now_ns;
use crate::container::{ContainerRecord, Phase};
use crate::sandbox::SandboxRecord;
use crate::stats::cgroup;

use super::descriptors::{self as d, Descriptor, CPU_TOTAL};
use super::labels::BaseLabels;

const NS_PER_SECOND: u64 = 1_000_000_000;

/// Nanoseconds as whole seconds, truncated, as CRI-O sends CPU times.
pub fn whole_seconds(ns: u64) -> u64 {
    ns / NS_PER_SECOND
}

/// The cgroup metrics in snapshot `s`, labelled `base`, taken at
/// `timestamp` (ns): a metric whose file the cgroup lacks (no swap
/// accounting, no memory.peak before 5.19) is left out.
pub fn from_stats(s: &Stats, base: &BaseLabels, timestamp: i64) -> Vec<cri::Metric> {
    let mut out = Vec::new();
    let mut push = |desc: &Descriptor, extra: &[&str], value: Option<u64>| {
        if let Some(v) = value {
            out.push(desc.sample(base, extra, v, timestamp));
        }
    };
    let secs = |ns: Option<u64>| ns.map(whole_seconds);
    push(&d::CPU_USAGE, &[CPU_TOTAL], secs(s.cpu.usage_ns));
    push(&d::CPU_USER, &[], secs(s.cpu.user_ns));
    push(&d::CPU_SYSTEM, &[], secs(s.cpu.system_ns));
    push(&d::CPU_CFS_PERIODS, &[], s.cpu.nr_periods);
    push(&d::CPU_CFS_THROTTLED_PERIODS, &[], s.cpu.nr_throttled);
    push(&d::CPU_CFS_THROTTLED_SECONDS, &[], secs(s.cpu.throttled_ns));

    let m = &s.memory;
    push(&d::MEMORY_USAGE, &[], m.usage);
    push(&d::MEMORY_WORKING_SET, &[], m.working_set());
    push(&d::MEMORY_RSS, &[], m.rss);
    push(&d::MEMORY_CACHE, &[], m.cache);
    push(&d::MEMORY_SWAP, &[], m.swap_usage);
    push(&d::MEMORY_MAX_USAGE, &[], m.max_usage);
    push(&d::MEMORY_FAILCNT, &[], m.failcnt);
    push(&d::OOM_EVENTS, &[], m.oom_kills);
    // The enforced limit, so it follows UpdateContainerResources; 0 for
    // none, as cAdvisor shows an unlimited container. Only with memory
    // accounting, which `usage` stands for.
    push(
        &d::SPEC_MEMORY_LIMIT,
        &[],
        m.usage.map(|_| m.limit.unwrap_or(0)),
    );
    push(&d::PROCESSES, &[], s.pids.current);
    out
}

/// The metrics of container `rec` of pod `pod` now. Only a Running
/// container has cgroup metrics; a cgroup that is gone or cannot be read
/// leaves them out (logged at debug), never failing the caller.
pub fn collect(
    host: &cgroup::Host,
    rec: &ContainerRecord,
    pod: &SandboxRecord,
) -> cri::ContainerMetrics {
    let base = BaseLabels::of_container(rec, pod);
    let timestamp = now_ns();
    let now_secs = u64::try_from(timestamp).unwrap_or(0) / NS_PER_SECOND;
    let mut metrics = vec![d::LAST_SEEN.sample(&base, &[], now_secs, timestamp)];
    if rec.phase == Phase::Running {
        match cgroup::read(host, &rec.cgroups_path, &rec.id) {
            Ok(Some(mut s)) => {
                if s.pids.current.is_none() {
                    // No pids controller: count cgroup.procs, as the pod
                    // stats do.
                    s.pids.current = cgroup::process_count(host, &rec.cgroups_path, &rec.id)
                        .unwrap_or_else(|e| {
                            tracing::debug!(container = %rec.id, error = %e, "process count");
                            None
                        });
                }
                metrics.extend(from_stats(&s, &base, timestamp));
            }
            Ok(None) => tracing::debug!(container = %rec.id, "no cgroup: no cgroup metrics"),
            Err(e) => tracing::debug!(container = %rec.id, error = %e, "container cgroup metrics"),
        }
    }
    cri::ContainerMetrics {
        container_id: rec.id.clone(),
        metrics,
    }
}

#[cfg(test)]
mod tests {
    use carapace_cgroups::{CpuStats, MemoryStats, PidsStats};

    use super::*;

    fn value(ms: &[cri::Metric], name: &str) -> Option<u64> {
        let found: Vec<_> = ms.iter().filter(|m| m.name == name).collect();
        assert!(found.len() <= 1, "{name} more than once: {found:?}");
        found
            .first()
            .map(|m| m.value.as_ref().expect("value").value)
    }

    fn stats() -> Stats {
        Stats {
            cpu: CpuStats {
                usage_ns: Some(3_999_999_999),
                user_ns: Some(2_500_000_000),
                system_ns: Some(999_999_999),
                nr_periods: Some(10),
                nr_throttled: Some(2),
                throttled_ns: Some(1_000_000_000),
                ..Default::default()
            },
            memory: MemoryStats {
                usage: Some(100 << 20),
                max_usage: Some(120 << 20),
                limit: Some(256 << 20),
                inactive_file: Some(30 << 20),
                rss: Some(60 << 20),
                cache: Some(40 << 20),
                failcnt: Some(3),
                oom_kills: Some(1),
                ..Default::default()
            },
            pids: PidsStats {
                current: Some(4),
                limit: None,
            },
            hugetlb: vec![],
        }
    }

    #[test]
    fn cpu_times_are_whole_seconds_truncated() {
        let base = BaseLabels::pod("c", "ns", "p");
        let ms = from_stats(&stats(), &base, 1);
        assert_eq!(value(&ms, "container_cpu_usage_seconds_total"), Some(3));
        assert_eq!(value(&ms, "container_cpu_user_seconds_total"), Some(2));
        assert_eq!(value(&ms, "container_cpu_system_seconds_total"), Some(0));
        assert_eq!(
            value(&ms, "container_cpu_cfs_throttled_seconds_total"),
            Some(1)
        );
        assert_eq!(value(&ms, "container_cpu_cfs_periods_total"), Some(10));
        let cpu = ms
            .iter()
            .find(|m| m.name == "container_cpu_usage_seconds_total")
            .expect("cpu");
        assert_eq!(cpu.label_values.last().map(String::as_str), Some("total"));
        assert_eq!(cpu.metric_type, cri::MetricType::Counter as i32);
    }

    #[test]
    fn memory_metrics_follow_the_cgroup() {
        let base = BaseLabels::pod("c", "ns", "p");
        let ms = from_stats(&stats(), &base, 1);
        assert_eq!(value(&ms, "container_memory_usage_bytes"), Some(100 << 20));
        assert_eq!(
            value(&ms, "container_memory_working_set_bytes"),
            Some(70 << 20)
        );
        assert_eq!(value(&ms, "container_memory_rss"), Some(60 << 20));
        assert_eq!(value(&ms, "container_memory_cache"), Some(40 << 20));
        assert_eq!(
            value(&ms, "container_memory_max_usage_bytes"),
            Some(120 << 20)
        );
        assert_eq!(value(&ms, "container_memory_failcnt"), Some(3));
        assert_eq!(value(&ms, "container_oom_events_total"), Some(1));
        assert_eq!(
            value(&ms, "container_spec_memory_limit_bytes"),
            Some(256 << 20)
        );
        assert_eq!(value(&ms, "container_processes"), Some(4));
        // No swap accounting: no swap metric rather than a false 0.
        assert_eq!(value(&ms, "container_memory_swap"), None);
    }

    #[test]
    fn no_limit_reads_as_zero_and_missing_files_are_left_out() {
        let mut s = stats();
        s.memory.limit = None;
        s.memory.max_usage = None;
        let ms = from_stats(&s, &BaseLabels::pod("c", "ns", "p"), 1);
        assert_eq!(value(&ms, "container_spec_memory_limit_bytes"), Some(0));
        assert_eq!(value(&ms, "container_memory_max_usage_bytes"), None);
        assert!(from_stats(&Stats::default(), &BaseLabels::pod("c", "n", "p"), 1).is_empty());
    }

    #[test]
    fn every_sample_has_a_value_per_label_key() {
        let ms = from_stats(&stats(), &BaseLabels::pod("c", "ns", "p"), 5);
        for m in &ms {
            let desc = d::ALL
                .iter()
                .find(|x| x.name == m.name)
                .unwrap_or_else(|| panic!("{} has no descriptor", m.name));
            assert_eq!(m.label_values.len(), desc.label_keys().len(), "{}", m.name);
            assert_eq!(m.timestamp, 5);
        }
    }
}
