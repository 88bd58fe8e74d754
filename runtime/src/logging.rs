//! The runtime's own log (`--log`, `--log-format text|json`). containerd's
//! go-runc and CRI-O read the last `error` entry of the JSON log to explain a
//! failed call, so errors go there as well as to stderr, in runc's shape.

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

/// Where log lines go and in which format.
#[derive(Debug, Clone)]
pub struct LogTarget {
    /// File to append to; stderr when absent.
    pub path: Option<PathBuf>,
    /// JSON lines instead of text.
    pub json: bool,
    /// Also emit debug lines.
    pub debug: bool,
}

static TARGET: OnceLock<LogTarget> = OnceLock::new();

/// Set the log target once, from the global flags.
pub fn init(t: LogTarget) {
    let _ = TARGET.set(t);
}

fn write(level: &str, msg: &str) {
    let t = TARGET.get();
    let json = t.is_some_and(|t| t.json);
    let time = crate::state::now_rfc3339();
    let line = if json {
        serde_json::json!({"level": level, "msg": msg, "time": time}).to_string()
    } else {
        format!("time=\"{time}\" level={level} msg={msg:?}")
    };
    match t.and_then(|t| t.path.as_ref()) {
        Some(p) => {
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
            {
                let _ = writeln!(f, "{line}");
            }
        }
        None => {
            if level != "error" {
                let _ = writeln!(std::io::stderr(), "{line}");
            }
        }
    }
}

/// Log a warning (clamped oom_score_adj, ignored option, failed poststop hook).
pub fn warn(msg: &str) {
    write("warning", msg);
}

/// Log a debug line when `--debug` is on.
pub fn debug(msg: &str) {
    if TARGET.get().is_some_and(|t| t.debug) {
        write("debug", msg);
    }
}

/// Log the error that ends the command (stderr gets it separately).
pub fn error(msg: &str) {
    write("error", msg);
}
