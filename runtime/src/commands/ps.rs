//! `ps`: the container's processes, as `ps` output or a JSON list of PIDs
//! (what containerd asks for).

use std::process::Command;

use crate::error::{Error, Result};
use crate::state::{StateRoot, Status};

/// Run `ps`.
pub fn run(root: &StateRoot, id: &str, json: bool, ps_args: &[String]) -> Result<i32> {
    let (st, status) = super::load(root, id)?;
    let mut pids = if status == Status::Stopped {
        Vec::new()
    } else {
        st.cgroups()?.pids()?
    };
    pids.sort_unstable();
    if json {
        println!(
            "{}",
            serde_json::to_string(&pids).map_err(|e| Error::Init(e.to_string()))?
        );
        return Ok(0);
    }
    let args: Vec<String> = if ps_args.is_empty() {
        vec!["-ef".into()]
    } else {
        ps_args.to_vec()
    };
    let out = Command::new("ps")
        .args(&args)
        .output()
        .map_err(|e| Error::Init(format!("run ps: {e}")))?;
    if !out.status.success() {
        return Err(Error::Init(format!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Ok(0);
    };
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| Error::InvalidArgument("ps output has no PID column".into()))?;
    println!("{header}");
    for l in lines {
        if let Some(p) = l
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok())
        {
            if pids.contains(&p) {
                println!("{l}");
            }
        }
    }
    Ok(0)
}
