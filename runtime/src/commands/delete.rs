//! `delete`: remove a stopped container (a created one is killed first, as
//! runc does; a running one only with `--force`): processes, cgroup,
//! poststop hooks, state.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::state::{self, StateRoot, Status};
use crate::{hooks, logging, syscall};

/// Run `delete`.
pub fn run(root: &StateRoot, id: &str, force: bool) -> Result<i32> {
    let _lock = root.lock(id)?;
    let st = match root.load(id) {
        Ok(st) => st,
        Err(Error::NotFound(_)) if root.dir(id).exists() => {
            // A create that died before writing any state: nothing runs.
            root.remove(id)?;
            return Ok(0);
        }
        Err(e) => return Err(e),
    };
    let status = st.status(&root.dir(id));
    match status {
        Status::Stopped => {}
        Status::Created | Status::Creating => kill_and_wait(&st, false)?,
        Status::Running | Status::Paused if force => kill_and_wait(&st, status == Status::Paused)?,
        _ => {
            return Err(Error::WrongState {
                id: id.into(),
                status: status.to_string(),
                what: "cannot delete a container that is not stopped (use --force)".into(),
            })
        }
    }
    let cg = st.cgroups()?;
    // Processes the init left behind (with a shared PID namespace or
    // none) die with the container.
    let _ = cg.kill_all(libc::SIGKILL);
    cg.destroy()?;
    if st.mounts_in_runtime_namespace() {
        crate::rootfs::unmount_below(&st.rootfs)?;
    }
    if let Some(h) = st
        .config
        .hooks()
        .as_ref()
        .and_then(|h| h.poststop().as_ref())
    {
        for e in hooks::run_all("poststop", h, &st.hook_state(Status::Stopped)) {
            logging::warn(&e.to_string());
        }
    }
    root.remove(id)?;
    Ok(0)
}

fn kill_and_wait(st: &state::ContainerState, paused: bool) -> Result<()> {
    let cg = st.cgroups()?;
    let _ = cg.kill_all(libc::SIGKILL);
    if st.init_alive() {
        if let Ok(fd) = syscall::pidfd_open(st.pid) {
            let _ = syscall::pidfd_send_signal(&fd, libc::SIGKILL);
        }
    }
    if paused {
        let _ = cg.thaw();
    }
    if !state::wait_exit(st.pid, Duration::from_secs(10)) {
        return Err(Error::Init(format!(
            "container {} init {} did not die after SIGKILL",
            st.id, st.pid
        )));
    }
    Ok(())
}
