//! CPU, memory and swap usage of a cgroup, in CRI terms: read with
//! `carapace_cgroups` (the same on v1 and v2) and translated the way
//! containerd and kubelet (cAdvisor) do — the working set is usage minus
//! inactive file pages, available bytes are the limit minus the working
//! set and only exist under a limit.

use carapace_cgroups::{CpuStats, Manager, MemoryStats, Stats};
use k8s_cri::v1 as cri;

use super::StatsError;

/// The node's cgroup hierarchies, resolved once for a whole stats or
/// metrics call: resolving them per cgroup re-read /proc/self/mountinfo,
/// which grows with every container's mounts, for every container listed.
pub struct Host(Option<Manager>);

impl Host {
    /// The hierarchies as mounted now. If they cannot be resolved, each
    /// cgroup is resolved on its own (and fails with the reason).
    pub fn resolve() -> Host {
        Host(Manager::new(None, "stats", false).ok())
    }

    fn manager(&self, cgroups_path: &str, id: &str) -> Result<Manager, carapace_cgroups::Error> {
        match &self.0 {
            Some(m) => m.at(Some(cgroups_path), id),
            None => Manager::new(Some(cgroups_path), id, false),
        }
    }
}

/// Reads the cgroup at `cgroups_path` (an OCI `linux.cgroupsPath`, plain
/// or systemd `slice:prefix:name`) of container or pod `id`. None when
/// there is no such cgroup (not made yet, or already removed): nothing to
/// report, not an error.
pub fn read(host: &Host, cgroups_path: &str, id: &str) -> Result<Option<Stats>, StatsError> {
    if cgroups_path.is_empty() {
        return Ok(None);
    }
    let err = |source| StatsError::Cgroup {
        id: id.to_string(),
        path: cgroups_path.to_string(),
        source,
    };
    let m = host.manager(cgroups_path, id).map_err(err)?;
    if !m.exists() {
        return Ok(None);
    }
    match m.stats() {
        Ok(s) => Ok(Some(s)),
        // Removed between the check and the read.
        Err(_) if !m.exists() => Ok(None),
        Err(e) => Err(err(e)),
    }
}

/// How many processes the cgroup at `cgroups_path` and its descendants
/// hold, counted from their `cgroup.procs`: for hosts without the pids
/// controller, whose `pids.current` is missing. None when the cgroup is
/// gone.
pub fn process_count(host: &Host, cgroups_path: &str, id: &str) -> Result<Option<u64>, StatsError> {
    let err = |source| StatsError::Cgroup {
        id: id.to_string(),
        path: cgroups_path.to_string(),
        source,
    };
    let m = host.manager(cgroups_path, id).map_err(err)?;
    match m.pids() {
        Ok(p) => Ok(Some(p.len() as u64)),
        Err(_) if !m.exists() => Ok(None),
        Err(e) => Err(err(e)),
    }
}

/// The cgroups path of a pod cgroup as recorded (`cgroup_parent`), as
/// the sandbox code resolves it.
pub fn pod_cgroups_path(cgroup_parent: &str, id: &str) -> Result<String, StatsError> {
    crate::sandbox::cgroup::pod_cgroup_path(cgroup_parent).map_err(|source| StatsError::Cgroup {
        id: id.to_string(),
        path: cgroup_parent.to_string(),
        source,
    })
}

fn v(value: u64) -> Option<cri::UInt64Value> {
    Some(cri::UInt64Value { value })
}

/// CPU usage at `timestamp`; None when the cgroup has no CPU accounting.
/// `nano_cores` is the rate from [`super::cpu`], if there is one yet.
pub fn cpu_usage(s: &CpuStats, timestamp: i64, nano_cores: Option<u64>) -> Option<cri::CpuUsage> {
    Some(cri::CpuUsage {
        timestamp,
        usage_core_nano_seconds: v(s.usage_ns?),
        usage_nano_cores: nano_cores.and_then(v),
        // Pressure (PSI, KEP 4205) is not read yet.
        psi: None,
    })
}

