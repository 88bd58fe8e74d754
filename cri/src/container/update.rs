//! UpdateContainerResources: new cgroup limits for a container, applied
//! live through its shim (`runtime update`) and kept in its record so
//! ContainerStatus reports them — kubelet's in-place pod resize.
//!
//! As containerd does, a field left zero keeps its current value, and a
//! container that is no longer running only has its record updated.
//! Invalid values are refused before anything changes; a runtime that
//! fails part way has the old limits put back.

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use containerd_shim_protos::api;
use k8s_cri::v1 as cri;
use nix::sys::statfs::{fstatfs, PROC_SUPER_MAGIC};

use crate::shim_client::Shim;

use super::registry::Containers;
use super::spec::resources;
use super::{ContainerError, ContainerRecord, Phase};

/// `new` laid over `old`: every non-zero (non-empty) field of `new` wins.
pub fn merge(
    old: &cri::LinuxContainerResources,
    new: &cri::LinuxContainerResources,
) -> cri::LinuxContainerResources {
    fn pick<T: Clone + Default + PartialEq>(o: &T, n: &T) -> T {
        if *n == T::default() {
            o.clone()
        } else {
            n.clone()
        }
    }
    let mut unified = old.unified.clone();
    unified.extend(new.unified.clone());
    cri::LinuxContainerResources {
        cpu_period: pick(&old.cpu_period, &new.cpu_period),
        cpu_quota: pick(&old.cpu_quota, &new.cpu_quota),
        cpu_shares: pick(&old.cpu_shares, &new.cpu_shares),
        memory_limit_in_bytes: pick(&old.memory_limit_in_bytes, &new.memory_limit_in_bytes),
        oom_score_adj: pick(&old.oom_score_adj, &new.oom_score_adj),
        cpuset_cpus: pick(&old.cpuset_cpus, &new.cpuset_cpus),
        cpuset_mems: pick(&old.cpuset_mems, &new.cpuset_mems),
        hugepage_limits: pick(&old.hugepage_limits, &new.hugepage_limits),
        unified,
        memory_swap_limit_in_bytes: pick(
            &old.memory_swap_limit_in_bytes,
            &new.memory_swap_limit_in_bytes,
        ),
    }
}

/// The OCI resources `runtime update` gets: the limits only — the device
/// rules are the container's own and are not resent.
fn oci_update(r: &cri::LinuxContainerResources) -> Result<Vec<u8>, ContainerError> {
    let mut built = resources::resources(Some(r), &[], false)?.resources;
    built.set_devices(None);
    serde_json::to_vec(&built)
        .map_err(|e| ContainerError::InvalidArgument(format!("encode resources: {e}")))
}

/// pidfd_open(2): a descriptor for the process that holds `pid` now, which
/// keeps naming that process (and no later holder of the number) after it
/// exits.
fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| std::io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: pidfd_open takes a PID and flags and returns a new descriptor
    // or -1; no memory is passed.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = RawFd::try_from(r).map_err(|_| std::io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned this descriptor to us; nothing else
    // owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether the process `pidfd` names has not been reaped yet:
