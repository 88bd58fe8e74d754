//! `list`: every container, as a table or JSON.

use crate::error::{Error, Result};
use crate::state::StateRoot;

/// Run `list`.
pub fn run(root: &StateRoot, json: bool, quiet: bool) -> Result<i32> {
    let mut rows = Vec::new();
    for id in root.list()? {
        if let Ok((st, status)) = super::load(root, &id) {
            rows.push(st.output(status));
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string(&rows).map_err(|e| Error::Init(e.to_string()))?
        );
    } else if quiet {
        for r in rows {
            println!("{}", r.id);
        }
    } else {
        println!(
            "{:<24} {:<8} {:<10} {:<40} {:<32} OWNER",
            "ID", "PID", "STATUS", "BUNDLE", "CREATED"
        );
        for r in rows {
            println!(
                "{:<24} {:<8} {:<10} {:<40} {:<32} {}",
                r.id,
                r.pid,
                r.status.to_string(),
                r.bundle.display(),
                r.created,
                if r.owner.is_empty() { "root" } else { &r.owner }
            );
        }
    }
    Ok(0)
}
