//! Writing OCI resources into cgroup v1 controllers, and the v1 freezer.

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use crate::convert::check_page_size;
use crate::devices;
use crate::error::Error;
use crate::fs;

/// Looks up the directory of a controller for the container; None when the
/// controller is not mounted.
pub(crate) type DirOf<'a> = &'a dyn Fn(&str) -> Option<PathBuf>;

fn need(dir_of: DirOf<'_>, controller: &str, wanted: &str) -> Result<PathBuf, Error> {
    dir_of(controller).ok_or_else(|| Error::ControllerMissing {
        controller: controller.to_string(),
        wanted: wanted.to_string(),
    })
}

/// Everything that can be checked before the first write, so a bad spec
/// fails without leaving half of it applied.
fn validate(r: &LinuxResources) -> Result<(), Error> {
    if r.unified().as_ref().is_some_and(|u| !u.is_empty()) {
        return Err(Error::Unsupported(
            "linux.resources.unified needs cgroup v2, but this host uses cgroup v1".into(),
        ));
    }
    for h in r.hugepage_limits().iter().flatten() {
        check_page_size(h.page_size())?;
    }
    if let Some(d) = r.devices() {
        devices::parse_rules(d)?;
    }
    if let Some(s) = r.memory().and_then(|m| m.swappiness()) {
        if s > 100 {
            return Err(Error::InvalidResources(format!(
                "memory.swappiness {s} is above 100"
            )));
        }
    }
    Ok(())
}

/// Applies `r` to the v1 hierarchies; only what is set is written.
pub(crate) fn apply(dir_of: DirOf<'_>, r: &LinuxResources) -> Result<(), Error> {
    validate(r)?;
    if let Some(cpu) = r.cpu() {
        cpuset(dir_of, cpu)?;
    }
    if let Some(rules) = r.devices().as_ref().filter(|d| !d.is_empty()) {
        devices::apply_v1(&need(dir_of, "devices", "linux.resources.devices")?, rules)?;
    }
    if let Some(m) = r.memory() {
        if memory_is_set(m) {
            memory(&need(dir_of, "memory", "linux.resources.memory")?, m)?;
        }
    }
    if let Some(cpu) = r.cpu() {
        if cpu_is_set(cpu) {
            self::cpu(&need(dir_of, "cpu", "linux.resources.cpu")?, cpu)?;
        }
    }
    if let Some(p) = r.pids() {
        let dir = need(dir_of, "pids", "linux.resources.pids")?;
        fs::write(&dir.join("pids.max"), &pids_max(p.limit()))?;
    }
    if let Some(b) = r.block_io() {
        if blkio_is_set(b) {
            blkio(&need(dir_of, "blkio", "linux.resources.blockIO")?, b)?;
        }
    }
    if let Some(limits) = r.hugepage_limits().as_ref().filter(|l| !l.is_empty()) {
        let dir = need(dir_of, "hugetlb", "linux.resources.hugepageLimits")?;
        for h in limits {
            let size = h.page_size();
            let value = if h.limit() < 0 {
                "-1".to_string()
            } else {
                h.limit().to_string()
            };
            fs::write(&dir.join(format!("hugetlb.{size}.limit_in_bytes")), &value)?;
            let rsvd = dir.join(format!("hugetlb.{size}.rsvd.limit_in_bytes"));
            if fs::exists(&rsvd) {
                fs::write(&rsvd, &value)?;
            }
        }
    }
    if let Some(net) = r.network() {
        // As for every other controller (and as runc does): a limit that
        // cannot be applied fails, rather than a container running
        // without it.
        if let Some(id) = net.class_id() {
            let dir = need(dir_of, "net_cls", "linux.resources.network.classID")?;
            fs::write(&dir.join("net_cls.classid"), &id.to_string())?;
        }
        if let Some(prios) = net.priorities().as_ref().filter(|p| !p.is_empty()) {
            let dir = need(dir_of, "net_prio", "linux.resources.network.priorities")?;
            for p in prios {
                fs::write(
                    &dir.join("net_prio.ifpriomap"),
                    &format!("{} {}", p.name(), p.priority()),
                )?;
            }
        }
    }
    if let Some(rdma) = r.rdma().as_ref().filter(|m| !m.is_empty()) {
        let dir = need(dir_of, "rdma", "linux.resources.rdma")?;
        for line in rdma_lines(rdma) {
            fs::write(&dir.join("rdma.max"), &line)?;
        }
    }
    Ok(())
}