/// pidfd_send_signal(2) with signal 0, which sends nothing.
fn pidfd_alive(pidfd: &OwnedFd) -> std::io::Result<bool> {
    // SAFETY: signal 0 with a NULL siginfo and no flags only checks the
    // target; the descriptor stays open for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            0,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ESRCH) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// The error for a container whose process is no longer there: a
/// precondition, like every call on a container that is not running.
fn process_gone(id: &str, pid: u32) -> ContainerError {
    ContainerError::FailedPrecondition(format!(
        "container {id} is not running (its process {pid} has exited)"
    ))
}

/// `/proc/<pid>/oom_score_adj` of one process, held open so that writing
/// it reaches that process and never a later holder of the same PID
/// (runtimes cannot change oom_score_adj live, so the daemon writes it).
struct OomScoreAdj {
    id: String,
    pid: u32,
    path: String,
    file: File,
}

impl OomScoreAdj {
    /// Opens the file of container `id`'s process `pid`.
    ///
    /// The pidfd is opened first, then the file by PID, then the pidfd's
    /// process is checked to be still there: if it is, the PID was never
    /// free in between, so the open file belongs to the pidfd's process;
    /// a proc file, once open, keeps naming its process. The file must be
    /// on procfs. A process that is gone is FailedPrecondition. On kernels
    /// without pidfd_open (before 5.3) the file is opened by PID alone.
    fn open(id: &str, pid: u32) -> Result<OomScoreAdj, ContainerError> {
        let path = format!("/proc/{pid}/oom_score_adj");
        let pidfd = match pidfd_open(pid) {
            Ok(fd) => Some(fd),
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => None,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Err(process_gone(id, pid)),
            Err(e) => return Err(ContainerError::io("pidfd_open for", &path, e)),
        };
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| match e.kind() {
                ErrorKind::NotFound => process_gone(id, pid),
                _ => ContainerError::io("open", &path, e),
            })?;
        let fs = fstatfs(&file).map_err(|e| ContainerError::io("statfs", &path, e.into()))?;
        if fs.filesystem_type() != PROC_SUPER_MAGIC {
            return Err(ContainerError::io(
                "open",
                &path,
                std::io::Error::other("not on procfs"),
            ));
        }
        if let Some(pidfd) = &pidfd {
            if !pidfd_alive(pidfd)
                .map_err(|e| ContainerError::io("pidfd_send_signal for", &path, e))?
            {
                return Err(process_gone(id, pid));
            }
        }
        Ok(OomScoreAdj {
            id: id.to_string(),
            pid,
            path,
            file,
        })
    }

    /// Sets the value; a process that has exited since it was opened is
    /// FailedPrecondition, and nothing is written anywhere else.
    fn write(&mut self, adj: i64) -> Result<(), ContainerError> {
        self.file
            .write_all(adj.to_string().as_bytes())
            .map_err(|e| match e.kind() {
                ErrorKind::PermissionDenied => ContainerError::FailedPrecondition(format!(
                    "oom_score_adj {adj}: lowering it needs CAP_SYS_RESOURCE, which the daemon lacks"
                )),
                _ if e.raw_os_error() == Some(libc::ESRCH) => process_gone(&self.id, self.pid),
                _ => ContainerError::io("write", &self.path, e),
            })
    }
}

/// Confirms with the shim that `rec.pid` is still its container's
/// process. The pidfd proves only that the open proc file and the pidfd
/// name the same process; asked after they were opened, the shim (which
/// reaps the container's process) says whether that process is still the
/// container's rather than a newcomer that got a recycled PID.
async fn confirm_container_pid(shim: &Shim, rec: &ContainerRecord) -> Result<(), ContainerError> {
    let s = shim
        .state(&rec.id, "")
        .await
        .map_err(|e| ContainerError::from_shim(&rec.id, e))?;
    let live = matches!(
        s.status.enum_value(),
        Ok(api::Status::CREATED
            | api::Status::RUNNING
            | api::Status::PAUSED
            | api::Status::PAUSING)
    );
    if live && s.pid == rec.pid {
        Ok(())
    } else {
        Err(process_gone(&rec.id, rec.pid))
    }
}

