//! `pause` / `resume`: freeze and thaw the container's cgroup.

use crate::error::{Error, Result};
use crate::state::{StateRoot, Status};

/// Run `pause` (freeze = true) or `resume`.
pub fn run(root: &StateRoot, id: &str, freeze: bool) -> Result<i32> {
    let _lock = root.lock(id)?;
    let (st, status) = super::load(root, id)?;
    let want = if freeze {
        Status::Running
    } else {
        Status::Paused
    };
    if status != want {
        return Err(Error::WrongState {
            id: id.into(),
            status: status.to_string(),
            what: format!("cannot {} it", if freeze { "pause" } else { "resume" }),
        });
    }
    let cg = st.cgroups()?;
    if freeze {
        cg.freeze()?;
    } else {
        cg.thaw()?;
    }
    Ok(0)
}