/// Memory usage at `timestamp`; None when the cgroup has no memory
/// accounting. `available_bytes` is left unset without a limit (as
/// cAdvisor and kubelet do; containerd's 0 would read as "none left").
pub fn memory_usage(m: &MemoryStats, timestamp: i64) -> Option<cri::MemoryUsage> {
    let usage = m.usage?;
    Some(cri::MemoryUsage {
        timestamp,
        working_set_bytes: m.working_set().and_then(v),
        available_bytes: m.available().and_then(v),
        usage_bytes: v(usage),
        rss_bytes: m.rss.and_then(v),
        page_faults: m.pgfault.and_then(v),
        major_page_faults: m.pgmajfault.and_then(v),
        psi: None,
    })
}

/// Swap usage at `timestamp`; None without swap accounting.
/// `swap_available_bytes` is the swap limit minus usage, unset without a
/// limit.
pub fn swap_usage(m: &MemoryStats, timestamp: i64) -> Option<cri::SwapUsage> {
    let used = m.swap_usage?;
    Some(cri::SwapUsage {
        timestamp,
        swap_usage_bytes: v(used),
        swap_available_bytes: m.swap_limit.map(|l| l.saturating_sub(used)).and_then(v),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> MemoryStats {
        MemoryStats {
            usage: Some(100 << 20),
            limit: Some(256 << 20),
            inactive_file: Some(30 << 20),
            rss: Some(60 << 20),
            pgfault: Some(1234),
            pgmajfault: Some(5),
            ..Default::default()
        }
    }

    #[test]
    fn memory_working_set_excludes_inactive_file_and_available_needs_a_limit() {
        let u = memory_usage(&memory(), 7).expect("memory");
        assert_eq!(u.timestamp, 7);
        assert_eq!(u.usage_bytes, v(100 << 20));
        assert_eq!(u.working_set_bytes, v(70 << 20));
        assert_eq!(u.available_bytes, v(186 << 20));
        assert_eq!(u.rss_bytes, v(60 << 20));
        assert_eq!(u.page_faults, v(1234));
        assert_eq!(u.major_page_faults, v(5));

        let unlimited = MemoryStats {
            limit: None,
            ..memory()
        };
        let u = memory_usage(&unlimited, 7).expect("memory");
        assert_eq!(u.available_bytes, None);
        assert_eq!(u.working_set_bytes, v(70 << 20));

        // Over the limit (page cache counted): floored at 0.
        let over = MemoryStats {
            usage: Some(300 << 20),
            inactive_file: Some(0),
            ..memory()
        };
        assert_eq!(
            memory_usage(&over, 7).expect("memory").available_bytes,
            v(0)
        );

        assert!(memory_usage(&MemoryStats::default(), 7).is_none());
    }

    #[test]
    fn cpu_reports_the_counter_and_the_rate_when_known() {
        let s = CpuStats {
            usage_ns: Some(5_000),
            ..Default::default()
        };
        let u = cpu_usage(&s, 9, None).expect("cpu");
        assert_eq!(u.timestamp, 9);
        assert_eq!(u.usage_core_nano_seconds, v(5_000));
        assert_eq!(u.usage_nano_cores, None);
        let u = cpu_usage(&s, 9, Some(0)).expect("cpu");
        assert_eq!(u.usage_nano_cores, v(0));
        assert!(cpu_usage(&CpuStats::default(), 9, Some(1)).is_none());
    }

    #[test]
    fn swap_only_with_swap_accounting() {
        assert!(swap_usage(&memory(), 1).is_none());
        let m = MemoryStats {
            swap_usage: Some(10),
            swap_limit: Some(100),
            ..memory()
        };
        let s = swap_usage(&m, 1).expect("swap");
        assert_eq!(s.swap_usage_bytes, v(10));
        assert_eq!(s.swap_available_bytes, v(90));
        let m = MemoryStats {
            swap_usage: Some(10),
            swap_limit: None,
            ..memory()
        };
        assert_eq!(swap_usage(&m, 1).expect("swap").swap_available_bytes, None);
    }

    #[test]
    fn pod_paths_expand_bare_slices_only() {
        assert_eq!(
            pod_cgroups_path("kubepods-besteffort-pod1.slice", "p").expect("slice"),
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice"
        );
        assert_eq!(
            pod_cgroups_path("/kubepods/besteffort/pod1", "p").expect("path"),
            "/kubepods/besteffort/pod1"
        );
    }

    #[test]
    fn no_cgroups_path_reads_nothing() {
        assert!(read(&Host::resolve(), "", "c").expect("read").is_none());
    }
}
