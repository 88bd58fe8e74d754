//! `create`: set the container up and leave its init waiting for `start`.

use crate::error::Result;
use crate::process::create::{create, CreateOptions};
use crate::state::StateRoot;

/// Run `create`.
pub fn run(root: &StateRoot, o: &CreateOptions) -> Result<i32> {
    create(root, o)?;
    Ok(0)
}
