//! ExecSync: runs a command in a running container through its shim and
//! collects its output — what kubelet's exec probes and `crictl exec -s`
//! use. The process is the container's own (same user, env, cwd,
//! capabilities, cgroup, namespaces) with the command swapped in, as
//! containerd builds it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

use crate::sandbox::run::new_id;
use crate::shim_client::{Shim, Stdio};

use super::registry::Containers;
use super::{ContainerError, Phase};

/// Most output kept per stream (containerd keeps as much). Output past it
/// is read and dropped, so the process never blocks on a full pipe.
pub const MAX_OUTPUT: usize = 16 << 20;

/// Hang guard for output still arriving after the process exited (a
/// background child holding stdout open) when the request set no timeout.
const DRAIN_GUARD: Duration = Duration::from_secs(10);

/// What an exec produced.
#[derive(Debug, Default)]
pub struct ExecOutput {
    /// Its stdout, up to [`MAX_OUTPUT`].
    pub stdout: Vec<u8>,
    /// Its stderr, up to [`MAX_OUTPUT`].
    pub stderr: Vec<u8>,
    /// Its exit status (128 + signal when killed).
    pub exit_code: i32,
}

/// The OCI Process for an exec: the container's process (from its bundle's
/// config.json) with `cmd` as its args, and a terminal if `tty`.
pub fn exec_process(bundle: &Path, cmd: &[String], tty: bool) -> Result<Vec<u8>, ContainerError> {
    if cmd.is_empty() || cmd[0].is_empty() {
        return Err(ContainerError::InvalidArgument(
            "exec needs a command".into(),
        ));
    }
    let path = bundle.join("config.json");
    let text = std::fs::read(&path).map_err(|e| ContainerError::io("read", &path, e))?;
    let spec: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| ContainerError::io("parse", &path, std::io::Error::other(e.to_string())))?;
    let mut process = spec
        .get("process")
        .cloned()
        .ok_or_else(|| ContainerError::FailedPrecondition("container has no process".into()))?;
    process_for_exec(&mut process, cmd, tty);
    serde_json::to_vec(&process)
        .map_err(|e| ContainerError::io("encode", &path, std::io::Error::other(e.to_string())))
}

/// Swaps the command into a container's process (pure, so it is tested).
fn process_for_exec(process: &mut serde_json::Value, cmd: &[String], tty: bool) {
    process["args"] = serde_json::json!(cmd);
    process["terminal"] = serde_json::json!(tty);
    if let Some(obj) = process.as_object_mut() {
        // A console size belongs to the container's own terminal.
        obj.remove("consoleSize");
    }
    if tty {
        if let Some(env) = process.get_mut("env").and_then(|e| e.as_array_mut()) {
            if !env
                .iter()
                .any(|v| v.as_str().is_some_and(|s| s.starts_with("TERM=")))
            {
                env.push(serde_json::json!("TERM=xterm"));
            }
        } else {
            process["env"] = serde_json::json!(["TERM=xterm"]);
        }
    }
}

/// The FIFOs an exec's output comes through; removed on drop.
struct Fifos {
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Fifos {
    fn make(dir: &Path, exec_id: &str) -> Result<Fifos, ContainerError> {
        let f = Fifos {
            stdout: dir.join(format!("{exec_id}.stdout")),
            stderr: dir.join(format!("{exec_id}.stderr")),
        };
        for p in [&f.stdout, &f.stderr] {
            nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o600))
                .map_err(|e| ContainerError::io("mkfifo", p, std::io::Error::from(e)))?;
        }
        Ok(f)
    }

    fn open(p: &Path) -> Result<pipe::Receiver, ContainerError> {
        pipe::OpenOptions::new()
            .open_receiver(p)
            .map_err(|e| ContainerError::io("open", p, e))
    }
}

impl Drop for Fifos {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.stdout);
        let _ = std::fs::remove_file(&self.stderr);
    }
}

/// Output collected so far; shared so a drain cut short keeps what came.
type Collected = Arc<std::sync::Mutex<Vec<u8>>>;

/// Reads a stream to its end, keeping at most [`MAX_OUTPUT`] bytes.
async fn collect(mut rx: pipe::Receiver, out: Collected) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match rx.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let mut out = out.lock().unwrap_or_else(|p| p.into_inner());
                let room = MAX_OUTPUT.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

fn take(c: &Collected) -> Vec<u8> {
    std::mem::take(&mut *c.lock().unwrap_or_else(|p| p.into_inner()))
}

