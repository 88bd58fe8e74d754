//! OCI hooks: run with the container state on stdin, killed when their
//! timeout passes. The hook's stderr becomes the error message.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use crate::error::{Error, Result};

/// Run `hooks` in order with `state` on stdin; the first failure stops.
/// For the stages whose failures must not stop the container's life
/// (poststart, poststop) use [`run_all`].
pub fn run(stage: &str, hooks: &[Hook], state: &serde_json::Value) -> Result<()> {
    for h in hooks {
        run_one(stage, h, state)?;
    }
    Ok(())
}

/// Run every hook of `hooks` in order with `state` on stdin, whatever
/// the others did: the runtime spec has a failed poststart or poststop
/// hook logged as a warning while the remaining hooks still run. The
/// failures, for the caller to log.
pub fn run_all(stage: &str, hooks: &[Hook], state: &serde_json::Value) -> Vec<Error> {
    hooks
        .iter()
        .filter_map(|h| run_one(stage, h, state).err())
        .collect()
}

fn run_one(stage: &str, h: &Hook, state: &serde_json::Value) -> Result<()> {
    let path = h.path();
    let fail = |why: String| Error::Hook(format!("{stage} hook {}: {why}", path.display()));
    let mut cmd = Command::new(path);
    if let Some(args) = h.args() {
        if let Some((first, rest)) = args.split_first() {
            std::os::unix::process::CommandExt::arg0(&mut cmd, first);
            cmd.args(rest);
        }
    }
    cmd.env_clear();
    for kv in h.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| fail(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine (EPIPE ignored).
        let _ = stdin.write_all(state.to_string().as_bytes());
    }
    let deadline = h
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                if status.success() {
                    return Ok(());
                }
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                return Err(fail(format!("{status}: {}", err.trim())));
            }
            Ok(None) => {}
            Err(e) => return Err(fail(e.to_string())),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail("timed out".into()));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn hook(script: &str, timeout: Option<i64>) -> Hook {
        let mut h = Hook::default();
        h.set_path(PathBuf::from("/bin/sh"));
        h.set_args(Some(vec!["sh".into(), "-c".into(), script.into()]));
        h.set_timeout(timeout);
        h
    }

    #[test]
    fn hook_gets_state_on_stdin_and_failure_carries_stderr() {
        let state = serde_json::json!({"id": "abc"});
        run("test", &[hook("grep -q '\"id\":\"abc\"'", None)], &state).expect("hook sees state");
        let e = run("test", &[hook("echo nope >&2; exit 3", None)], &state).expect_err("fails");
        assert!(e.to_string().contains("nope"), "{e}");
    }

    /// poststart and poststop: a failed hook is reported and the next
    /// one still runs (runtime-tools poststart_fail, poststop_fail).
    #[test]
    fn a_failed_hook_does_not_stop_the_rest_when_all_must_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        let second = format!("echo second >> {}", out.display());
        let hooks = [
            hook("echo first failed >&2; exit 1", None),
            hook(&second, None),
        ];
        let errors = run_all("poststart", &hooks, &serde_json::json!({}));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].to_string().contains("first failed"));
        assert_eq!(
            std::fs::read_to_string(&out).expect("second ran"),
            "second\n"
        );
        std::fs::remove_file(&out).expect("rm");
        run("prestart", &hooks, &serde_json::json!({})).expect_err("first fails");
        assert!(!out.exists(), "a prestart failure stops the rest");
    }

    #[test]
    fn hook_timeout_kills_it() {
        let e =
            run("test", &[hook("sleep 5", Some(1))], &serde_json::json!({})).expect_err("timeout");
        assert!(e.to_string().contains("timed out"), "{e}");
    }
}
