//! `start`: release a created container's init by reading its exec FIFO,
//! then run the poststart hooks.

use std::os::fd::AsFd;
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout};

use crate::error::{Context, Error, Result};
use crate::state::{ContainerState, StateRoot, Status, EXEC_FIFO, RESTORED};
use crate::{hooks, logging};

/// Run `start`.
pub fn run(root: &StateRoot, id: &str) -> Result<i32> {
    let _lock = root.lock(id)?;
    let (st, status) = super::load(root, id)?;
    if status != Status::Created {
        return Err(Error::WrongState {
            id: id.into(),
            status: status.to_string(),
            what: "cannot start a container that is not created".into(),
        });
    }
    let restored = root.dir(id).join(RESTORED);
    if restored.exists() {
        // CRIU left every restored process stopped: continue them all.
        for pid in st.cgroups()?.pids()? {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGCONT,
            );
        }
        std::fs::remove_file(&restored).ctx(|| format!("remove {}", restored.display()))?;
        poststart(&st);
        return Ok(0);
    }
    let path = root.dir(id).join(EXEC_FIFO);
    let fifo = nix::fcntl::open(
        &path,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(|| format!("open {}", path.display()))?;
    // The init's blocked open for writing completes now; wait for its byte,
    // checking that it is still alive (a dead writer never writes).
    loop {
        let mut pfd = [PollFd::new(fifo.as_fd(), PollFlags::POLLIN)];
        let n = nix::poll::poll(&mut pfd, PollTimeout::from(100u8))
            .or_else(|e| {
                if e == nix::errno::Errno::EINTR {
                    Ok(0)
                } else {
                    Err(e)
                }
            })
            .ctx(|| "poll the exec fifo")?;
        if n > 0 {
            let mut b = [0u8; 1];
            match nix::unistd::read(&fifo, &mut b) {
                Ok(1) => break,
                Ok(_) => {
                    return Err(Error::Init(format!(
                        "container {id} init exited before start"
                    )))
                }
                Err(nix::errno::Errno::EAGAIN) => {}
                Err(e) => return Err(e).ctx(|| "read the exec fifo"),
            }
        }
        if !st.init_alive() {
            return Err(Error::Init(format!(
                "container {id} init exited before start"
            )));
        }
    }
    // The init holds the FIFO open until its execve closes it: the end of
    // the FIFO means the program is executing (or the init died trying),
    // which is when the spec has poststart hooks run.
    loop {
        let mut pfd = [PollFd::new(fifo.as_fd(), PollFlags::POLLIN)];
        match nix::poll::poll(&mut pfd, PollTimeout::from(100u8)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e).ctx(|| "poll the exec fifo"),
        }
        let mut b = [0u8; 1];
        match nix::unistd::read(&fifo, &mut b) {
            Ok(0) => break,
            Ok(_) | Err(nix::errno::Errno::EAGAIN) => {}
            Err(e) => return Err(e).ctx(|| "read the exec fifo"),
        }
        if !st.init_alive() {
            break;
        }
    }
    std::fs::remove_file(&path).ctx(|| format!("remove {}", path.display()))?;
    poststart(&st);
    let _ = Duration::ZERO;
    Ok(0)
}

/// The spec's poststart hooks: a failing one is logged, the remaining
/// hooks run, the container runs on.
fn poststart(st: &ContainerState) {
    if let Some(h) = st
        .config
        .hooks()
        .as_ref()
        .and_then(|h| h.poststart().as_ref())
    {
        for e in hooks::run_all("poststart", h, &st.hook_state(Status::Running)) {
            logging::warn(&e.to_string());
        }
    }
}