/// The pids.max value: a positive limit, or "max" for zero and below.
pub(crate) fn pids_max(limit: i64) -> String {
    if limit > 0 {
        limit.to_string()
    } else {
        "max".into()
    }
}

/// rdma.max lines (same format on v1 and v2), sorted by device for stable output.
pub(crate) fn rdma_lines(
    rdma: &std::collections::HashMap<String, oci_spec::runtime::LinuxRdma>,
) -> Vec<String> {
    let mut devices: Vec<_> = rdma.iter().collect();
    devices.sort_by(|a, b| a.0.cmp(b.0));
    devices
        .into_iter()
        .filter_map(|(dev, limits)| {
            let mut line = dev.clone();
            if let Some(h) = limits.hca_handles() {
                line.push_str(&format!(" hca_handle={h}"));
            }
            if let Some(o) = limits.hca_objects() {
                line.push_str(&format!(" hca_object={o}"));
            }
            (line.len() > dev.len()).then_some(line)
        })
        .collect()
}

fn cpuset(dir_of: DirOf<'_>, cpu: &LinuxCpu) -> Result<(), Error> {
    for (file, value) in [("cpuset.cpus", cpu.cpus()), ("cpuset.mems", cpu.mems())] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            let dir = need(dir_of, "cpuset", "linux.resources.cpu.cpus/mems")?;
            fs::write(&dir.join(file), v)?;
        }
    }
    Ok(())
}

fn memory_is_set(m: &LinuxMemory) -> bool {
    m.limit().is_some_and(|v| v != 0)
        || m.swap().is_some_and(|v| v != 0)
        || m.reservation().is_some()
        || m.swappiness().is_some()
        || m.disable_oom_killer().is_some()
}

/// Writes memory.limit_in_bytes, turning EBUSY into an error that says why.
fn write_limit(dir: &Path, limit: i64) -> Result<(), Error> {
    let path = dir.join("memory.limit_in_bytes");
    match fs::write(&path, &limit.to_string()) {
        Err(Error::Write {
            errno: Errno::EBUSY,
            ..
        }) => {
            let usage = fs::read_u64(&dir.join("memory.usage_in_bytes"))?;
            Err(Error::MemoryBelowUsage { path, limit, usage })
        }
        other => other,
    }
}

