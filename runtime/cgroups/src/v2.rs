//! Writing OCI resources into a cgroup v2 directory, and the v2 freezer.

use std::path::Path;

use nix::errno::Errno;
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use crate::convert::{
    blkio_weight_to_io_weight, check_page_size, check_unified_key, io_max_lines, shares_to_weight,
    swap_v2, v2_limit,
};
use crate::devices;
use crate::error::Error;
use crate::fs;
use crate::v1::{pids_max, rdma_lines};

/// Writes a controller file; a missing file whose controller is not enabled
/// for this cgroup becomes a [`Error::ControllerMissing`] naming it.
fn write_ctl(dir: &Path, file: &str, value: &str) -> Result<(), Error> {
    match fs::write(&dir.join(file), value) {
        Err(Error::Write {
            errno: Errno::ENOENT,
            path,
            value,
        }) => {
            let controller = file.split('.').next().unwrap_or(file);
            let enabled = fs::read(&dir.join("cgroup.controllers")).ok();
            match enabled {
                Some(list) if !list.split_whitespace().any(|c| c == controller) => {
                    Err(Error::ControllerMissing {
                        controller: controller.to_string(),
                        wanted: file.to_string(),
                    })
                }
                _ => Err(Error::Write {
                    path,
                    value,
                    errno: Errno::ENOENT,
                }),
            }
        }
        other => other,
    }
}

/// Everything that can be checked before the first write.
fn validate(r: &LinuxResources) -> Result<(), Error> {
    for key in r.unified().iter().flat_map(|u| u.keys()) {
        check_unified_key(key)?;
    }
    for h in r.hugepage_limits().iter().flatten() {
        check_page_size(h.page_size())?;
    }
    if let Some(d) = r.devices() {
        devices::parse_rules(d)?;
    }
    if let Some(m) = r.memory() {
        swap_v2(m.limit(), m.swap())?;
    }
    if let Some(c) = r.cpu() {
        if c.realtime_runtime().is_some_and(|v| v != 0)
            || c.realtime_period().is_some_and(|v| v != 0)
        {
            return Err(Error::Unsupported(
                "linux.resources.cpu.realtimeRuntime/realtimePeriod are not available with cgroup v2"
                    .into(),
            ));
        }
    }
    Ok(())
}

/// Applies `r` to the cgroup v2 directory `dir`; only what is set is written.
///
/// net_cls/net_prio have no v2 counterpart and are ignored (as runc and crun
/// do); memory swappiness and disableOOMKiller have none either.
pub(crate) fn apply(dir: &Path, r: &LinuxResources) -> Result<(), Error> {
    validate(r)?;
    if let Some(c) = r.cpu() {
        for (file, value) in [("cpuset.cpus", c.cpus()), ("cpuset.mems", c.mems())] {
            if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
                write_ctl(dir, file, v)?;
            }
        }
    }
    if let Some(m) = r.memory() {
        memory(dir, m)?;
    }
    if let Some(c) = r.cpu() {
        cpu(dir, c)?;
    }
    if let Some(p) = r.pids() {
        write_ctl(dir, "pids.max", &pids_max(p.limit()))?;
    }
    if let Some(b) = r.block_io() {
        io(dir, b)?;
    }
    for h in r.hugepage_limits().iter().flatten() {
        let value = v2_limit(h.limit());
        write_ctl(dir, &format!("hugetlb.{}.max", h.page_size()), &value)?;
        let rsvd = format!("hugetlb.{}.rsvd.max", h.page_size());
        if fs::exists(&dir.join(&rsvd)) {
            write_ctl(dir, &rsvd, &value)?;
        }
    }
    if let Some(rdma) = r.rdma() {
        for line in rdma_lines(rdma) {
            write_ctl(dir, "rdma.max", &line)?;
        }
    }
    if let Some(rules) = r.devices().as_ref().filter(|d| !d.is_empty()) {
        devices::apply_device_rules_v2(dir, rules)?;
    }
    if let Some(unified) = r.unified() {
        // Sorted so the order of writes does not depend on HashMap iteration.
        let mut entries: Vec<_> = unified.iter().collect();
        entries.sort();
        for (key, value) in entries {
            write_ctl(dir, key, value)?;
        }
    }
    Ok(())
}

fn memory(dir: &Path, m: &LinuxMemory) -> Result<(), Error> {
    let limit = m.limit().filter(|&v| v != 0);
    if m.check_before_update() == Some(true) {
        if let Some(l) = limit.filter(|&l| l > 0) {
            let usage = fs::read_u64(&dir.join("memory.current"))?;
            if usage >= l as u64 {
                return Err(Error::MemoryBelowUsage {
                    path: dir.join("memory.max"),
                    limit: l,
                    usage,
                });
            }
        }
    }
    if let Some(swap) = swap_v2(m.limit(), m.swap())? {
        match write_ctl(dir, "memory.swap.max", &swap) {
            // No swap controller (kernel without swap accounting): asking for
            // no swap or unlimited swap is then already true.
            Err(Error::Write {
                errno: Errno::ENOENT,
                ..
            }) if swap == "max" || swap == "0" => {}
            other => other?,
        }
    }
    if let Some(l) = limit {
        write_ctl(dir, "memory.max", &v2_limit(l))?;
    }
    if let Some(res) = m.reservation() {
        write_ctl(dir, "memory.low", &v2_limit(res))?;
    }
    Ok(())
}

