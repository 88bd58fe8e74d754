//! One module per runc-compatible verb. Each takes the parsed options and
//! the state root and returns the process exit code.

pub mod checkpoint;
pub mod create;
pub mod delete;
pub mod exec;
pub mod features;
pub mod kill;
pub mod list;
pub mod pause;
pub mod ps;
pub mod restore;
pub mod run;
pub mod spec;
pub mod start;
pub mod state;
pub mod update;

use crate::error::Result;
use crate::state::{ContainerState, StateRoot, Status};

/// Load a container and derive its status.
pub fn load(root: &StateRoot, id: &str) -> Result<(ContainerState, Status)> {
    let st = root.load(id)?;
    let status = st.status(&root.dir(id));
    Ok((st, status))
}
