//! The cgroup limits of CRI resources as OCI `linux.resources` (cpu,
//! memory with swap, huge pages, unified keys) and the oom_score_adj:
//! containerd's `WithResources`. Pure, and shared by the container spec
//! and the pod cgroup (RunPodSandbox, UpdatePodSandboxResources), so both
//! read a request alike.

use k8s_cri::v1 as cri;
use oci_spec::runtime::{LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxResources};

fn positive(v: i64, what: &str) -> Result<u64, String> {
    u64::try_from(v).map_err(|_| format!("{what} {v} is negative"))
}

/// The limits of `r` (0 or "" means unset, as in the CRI) and its
/// oom_score_adj; a message naming the field when one is out of range.
///
/// Memory: swap is set to the memory limit when no swap limit is given,
/// so the container does not swap (containerd does this where the swap
/// controller exists; kernels since 5.8 account swap by default, which
/// this assumes). Huge page limits are passed on as given.
pub fn linux_resources(r: &cri::LinuxContainerResources) -> Result<(LinuxResources, i32), String> {
    let mut out = LinuxResources::default();
    let mut cpu = LinuxCpu::default();
    let mut cpu_set = false;
    if r.cpu_period != 0 {
        cpu.set_period(Some(positive(r.cpu_period, "cpu_period")?));
        cpu_set = true;
    }
    if r.cpu_quota != 0 {
        cpu.set_quota(Some(r.cpu_quota));
        cpu_set = true;
    }
    if r.cpu_shares != 0 {
        cpu.set_shares(Some(positive(r.cpu_shares, "cpu_shares")?));
        cpu_set = true;
    }
    if !r.cpuset_cpus.is_empty() {
        cpu.set_cpus(Some(r.cpuset_cpus.clone()));
        cpu_set = true;
    }
    if !r.cpuset_mems.is_empty() {
        cpu.set_mems(Some(r.cpuset_mems.clone()));
        cpu_set = true;
    }
    if cpu_set {
        out.set_cpu(Some(cpu));
    }

    let mut mem = LinuxMemory::default();
    if r.memory_limit_in_bytes != 0 {
        mem.set_limit(Some(r.memory_limit_in_bytes));
        mem.set_swap(Some(r.memory_limit_in_bytes));
    }
    if r.memory_swap_limit_in_bytes != 0 {
        mem.set_swap(Some(r.memory_swap_limit_in_bytes));
    }
    if mem.limit().is_some() || mem.swap().is_some() {
        out.set_memory(Some(mem));
    }

    if !r.hugepage_limits.is_empty() {
        let limits = r
            .hugepage_limits
            .iter()
            .map(|h| {
                if h.page_size.is_empty() {
                    return Err("hugepage limit without a page size".to_string());
                }
                let limit = i64::try_from(h.limit)
                    .map_err(|_| format!("hugepage limit {} is too large", h.limit))?;
                let mut l = LinuxHugepageLimit::default();
                l.set_page_size(h.page_size.clone()).set_limit(limit);
                Ok(l)
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.set_hugepage_limits(Some(limits));
    }
    if !r.unified.is_empty() {
        out.set_unified(Some(r.unified.clone()));
    }

    let adj = i32::try_from(r.oom_score_adj)
        .ok()
        .filter(|a| (-1000..=1000).contains(a))
        .ok_or_else(|| format!("oom_score_adj {} is outside -1000..1000", r.oom_score_adj))?;
    Ok((out, adj))
}