/// Applies `new` to container `id`.
pub async fn update(
    cs: &Arc<Containers>,
    id: &str,
    new: &cri::LinuxContainerResources,
) -> Result<(), ContainerError> {
    let c = cs.get(id)?;
    let _op = c.op.lock().await;
    let rec = c.record();
    let old = rec
        .config
        .linux
        .as_ref()
        .and_then(|l| l.resources.clone())
        .unwrap_or_default();
    let merged = merge(&old, new);
    // Everything is checked before anything changes.
    let body = oci_update(&merged)?;
    match rec.phase {
        Phase::Created | Phase::Running => {
            let shim = Shim::connect(&rec.shim_address)
                .await
                .map_err(|e| ContainerError::from_shim(&rec.id, e))?;
            let adj_changed = merged.oom_score_adj != old.oom_score_adj && rec.pid != 0;
            // The process's file, once confirmed to be the container's, is
            // kept for putting the old value back.
            let mut oom = None;
            if adj_changed {
                let mut o = OomScoreAdj::open(&rec.id, rec.pid)?;
                confirm_container_pid(&shim, &rec).await?;
                o.write(merged.oom_score_adj)?;
                oom = Some(o);
            }
            if let Err(e) = shim.update(&rec.id, body).await {
                // Put back what may have been half applied.
                if let Ok(prev) = oci_update(&old) {
                    if let Err(e) = shim.update(&rec.id, prev).await {
                        tracing::warn!(container = %rec.id, error = %e, "restore old resources");
                    }
                }
                if let Some(o) = oom.as_mut() {
                    let _ = o.write(old.oom_score_adj);
                }
                return Err(match ContainerError::from_shim(&rec.id, e) {
                    ContainerError::Shim(e) => ContainerError::InvalidArgument(format!(
                        "update container {} resources: {e}",
                        rec.id
                    )),
                    other => other,
                });
            }
        }
        Phase::Exited => {}
        Phase::Creating | Phase::Removing => {
            return Err(ContainerError::FailedPrecondition(format!(
                "container {} is {:?}",
                rec.id, rec.phase
            )));
        }
    }
    cs.update(&c, |r| {
        r.config
            .linux
            .get_or_insert_with(Default::default)
            .resources = Some(merged);
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error_kind::Kinded;

    /// What UpdateContainerResources does minus the shim's confirmation.
    fn set_oom_score_adj(id: &str, pid: u32, adj: i64) -> Result<(), ContainerError> {
        OomScoreAdj::open(id, pid)?.write(adj)
    }

    fn read_adj(pid: u32) -> String {
        std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
            .expect("read oom_score_adj")
            .trim()
            .to_string()
    }

    #[test]
    fn oom_score_adj_reaches_a_live_process() {
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .expect("spawn sleep");
        let r = set_oom_score_adj("c1", child.id(), 500);
        let got = read_adj(child.id());
        let _ = child.kill();
        let _ = child.wait();
        r.expect("set oom_score_adj");
        assert_eq!(got, "500");
    }

    #[test]
    fn reaped_pid_is_an_error_not_a_write() {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        child.wait().expect("reap");
        match set_oom_score_adj("c1", pid, 500) {
            Err(e @ ContainerError::FailedPrecondition(_)) => {
                assert!(e.to_string().contains("has exited"), "{e}");
                assert_eq!(e.kind(), crate::error_kind::ErrorKind::FailedPrecondition);
            }
            other => panic!("expected FailedPrecondition, got {other:?}"),
        }
    }

    #[test]
    fn process_reaped_after_open_is_an_error_not_a_write() {
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .expect("spawn sleep");
        let mut oom = OomScoreAdj::open("c1", child.id()).expect("open");
        child.kill().expect("kill");
        child.wait().expect("reap");
        // The PID is free now; the open file still names the dead process.
        match oom.write(500) {
            Err(e @ ContainerError::FailedPrecondition(_)) => {
                assert!(e.to_string().contains("has exited"), "{e}")
            }
            other => panic!("expected FailedPrecondition, got {other:?}"),
        }
    }

    #[test]
    fn zero_fields_keep_their_old_values() {
        let old = cri::LinuxContainerResources {
            cpu_shares: 512,
            cpu_quota: 50_000,
            cpu_period: 100_000,
            memory_limit_in_bytes: 64 << 20,
            oom_score_adj: 100,
            cpuset_cpus: "0".into(),
            unified: [("memory.high".to_string(), "1000000".to_string())].into(),
            ..Default::default()
        };
        let new = cri::LinuxContainerResources {
            cpu_quota: 20_000,
            memory_limit_in_bytes: 128 << 20,
            unified: [("pids.max".to_string(), "10".to_string())].into(),
            ..Default::default()
        };
        let m = merge(&old, &new);
        assert_eq!(m.cpu_shares, 512);
        assert_eq!(m.cpu_quota, 20_000);
        assert_eq!(m.cpu_period, 100_000);
        assert_eq!(m.memory_limit_in_bytes, 128 << 20);
        assert_eq!(m.oom_score_adj, 100);
        assert_eq!(m.cpuset_cpus, "0");
        assert_eq!(m.unified.len(), 2);
    }

    #[test]
    fn the_update_carries_limits_but_no_device_rules() {
        let r = cri::LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            cpu_shares: 256,
            ..Default::default()
        };
        let v: serde_json::Value =
            serde_json::from_slice(&oci_update(&r).expect("update")).expect("json");
        assert_eq!(v["memory"]["limit"], 64 << 20);
        assert_eq!(v["cpu"]["shares"], 256);
        assert!(v.get("devices").is_none(), "{v}");
    }

    #[test]
    fn invalid_values_are_refused() {
        let r = cri::LinuxContainerResources {
            cpu_shares: -5,
            ..Default::default()
        };
        assert!(matches!(oci_update(&r), Err(ContainerError::Spec(_))));
        let r = cri::LinuxContainerResources {
            oom_score_adj: 5000,
            ..Default::default()
        };
        assert!(oci_update(&r).is_err());
    }
}
