//! `state`: print the OCI state JSON of one container.

use crate::error::{Error, Result};
use crate::state::StateRoot;

/// Run `state`.
pub fn run(root: &StateRoot, id: &str) -> Result<i32> {
    let (st, status) = super::load(root, id)?;
    let out =
        serde_json::to_string_pretty(&st.output(status)).map_err(|e| Error::Init(e.to_string()))?;
    println!("{out}");
    Ok(0)
}
