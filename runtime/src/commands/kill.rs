//! `kill`: send a signal to the init, or to every process with `--all`.

use crate::error::{Context, Error, Result};
use crate::signal;
use crate::state::{StateRoot, Status};
use crate::syscall;

/// Run `kill`.
pub fn run(root: &StateRoot, id: &str, sig: &str, all: bool) -> Result<i32> {
    let signo = signal::parse(sig)?;
    let (st, status) = super::load(root, id)?;
    if all && status == Status::Stopped {
        // As runc: processes that outlived a stopped init (no PID namespace
        // of its own) are still reachable through the cgroup.
        let cg = st.cgroups()?;
        if cg.exists() {
            cg.kill_all(signo)?;
        }
        return Ok(0);
    }
    if status == Status::Stopped || status == Status::Creating {
        return Err(Error::WrongState {
            id: id.into(),
            status: status.to_string(),
            what: "container not running".into(),
        });
    }
    if all {
        let cg = st.cgroups()?;
        cg.kill_all(signo)?;
        return Ok(0);
    }
    let fd = syscall::pidfd_open(st.pid).ctx(|| format!("open pidfd of {}", st.pid))?;
    syscall::pidfd_send_signal(&fd, signo).ctx(|| format!("send signal {sig} to {}", st.pid))?;
    if status == Status::Paused && signo == libc::SIGKILL {
        // A frozen process can not die until thawed.
        let _ = st.cgroups().and_then(|c| Ok(c.thaw()?));
    }
    Ok(0)
}
