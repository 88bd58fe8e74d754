//! `update`: change a running container's cgroup limits live, from
//! `--resources FILE|-` (what containerd and CRI-O send) or single flags.

use std::io::Read;
use std::path::Path;

use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};

use crate::error::{Error, Result};
use crate::state::{StateRoot, Status};

/// The individual flags of `runc update`.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct UpdateFlags {
    /// Memory limit in bytes.
    #[arg(long)]
    pub memory: Option<i64>,
    /// Memory + swap limit in bytes.
    #[arg(long = "memory-swap")]
    pub memory_swap: Option<i64>,
    /// Memory soft limit in bytes.
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<i64>,
    /// CPU shares (relative weight).
    #[arg(long = "cpu-shares")]
    pub cpu_shares: Option<u64>,
    /// CPU CFS quota in microseconds.
    #[arg(long = "cpu-quota")]
    pub cpu_quota: Option<i64>,
    /// CPU CFS period in microseconds.
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<u64>,
    /// CPUs the container may use.
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use.
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Maximum number of processes.
    #[arg(long = "pids-limit")]
    pub pids_limit: Option<i64>,
}

/// Read the resources document or assemble one from flags.
pub fn resources(file: Option<&Path>, f: &UpdateFlags) -> Result<LinuxResources> {
    if let Some(p) = file {
        let mut data = Vec::new();
        if p == Path::new("-") {
            std::io::stdin()
                .read_to_end(&mut data)
                .map_err(|e| Error::InvalidArgument(format!("read stdin: {e}")))?;
        } else {
            data = std::fs::read(p)
                .map_err(|e| Error::InvalidArgument(format!("read {}: {e}", p.display())))?;
        }
        return serde_json::from_slice(&data)
            .map_err(|e| Error::InvalidArgument(format!("resources {}: {e}", p.display())));
    }
    let mut r = LinuxResources::default();
    if f.memory.is_some() || f.memory_swap.is_some() || f.memory_reservation.is_some() {
        let mut m = LinuxMemory::default();
        m.set_limit(f.memory);
        m.set_swap(f.memory_swap);
        m.set_reservation(f.memory_reservation);
        r.set_memory(Some(m));
    }
    if f.cpu_shares.is_some()
        || f.cpu_quota.is_some()
        || f.cpu_period.is_some()
        || f.cpuset_cpus.is_some()
        || f.cpuset_mems.is_some()
    {
        let mut c = LinuxCpu::default();
        c.set_shares(f.cpu_shares);
        c.set_quota(f.cpu_quota);
        c.set_period(f.cpu_period);
        c.set_cpus(f.cpuset_cpus.clone());
        c.set_mems(f.cpuset_mems.clone());
        r.set_cpu(Some(c));
    }
    if let Some(l) = f.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(l);
        r.set_pids(Some(p));
    }
    Ok(r)
}

/// Run `update`.
pub fn run(root: &StateRoot, id: &str, res: LinuxResources) -> Result<i32> {
    let _lock = root.lock(id)?;
    let (mut st, status) = super::load(root, id)?;
    if status == Status::Stopped {
        return Err(Error::WrongState {
            id: id.into(),
            status: status.to_string(),
            what: "cannot update it".into(),
        });
    }
    // Device rules are not changed by update (runc ignores them too).
    let mut apply = res.clone();
    apply.set_devices(None);
    st.cgroups()?.apply(&apply)?;
    // Remember the new limits so later reads of the config see them.
    if let Some(linux) = st.config.linux_mut() {
        let mut cur = linux.resources().clone().unwrap_or_default();
        if apply.memory().is_some() {
            cur.set_memory(*apply.memory());
        }
        if apply.cpu().is_some() {
            cur.set_cpu(apply.cpu().clone());
        }
        if apply.pids().is_some() {
            cur.set_pids(*apply.pids());
        }
        if apply.block_io().is_some() {
            cur.set_block_io(apply.block_io().clone());
        }
        if apply.hugepage_limits().is_some() {
            cur.set_hugepage_limits(apply.hugepage_limits().clone());
        }
        if apply.unified().is_some() {
            cur.set_unified(apply.unified().clone());
        }
        linux.set_resources(Some(cur));
    }
    root.save(&st)?;
    Ok(0)
}
