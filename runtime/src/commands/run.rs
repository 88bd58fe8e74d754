//! `run`: create + start; in the foreground it waits for the container,
//! forwarding signals to it, deletes it (unless `--keep`) and exits with its
//! exit code, as runc does.

use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

use crate::error::{Error, Result};
use crate::process::create::{create, CreateOptions};
use crate::process::exec::wait_forwarding;
use crate::state::StateRoot;

static TARGET: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = TARGET.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Run `run`.
pub fn run(root: &StateRoot, o: &CreateOptions, detach: bool, keep: bool) -> Result<i32> {
    if !detach {
        nix::sys::prctl::set_child_subreaper(true)
            .map_err(|e| Error::Init(format!("PR_SET_CHILD_SUBREAPER: {e}")))?;
    }
    let st = create(root, o)?;
    if let Err(e) = super::start::run(root, &o.id) {
        let _ = super::delete::run(root, &o.id, true);
        return Err(e);
    }
    if detach {
        return Ok(0);
    }
    TARGET.store(st.pid, Ordering::Relaxed);
    let act = SigAction::new(
        SigHandler::Handler(forward),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
    ] {
        // SAFETY: the handler only calls kill with an atomic pid.
        let _ = unsafe { sigaction(s, &act) };
    }
    let code = wait_forwarding(nix::unistd::Pid::from_raw(st.pid))?;
    if !keep {
        super::delete::run(root, &o.id, true)?;
    }
    Ok(code)
}