fn memory(dir: &Path, m: &LinuxMemory) -> Result<(), Error> {
    // Zero means "unset" for limit and swap, as in runc.
    let limit = m.limit().filter(|&v| v != 0);
    let mut swap = m.swap().filter(|&v| v != 0);
    let memsw = dir.join("memory.memsw.limit_in_bytes");
    let has_memsw = fs::exists(&memsw);
    // Unlimited memory with no swap value: unlimited swap too (runc).
    if limit == Some(-1) && swap.is_none() && has_memsw {
        swap = Some(-1);
    }
    if let Some(s) = swap {
        if !has_memsw {
            if Some(s) == limit || s == -1 {
                // Nothing to limit: swap is not accounted on this kernel.
                swap = None;
            } else {
                return Err(Error::Unsupported(format!(
                    "memory.swap {s} needs swap accounting, which this kernel has off \
                     ({} is missing; boot with swapaccount=1)",
                    memsw.display()
                )));
            }
        }
    }
    if m.check_before_update() == Some(true) {
        if let Some(l) = limit.filter(|&l| l > 0) {
            let usage = fs::read_u64(&dir.join("memory.usage_in_bytes"))?;
            if usage >= l as u64 {
                return Err(Error::MemoryBelowUsage {
                    path: dir.join("memory.limit_in_bytes"),
                    limit: l,
                    usage,
                });
            }
        }
    }
    match (limit, swap) {
        (Some(l), Some(s)) => {
            // The kernel keeps limit <= memsw at every step: when memsw grows
            // past the current limit it must be written first.
            let current = fs::read_u64(&dir.join("memory.limit_in_bytes"))?;
            if s == -1 || (s > 0 && s as u64 > current) {
                fs::write(&memsw, &s.to_string())?;
                write_limit(dir, l)?;
            } else {
                write_limit(dir, l)?;
                fs::write(&memsw, &s.to_string())?;
            }
        }
        (Some(l), None) => write_limit(dir, l)?,
        (None, Some(s)) => fs::write(&memsw, &s.to_string())?,
        (None, None) => {}
    }
    if let Some(res) = m.reservation() {
        fs::write(&dir.join("memory.soft_limit_in_bytes"), &res.to_string())?;
    }
    if let Some(s) = m.swappiness() {
        fs::write(&dir.join("memory.swappiness"), &s.to_string())?;
    }
    if let Some(disable) = m.disable_oom_killer() {
        fs::write(
            &dir.join("memory.oom_control"),
            if disable { "1" } else { "0" },
        )?;
    }
    // kernel / kernelTCP are deprecated and ignored (the kernel dropped kmem limits).
    Ok(())
}

fn cpu_is_set(c: &LinuxCpu) -> bool {
    c.shares().is_some_and(|v| v != 0)
        || c.quota().is_some_and(|v| v != 0)
        || c.period().is_some_and(|v| v != 0)
        || c.burst().is_some()
        || c.idle().is_some()
        || c.realtime_runtime().is_some()
        || c.realtime_period().is_some_and(|v| v != 0)
}

/// Writes `first`; if the kernel says EINVAL and `second` is going to be
/// written, returns the value to retry after `second` (the old/new pairing
/// was transiently invalid), as runc does.
fn write_or_defer(
    path: &Path,
    value: Option<String>,
    second_set: bool,
) -> Result<Option<(PathBuf, String)>, Error> {
    let Some(v) = value else {
        return Ok(None);
    };
    match fs::write(path, &v) {
        Ok(()) => Ok(None),
        Err(Error::Write {
            errno: Errno::EINVAL,
            ..
        }) if second_set => Ok(Some((path.to_path_buf(), v))),
        Err(e) => Err(e),
    }
}

fn cpu(dir: &Path, c: &LinuxCpu) -> Result<(), Error> {
    if let Some(s) = c.shares().filter(|&v| v != 0) {
        fs::write(&dir.join("cpu.shares"), &s.to_string())?;
    }
    let quota = c.quota().filter(|&v| v != 0);
    let period = c.period().filter(|&v| v != 0).map(|v| v.to_string());
    let burst = c.burst().map(|v| v.to_string());
    let deferred_period = write_or_defer(&dir.join("cpu.cfs_period_us"), period, quota.is_some())?;
    let deferred_burst = write_or_defer(&dir.join("cpu.cfs_burst_us"), burst, quota.is_some())?;
    if let Some(q) = quota {
        fs::write(&dir.join("cpu.cfs_quota_us"), &q.to_string())?;
    }
    for (path, v) in deferred_period.into_iter().chain(deferred_burst) {
        fs::write(&path, &v)?;
    }

    let runtime = c.realtime_runtime();
    let rt_period = c
        .realtime_period()
        .filter(|&v| v != 0)
        .map(|v| v.to_string());
    let deferred = write_or_defer(&dir.join("cpu.rt_period_us"), rt_period, runtime.is_some())?;
    if let Some(rt) = runtime {
        fs::write(&dir.join("cpu.rt_runtime_us"), &rt.to_string())?;
    }
    if let Some((path, v)) = deferred {
        fs::write(&path, &v)?;
    }
    if let Some(idle) = c.idle() {
        fs::write(&dir.join("cpu.idle"), &idle.to_string())?;
    }
    Ok(())
}