fn cpu(dir: &Path, c: &LinuxCpu) -> Result<(), Error> {
    if let Some(idle) = c.idle() {
        write_ctl(dir, "cpu.idle", &idle.to_string())?;
    }
    if let Some(s) = c.shares().filter(|&v| v != 0) {
        write_ctl(dir, "cpu.weight", &shares_to_weight(s).to_string())?;
    }
    let quota = c.quota().filter(|&v| v != 0);
    let period = c.period().filter(|&v| v != 0);
    let cpu_max = cpu_max(quota, period);
    // burst <= quota is enforced: try it first, retry after cpu.max (runc).
    let mut deferred_burst = None;
    if let Some(b) = c.burst() {
        match write_ctl(dir, "cpu.max.burst", &b.to_string()) {
            Err(Error::Write {
                errno: Errno::EINVAL,
                ..
            }) if cpu_max.is_some() => deferred_burst = Some(b),
            other => other?,
        }
    }
    if let Some(v) = cpu_max {
        write_ctl(dir, "cpu.max", &v)?;
    }
    if let Some(b) = deferred_burst {
        write_ctl(dir, "cpu.max.burst", &b.to_string())?;
    }
    Ok(())
}

/// The cpu.max value: "QUOTA [PERIOD]", with "max" for an unlimited quota.
/// None when neither is set.
pub(crate) fn cpu_max(quota: Option<i64>, period: Option<u64>) -> Option<String> {
    if quota.is_none() && period.is_none() {
        return None;
    }
    let q = match quota {
        Some(q) if q > 0 => q.to_string(),
        _ => "max".to_string(),
    };
    Some(match period {
        Some(p) => format!("{q} {p}"),
        None => q,
    })
}

fn io(dir: &Path, b: &LinuxBlockIo) -> Result<(), Error> {
    let bfq = dir.join("io.bfq.weight");
    let has_bfq = fs::exists(&bfq);
    if let Some(w) = b.weight().filter(|&w| w != 0) {
        if has_bfq {
            write_ctl(dir, "io.bfq.weight", &w.to_string())?;
        } else {
            write_ctl(
                dir,
                "io.weight",
                &format!("default {}", blkio_weight_to_io_weight(w)),
            )?;
        }
    }
    for d in b.weight_device().iter().flatten() {
        if let Some(w) = d.weight().filter(|&w| w != 0) {
            let (file, value) = if has_bfq {
                ("io.bfq.weight", u64::from(w))
            } else {
                ("io.weight", blkio_weight_to_io_weight(w))
            };
            write_ctl(dir, file, &format!("{}:{} {value}", d.major(), d.minor()))?;
        }
    }
    // leafWeight has no v2 counterpart.
    for line in io_max_lines(b) {
        write_ctl(dir, "io.max", &line)?;
    }
    Ok(())
}

/// How long a freeze or thaw may take before we give up.
const FREEZE_TIMEOUT: std::time::Duration = crate::v1::FREEZE_TIMEOUT;

/// Writes cgroup.freeze and waits for cgroup.events to report the state
/// ("frozen 1" / "frozen 0"). A freeze that times out is undone.
pub(crate) fn set_freeze(dir: &Path, frozen: bool) -> Result<(), Error> {
    let want = u64::from(frozen);
    fs::write(&dir.join("cgroup.freeze"), &want.to_string())?;
    let events = dir.join("cgroup.events");
    let start = std::time::Instant::now();
    let mut delay = std::time::Duration::from_micros(100);
    loop {
        if fs::read_keyed(&events, "frozen")? == want {
            return Ok(());
        }
        if start.elapsed() > FREEZE_TIMEOUT {
            if frozen {
                let _ = fs::write(&dir.join("cgroup.freeze"), "0");
            }
            return Err(Error::Timeout {
                path: events,
                state: if frozen { "frozen 1" } else { "frozen 0" },
                waited_ms: start.elapsed().as_millis() as u64,
            });
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(std::time::Duration::from_millis(10));
    }
}

/// Whether cgroup.events says the cgroup is frozen.
pub(crate) fn is_frozen(dir: &Path) -> Result<bool, Error> {
    Ok(fs::read_keyed(&dir.join("cgroup.events"), "frozen")? == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_max_formats_quota_and_period() {
        assert_eq!(cpu_max(None, None), None);
        assert_eq!(cpu_max(Some(50000), Some(100000)).unwrap(), "50000 100000");
        assert_eq!(cpu_max(Some(50000), None).unwrap(), "50000");
        assert_eq!(cpu_max(Some(-1), Some(100000)).unwrap(), "max 100000");
        assert_eq!(cpu_max(None, Some(100000)).unwrap(), "max 100000");
        assert_eq!(cpu_max(Some(-1), None).unwrap(), "max");
    }
}
