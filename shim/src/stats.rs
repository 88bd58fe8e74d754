//! The Task API's `Stats`: the container's cgroup usage as containerd's
//! cgroups metrics (`io.containerd.cgroups.v1.Metrics` on cgroup v1,
//! `io.containerd.cgroups.v2.Metrics` on v2), what `ctr task metrics` and
//! containerd's CRI plugin decode.

use carapace_cgroups::{Hierarchy, Stats};
use containerd_shim_protos::cgroups::metrics as v1;
use containerd_shim_protos::cgroups_v2::metrics as v2;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;

use crate::error::{Error, Result};

/// What containerd reports for "no limit".
const NO_LIMIT: u64 = u64::MAX;

/// The type names containerd decodes the metrics by. Constants, not
/// protobuf reflection: building the descriptors costs a few hundred KiB
/// of heap that would stay in the shim for the container's life.
const V1_METRICS: &str = "io.containerd.cgroups.v1.Metrics";
const V2_METRICS: &str = "io.containerd.cgroups.v2.Metrics";

fn any_of<M: Message>(m: &M, type_url: &str) -> Result<Any> {
    let mut any = Any::new();
    any.type_url = type_url.to_string();
    any.value = m
        .write_to_bytes()
        .map_err(|e| Error::InvalidArgument(format!("encode metrics: {e}")))?;
    Ok(any)
}

/// The metrics message for `stats` read on a host of `hierarchy`.
pub fn to_any(stats: &Stats, hierarchy: Hierarchy) -> Result<Any> {
    match hierarchy {
        Hierarchy::V1 => any_of(&to_v1(stats), V1_METRICS),
        Hierarchy::V2 => any_of(&to_v2(stats), V2_METRICS),
    }
}