fn blkio_is_set(b: &LinuxBlockIo) -> bool {
    b.weight().is_some_and(|w| w != 0)
        || b.leaf_weight().is_some_and(|w| w != 0)
        || b.weight_device().as_ref().is_some_and(|d| !d.is_empty())
        || [
            b.throttle_read_bps_device(),
            b.throttle_write_bps_device(),
            b.throttle_read_iops_device(),
            b.throttle_write_iops_device(),
        ]
        .iter()
        .any(|l| l.as_ref().is_some_and(|l| !l.is_empty()))
}

fn blkio(dir: &Path, b: &LinuxBlockIo) -> Result<(), Error> {
    // CFQ exposes blkio.weight; with BFQ only the bfq-prefixed files exist.
    let (weight_file, weight_device_file) = if fs::exists(&dir.join("blkio.weight")) {
        ("blkio.weight", "blkio.weight_device")
    } else {
        ("blkio.bfq.weight", "blkio.bfq.weight_device")
    };
    if let Some(w) = b.weight().filter(|&w| w != 0) {
        fs::write(&dir.join(weight_file), &w.to_string())?;
    }
    if let Some(w) = b.leaf_weight().filter(|&w| w != 0) {
        fs::write(&dir.join("blkio.leaf_weight"), &w.to_string())?;
    }
    for d in b.weight_device().iter().flatten() {
        if let Some(w) = d.weight().filter(|&w| w != 0) {
            fs::write(
                &dir.join(weight_device_file),
                &format!("{}:{} {w}", d.major(), d.minor()),
            )?;
        }
        if let Some(w) = d.leaf_weight().filter(|&w| w != 0) {
            fs::write(
                &dir.join("blkio.leaf_weight_device"),
                &format!("{}:{} {w}", d.major(), d.minor()),
            )?;
        }
    }
    for (file, list) in [
        (
            "blkio.throttle.read_bps_device",
            b.throttle_read_bps_device(),
        ),
        (
            "blkio.throttle.write_bps_device",
            b.throttle_write_bps_device(),
        ),
        (
            "blkio.throttle.read_iops_device",
            b.throttle_read_iops_device(),
        ),
        (
            "blkio.throttle.write_iops_device",
            b.throttle_write_iops_device(),
        ),
    ] {
        for d in list.iter().flatten() {
            fs::write(
                &dir.join(file),
                &format!("{}:{} {}", d.major(), d.minor(), d.rate()),
            )?;
        }
    }
    Ok(())
}

/// How long a freeze or thaw may take before we give up (processes stuck in
/// uninterruptible sleep can keep a cgroup in FREEZING).
pub(crate) const FREEZE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Sets freezer.state and waits until the kernel reports it. While freezing,
/// the request is re-issued now and then (runc does the same: a task forked
/// during the freeze can leave the cgroup in FREEZING). On timeout the cgroup
/// is thawed again so it is not left half-frozen.
pub(crate) fn set_freezer(dir: &Path, frozen: bool) -> Result<(), Error> {
    let state_file = dir.join("freezer.state");
    let want = if frozen { "FROZEN" } else { "THAWED" };
    let start = std::time::Instant::now();
    let mut delay = std::time::Duration::from_micros(100);
    let mut round = 0u32;
    loop {
        if round % 20 == 0 {
            fs::write(&state_file, want)?;
        }
        round += 1;
        if fs::read_trimmed(&state_file)? == want {
            return Ok(());
        }
        if start.elapsed() > FREEZE_TIMEOUT {
            if frozen {
                let _ = fs::write(&state_file, "THAWED");
            }
            return Err(Error::Timeout {
                path: state_file,
                state: want,
                waited_ms: start.elapsed().as_millis() as u64,
            });
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(std::time::Duration::from_millis(10));
    }
}

/// Whether freezer.state says FROZEN.
pub(crate) fn is_frozen(dir: &Path) -> Result<bool, Error> {
    Ok(fs::read_trimmed(&dir.join("freezer.state"))? == "FROZEN")
}
