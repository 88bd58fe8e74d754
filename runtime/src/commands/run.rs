//! `run`: create + start; in the foreground it waits for the container,
//! forwarding signals to it, deletes it (unless `--keep`) and exits with its
//! exit code, as runc does.

use crate::error::{Error, Result};
use crate::process::create::{create, CreateOptions};
use crate::process::exec::wait_forwarding;
use crate::state::StateRoot;

/// Run `run`.
pub fn run(root: &StateRoot, o: &CreateOptions, detach: bool, keep: bool) -> Result<i32> {
    if !detach {
        crate::process::exec::block_forwarded_signals();
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
    let code = wait_forwarding(nix::unistd::Pid::from_raw(st.pid))?;
    if !keep {
        super::delete::run(root, &o.id, true)?;
    }
    Ok(code)
}