/// Runs `cmd` in container `id` and returns its output and exit code.
/// `timeout` of zero waits as long as it takes; past a timeout the process
/// is killed and the call fails with DeadlineExceeded.
pub async fn exec_sync(
    cs: &Arc<Containers>,
    id: &str,
    cmd: &[String],
    timeout: Duration,
) -> Result<ExecOutput, ContainerError> {
    let c = cs.get(id)?;
    let rec = c.record();
    if rec.phase != Phase::Running {
        return Err(ContainerError::FailedPrecondition(format!(
            "container {} is {:?}, not running",
            rec.id, rec.phase
        )));
    }
    let process = exec_process(&rec.bundle, cmd, false)?;
    let exec_id = format!(
        "exec-{}",
        &new_id().map_err(|e| {
            ContainerError::io(
                "random",
                "/dev/urandom",
                std::io::Error::other(e.to_string()),
            )
        })?[..24]
    );
    let fifos = Fifos::make(&rec.bundle, &exec_id)?;
    // Our read ends are open before the shim opens the write ends, so
    // nothing the process writes can be lost.
    let out_rx = Fifos::open(&fifos.stdout)?;
    let err_rx = Fifos::open(&fifos.stderr)?;
    let shim = Shim::connect(&rec.shim_address)
        .await
        .map_err(|e| ContainerError::from_shim(&rec.id, e))?;
    let stdio = Stdio {
        stdin: String::new(),
        stdout: fifos.stdout.to_string_lossy().into_owned(),
        stderr: fifos.stderr.to_string_lossy().into_owned(),
        terminal: false,
    };
    shim.exec(&rec.id, &exec_id, &stdio, process)
        .await
        .map_err(|e| ContainerError::from_shim(&rec.id, e))?;
    let started = tokio::time::Instant::now();
    if let Err(e) = shim.start(&rec.id, &exec_id).await {
        let _ = shim.delete(&rec.id, &exec_id).await;
        return Err(match ContainerError::from_shim(&rec.id, e) {
            ContainerError::Shim(e) => ContainerError::FailedPrecondition(format!(
                "exec {:?} in container {}: {e}",
                cmd[0], rec.id
            )),
            other => other,
        });
    }
    // The shim holds the write ends from here until the output ends.
    let (out_buf, err_buf) = (Collected::default(), Collected::default());
    let mut stdout = tokio::spawn(collect(out_rx, out_buf.clone()));
    let mut stderr = tokio::spawn(collect(err_rx, err_buf.clone()));
    let waited = if timeout.is_zero() {
        Ok(shim.wait(&rec.id, &exec_id).await)
    } else {
        tokio::time::timeout(timeout, shim.wait(&rec.id, &exec_id)).await
    };
    let exit = match waited {
        Ok(r) => r.map_err(|e| ContainerError::from_shim(&rec.id, e)),
        Err(_) => {
            tracing::info!(container = %rec.id, exec = %exec_id, ?timeout, "exec timed out; killing it");
            let _ = shim.kill(&rec.id, &exec_id, 9, false).await;
            let _ = tokio::time::timeout(DRAIN_GUARD, shim.wait(&rec.id, &exec_id)).await;
            let _ = shim.delete(&rec.id, &exec_id).await;
            stdout.abort();
            stderr.abort();
            return Err(ContainerError::DeadlineExceeded(format!(
                "command {:?} in container {} timed out after {}s",
                cmd,
                rec.id,
                timeout.as_secs()
            )));
        }
    };
    let drain = if timeout.is_zero() {
        DRAIN_GUARD
    } else {
        timeout
            .saturating_sub(started.elapsed())
            .max(Duration::from_secs(1))
    };
    if tokio::time::timeout(drain, async {
        let _ = (&mut stdout).await;
        let _ = (&mut stderr).await;
    })
    .await
    .is_err()
    {
        tracing::warn!(container = %rec.id, exec = %exec_id, "exec output still open after exit; returning what arrived");
        stdout.abort();
        stderr.abort();
    }
    if let Err(e) = shim.delete(&rec.id, &exec_id).await {
        tracing::warn!(container = %rec.id, exec = %exec_id, error = %e, "delete exec");
    }
    let exit = exit?;
    Ok(ExecOutput {
        stdout: take(&out_buf),
        stderr: take(&err_buf),
        exit_code: exit.status as i32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_process_swaps_command_and_keeps_identity() {
        let mut p = serde_json::json!({
            "args": ["/pause"], "terminal": true, "cwd": "/w",
            "user": {"uid": 7, "gid": 8}, "env": ["PATH=/bin"],
            "consoleSize": {"height": 1, "width": 2}
        });
        process_for_exec(&mut p, &["ls".into(), "-l".into()], false);
        assert_eq!(p["args"], serde_json::json!(["ls", "-l"]));
        assert_eq!(p["terminal"], false);
        assert_eq!(p["cwd"], "/w");
        assert_eq!(p["user"]["uid"], 7);
        assert!(p.get("consoleSize").is_none());
        assert_eq!(p["env"], serde_json::json!(["PATH=/bin"]));
    }

    #[test]
    fn tty_exec_gets_a_term() {
        let mut p = serde_json::json!({"args": ["x"], "env": ["PATH=/bin"]});
        process_for_exec(&mut p, &["sh".into()], true);
        assert_eq!(p["env"], serde_json::json!(["PATH=/bin", "TERM=xterm"]));
        let mut q = serde_json::json!({"args": ["x"], "env": ["TERM=vt100"]});
        process_for_exec(&mut q, &["sh".into()], true);
        assert_eq!(q["env"], serde_json::json!(["TERM=vt100"]));
    }

    #[test]
    fn empty_command_is_refused() {
        let dir = std::env::temp_dir();
        assert!(matches!(
            exec_process(&dir, &[], false),
            Err(ContainerError::InvalidArgument(_))
        ));
        assert!(matches!(
            exec_process(&dir, &[String::new()], false),
            Err(ContainerError::InvalidArgument(_))
        ));
    }
}