/// cgroup v1 metrics as containerd's cgroups library fills them.
pub fn to_v1(s: &Stats) -> v1::Metrics {
    let m = &s.memory;
    let stat = |k: &str| m.stat.get(k).copied().unwrap_or(0);
    let limit = m.limit.unwrap_or(NO_LIMIT);
    v1::Metrics {
        pids: Some(v1::PidsStat {
            current: s.pids.current.unwrap_or(0),
            limit: s.pids.limit.unwrap_or(0),
            ..Default::default()
        })
        .into(),
        cpu: Some(v1::CPUStat {
            usage: Some(v1::CPUUsage {
                total: s.cpu.usage_ns.unwrap_or(0),
                kernel: s.cpu.system_ns.unwrap_or(0),
                user: s.cpu.user_ns.unwrap_or(0),
                per_cpu: s.cpu.per_cpu_ns.clone(),
                ..Default::default()
            })
            .into(),
            throttling: Some(v1::Throttle {
                periods: s.cpu.nr_periods.unwrap_or(0),
                throttled_periods: s.cpu.nr_throttled.unwrap_or(0),
                throttled_time: s.cpu.throttled_ns.unwrap_or(0),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        })
        .into(),
        memory: Some(v1::MemoryStat {
            cache: stat("cache"),
            rss: stat("rss"),
            rss_huge: stat("rss_huge"),
            mapped_file: stat("mapped_file"),
            dirty: stat("dirty"),
            writeback: stat("writeback"),
            pg_pg_in: stat("pgpgin"),
            pg_pg_out: stat("pgpgout"),
            pg_fault: stat("pgfault"),
            pg_maj_fault: stat("pgmajfault"),
            inactive_anon: stat("inactive_anon"),
            active_anon: stat("active_anon"),
            inactive_file: stat("inactive_file"),
            active_file: stat("active_file"),
            unevictable: stat("unevictable"),
            hierarchical_memory_limit: stat("hierarchical_memory_limit"),
            hierarchical_swap_limit: stat("hierarchical_memsw_limit"),
            total_cache: stat("total_cache"),
            total_rss: stat("total_rss"),
            total_rss_huge: stat("total_rss_huge"),
            total_mapped_file: stat("total_mapped_file"),
            total_dirty: stat("total_dirty"),
            total_writeback: stat("total_writeback"),
            total_pg_pg_in: stat("total_pgpgin"),
            total_pg_pg_out: stat("total_pgpgout"),
            total_pg_fault: stat("total_pgfault"),
            total_pg_maj_fault: stat("total_pgmajfault"),
            total_inactive_anon: stat("total_inactive_anon"),
            total_active_anon: stat("total_active_anon"),
            total_inactive_file: stat("total_inactive_file"),
            total_active_file: stat("total_active_file"),
            total_unevictable: stat("total_unevictable"),
            usage: Some(v1::MemoryEntry {
                limit,
                usage: m.usage.unwrap_or(0),
                max: m.max_usage.unwrap_or(0),
                failcnt: m.failcnt.unwrap_or(0),
                ..Default::default()
            })
            .into(),
            // containerd's v1 "swap" entry is memory+swap (memsw).
            swap: Some(v1::MemoryEntry {
                limit: m.swap_limit.map_or(NO_LIMIT, |sw| limit.saturating_add(sw)),
                usage: m.usage.unwrap_or(0) + m.swap_usage.unwrap_or(0),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        })
        .into(),
        memory_oom_control: Some(v1::MemoryOomControl {
            oom_kill: m.oom_kills.unwrap_or(0),
            ..Default::default()
        })
        .into(),
        hugetlb: s
            .hugetlb
            .iter()
            .map(|h| v1::HugetlbStat {
                usage: h.usage,
                max: h.max_usage.unwrap_or(0),
                failcnt: h.failcnt.unwrap_or(0),
                pagesize: h.page_size.clone(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// cgroup v2 metrics as containerd's cgroup2 library fills them.
pub fn to_v2(s: &Stats) -> v2::Metrics {
    let m = &s.memory;
    let stat = |k: &str| m.stat.get(k).copied().unwrap_or(0);
    let us = |ns: Option<u64>| ns.unwrap_or(0) / 1000;
    v2::Metrics {
        pids: Some(v2::PidsStat {
            current: s.pids.current.unwrap_or(0),
            limit: s.pids.limit.unwrap_or(0),
            ..Default::default()
        })
        .into(),
        cpu: Some(v2::CPUStat {
            usage_usec: us(s.cpu.usage_ns),
            user_usec: us(s.cpu.user_ns),
            system_usec: us(s.cpu.system_ns),
            nr_periods: s.cpu.nr_periods.unwrap_or(0),
            nr_throttled: s.cpu.nr_throttled.unwrap_or(0),
            throttled_usec: us(s.cpu.throttled_ns),
            ..Default::default()
        })
        .into(),
        memory: Some(v2::MemoryStat {
            anon: stat("anon"),
            file: stat("file"),
            kernel_stack: stat("kernel_stack"),
            slab: stat("slab"),
            sock: stat("sock"),
            shmem: stat("shmem"),
            file_mapped: stat("file_mapped"),
            file_dirty: stat("file_dirty"),
            file_writeback: stat("file_writeback"),
            anon_thp: stat("anon_thp"),
            inactive_anon: stat("inactive_anon"),
            active_anon: stat("active_anon"),
            inactive_file: stat("inactive_file"),
            active_file: stat("active_file"),
            unevictable: stat("unevictable"),
            slab_reclaimable: stat("slab_reclaimable"),
            slab_unreclaimable: stat("slab_unreclaimable"),
            pgfault: stat("pgfault"),
            pgmajfault: stat("pgmajfault"),
            workingset_refault: stat("workingset_refault_file").max(stat("workingset_refault")),
            workingset_activate: stat("workingset_activate_file").max(stat("workingset_activate")),
            workingset_nodereclaim: stat("workingset_nodereclaim"),
            pgrefill: stat("pgrefill"),
            pgscan: stat("pgscan"),
            pgsteal: stat("pgsteal"),
            pgactivate: stat("pgactivate"),
            pgdeactivate: stat("pgdeactivate"),
            pglazyfree: stat("pglazyfree"),
            pglazyfreed: stat("pglazyfreed"),
            thp_fault_alloc: stat("thp_fault_alloc"),
            thp_collapse_alloc: stat("thp_collapse_alloc"),
            usage: m.usage.unwrap_or(0),
            usage_limit: m.limit.unwrap_or(NO_LIMIT),
            swap_usage: m.swap_usage.unwrap_or(0),
            swap_limit: m.swap_limit.unwrap_or(NO_LIMIT),
            max_usage: m.max_usage.unwrap_or(0),
            ..Default::default()
        })
        .into(),
        memory_events: Some(v2::MemoryEvents {
            max: m.failcnt.unwrap_or(0),
            oom_kill: m.oom_kills.unwrap_or(0),
            ..Default::default()
        })
        .into(),
        hugetlb: s
            .hugetlb
            .iter()
            .map(|h| v2::HugeTlbStat {
                current: h.usage,
                max: h.max_usage.unwrap_or(0),
                pagesize: h.page_size.clone(),
                failcnt: h.failcnt.unwrap_or(0),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::protobuf::MessageFull;

    #[test]
    fn metric_type_names_match_reflection() {
        assert_eq!(V1_METRICS, v1::Metrics::descriptor().full_name());
        assert_eq!(V2_METRICS, v2::Metrics::descriptor().full_name());
    }

    fn sample() -> Stats {
        let mut s = Stats::default();
        s.cpu.usage_ns = Some(5_000_000);
        s.cpu.user_ns = Some(3_000_000);
        s.cpu.system_ns = Some(2_000_000);
        s.memory.usage = Some(4096);
        s.memory.limit = Some(1 << 20);
        s.memory.swap_limit = Some(0);
        s.memory.oom_kills = Some(2);
        s.memory.stat.insert("total_rss".into(), 1024);
        s.memory.stat.insert("anon".into(), 2048);
        s.pids.current = Some(3);
        s
    }

    #[test]
    fn v1_metrics_carry_usage_limits_and_memsw() {
        let m = to_v1(&sample());
        assert_eq!(m.cpu.usage.total, 5_000_000);
        assert_eq!(m.cpu.usage.kernel, 2_000_000);
        assert_eq!(m.memory.usage.limit, 1 << 20);
        assert_eq!(m.memory.swap.limit, 1 << 20, "memsw = limit + swap 0");
        assert_eq!(m.memory.total_rss, 1024);
        assert_eq!(m.memory_oom_control.oom_kill, 2);
        assert_eq!(m.pids.current, 3);
        let none = to_v1(&Stats::default());
        assert_eq!(none.memory.usage.limit, NO_LIMIT);
    }

    #[test]
    fn v2_metrics_are_in_microseconds_and_typed_for_containerd() {
        let m = to_v2(&sample());
        assert_eq!(m.cpu.usage_usec, 5_000);
        assert_eq!(m.cpu.user_usec, 3_000);
        assert_eq!(m.memory.anon, 2048);
        assert_eq!(m.memory.usage_limit, 1 << 20);
        assert_eq!(m.memory_events.oom_kill, 2);
        let any = to_any(&sample(), Hierarchy::V2).expect("any");
        assert_eq!(any.type_url, "io.containerd.cgroups.v2.Metrics");
        let back = v2::Metrics::parse_from_bytes(&any.value).expect("decode");
        assert_eq!(back, m);
        let any = to_any(&sample(), Hierarchy::V1).expect("any");
        assert_eq!(any.type_url, "io.containerd.cgroups.v1.Metrics");
    }
}
