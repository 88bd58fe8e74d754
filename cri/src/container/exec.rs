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

use crate::shim_client::{Shim, Stdio};

use super::registry::Containers;
use super::ContainerError;

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

/// Which stdio an exec gets, as the CRI Exec request asks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecStdio {
    /// Keep a stdin open for the caller.
    pub stdin: bool,
    /// Collect stdout (with a terminal: all output).
    pub stdout: bool,
    /// Collect stderr (never with a terminal).
    pub stderr: bool,
    /// Run on a terminal.
    pub tty: bool,
}

/// The FIFOs of one exec in its container's bundle; removed on drop.
#[derive(Debug, Default)]
struct Fifos(Vec<PathBuf>);

impl Fifos {
    fn make(&mut self, dir: &Path, name: String) -> Result<PathBuf, ContainerError> {
        let p = dir.join(name);
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(|e| ContainerError::io("mkfifo", &p, std::io::Error::from(e)))?;
        self.0.push(p.clone());
        Ok(p)
    }
}

impl Drop for Fifos {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A started exec: its stdio ends and its shim. Dropping it leaves the
/// process running; [`ExecSession::finish`] deletes it from the shim.
#[derive(Debug)]
pub struct ExecSession {
    /// Writes to the process's stdin; dropping it closes stdin.
    pub stdin: Option<pipe::Sender>,
    /// The process's stdout (all output with a terminal).
    pub stdout: Option<pipe::Receiver>,
    /// The process's stderr.
    pub stderr: Option<pipe::Receiver>,
    shim: Shim,
    container_id: String,
    exec_id: String,
    /// The shim holds the stdin FIFO open too (a shim v2): the end of
    /// input is its CloseIO.
    close_io: bool,
    _fifos: Fifos,
}

impl ExecSession {
    /// Ends the process's input once `stdin` (its writer, taken from
    /// [`ExecSession::stdin`]) is dropped; a shim v2 is told so too.
    pub fn stdin_closer(&self) -> StdinCloser {
        StdinCloser {
            shim: self.close_io.then(|| self.shim.clone()),
            container_id: self.container_id.clone(),
            exec_id: self.exec_id.clone(),
        }
    }

    /// The exec's ID in the shim.
    pub fn exec_id(&self) -> &str {
        &self.exec_id
    }

    /// Waits for the process to exit; its status.
    pub async fn wait(&self) -> Result<i32, ContainerError> {
        self.shim
            .wait(&self.container_id, &self.exec_id)
            .await
            .map(|e| e.status as i32)
            .map_err(|e| ContainerError::from_shim(&self.container_id, e))
    }

    /// A handle that resizes the exec's terminal from another task.
    pub fn resizer(&self) -> Resizer {
        Resizer {
            shim: self.shim.clone(),
            container_id: self.container_id.clone(),
            exec_id: self.exec_id.clone(),
        }
    }

    /// SIGKILLs the process.
    pub async fn kill(&self) {
        let _ = self
            .shim
            .kill(&self.container_id, &self.exec_id, 9, false)
            .await;
    }

    /// Forgets the (exited) process in the shim.
    pub async fn finish(&self) {
        if let Err(e) = self.shim.delete(&self.container_id, &self.exec_id).await {
            tracing::warn!(container = %self.container_id, exec = %self.exec_id, error = %e, "delete exec");
        }
    }
}

/// Closes one exec's stdin once the caller's writer is gone.
#[derive(Clone, Debug)]
pub struct StdinCloser {
    shim: Option<Shim>,
    container_id: String,
    exec_id: String,
}

impl StdinCloser {
    /// Call after dropping the writer.
    pub async fn close(&self) {
        if let Some(shim) = &self.shim {
            if let Err(e) = shim.close_stdin(&self.container_id, &self.exec_id).await {
                tracing::debug!(container = %self.container_id, exec = %self.exec_id, error = %e, "close exec stdin");
            }
        }
    }
}

/// Resizes one exec's terminal (the client sends sizes while it runs).
#[derive(Clone, Debug)]
pub struct Resizer {
    shim: Shim,
    container_id: String,
    exec_id: String,
}

impl Resizer {
    /// Sets the terminal to `width` x `height`.
    pub async fn resize(&self, width: u32, height: u32) -> Result<(), ContainerError> {
        self.shim
            .resize_pty(&self.container_id, &self.exec_id, width, height)
            .await
            .map_err(|e| ContainerError::from_shim(&self.container_id, e))
    }
}

/// Starts `cmd` in running container `id` with the stdio `io` asks for.
/// The daemon's FIFO ends are open before the shim opens its ends, so
/// nothing written is lost and stdin does not end early.
pub async fn start(
    cs: &Arc<Containers>,
    id: &str,
    cmd: &[String],
    io: ExecStdio,
) -> Result<ExecSession, ContainerError> {
    let c = cs.get(id)?;
    let rec = c.record();
    rec.ensure_running()?;
    let process = exec_process(&rec.bundle, cmd, io.tty)?;
    let random = crate::ids::new_id()
        .map_err(|e| ContainerError::io("read", crate::ids::RANDOM_SOURCE, e))?;
    let exec_id = format!("exec-{}", &random[..24]);
    let mut fifos = Fifos::default();
    let mut stdio = Stdio {
        terminal: io.tty,
        ..Default::default()
    };
    let mut session_stdin = None;
    if io.stdin {
        let p = fifos.make(&rec.bundle, format!("{exec_id}.stdin"))?;
        // Read-write, so opening needs no reader yet; dropping it is the
        // only writer's close, which the process sees as end of input.
        session_stdin = Some(
            pipe::OpenOptions::new()
                .read_write(true)
                .open_sender(&p)
                .map_err(|e| ContainerError::io("open", &p, e))?,
        );
        stdio.stdin = p.to_string_lossy().into_owned();
    }
    let mut open_out =
        |want: bool, name: &str| -> Result<Option<(String, pipe::Receiver)>, ContainerError> {
            if !want {
                return Ok(None);
            }
            let p = fifos.make(&rec.bundle, format!("{exec_id}.{name}"))?;
            let rx = pipe::OpenOptions::new()
                .open_receiver(&p)
                .map_err(|e| ContainerError::io("open", &p, e))?;
            Ok(Some((p.to_string_lossy().into_owned(), rx)))
        };
    let out = open_out(io.stdout, "stdout")?;
    let err = open_out(io.stderr && !io.tty, "stderr")?;
    let (stdout, stderr) = (
        out.map(|(p, rx)| {
            stdio.stdout = p;
            rx
        }),
        err.map(|(p, rx)| {
            stdio.stderr = p;
            rx
        }),
    );
    let shim = Shim::connect(&rec.shim_address)
        .await
        .map_err(|e| ContainerError::from_shim(&rec.id, e))?;
    shim.exec(&rec.id, &exec_id, &stdio, process)
        .await
        .map_err(|e| ContainerError::from_shim(&rec.id, e))?;
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
    Ok(ExecSession {
        stdin: session_stdin,
        stdout,
        stderr,
        shim,
        close_io: rec.shim.is_v2(),
        container_id: rec.id,
        exec_id,
        _fifos: fifos,
    })
}

/// Output collected so far; shared so a drain cut short keeps what came.
type Collected = Arc<std::sync::Mutex<Vec<u8>>>;

/// Reads a stream to its end, keeping at most [`MAX_OUTPUT`] bytes.
async fn collect(rx: Option<pipe::Receiver>, out: Collected) {
    let Some(mut rx) = rx else { return };
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
    let io = ExecStdio {
        stdout: true,
        stderr: true,
        ..Default::default()
    };
    let mut session = start(cs, id, cmd, io).await?;
    let started = tokio::time::Instant::now();
    // The shim holds the write ends from here until the output ends.
    let (out_buf, err_buf) = (Collected::default(), Collected::default());
    let mut stdout = tokio::spawn(collect(session.stdout.take(), out_buf.clone()));
    let mut stderr = tokio::spawn(collect(session.stderr.take(), err_buf.clone()));
    let waited = if timeout.is_zero() {
        Ok(session.wait().await)
    } else {
        tokio::time::timeout(timeout, session.wait()).await
    };
    let exit = match waited {
        Ok(r) => r,
        Err(_) => {
            tracing::info!(container = %id, exec = %session.exec_id, ?timeout, "exec timed out; killing it");
            session.kill().await;
            let _ = tokio::time::timeout(DRAIN_GUARD, session.wait()).await;
            session.finish().await;
            stdout.abort();
            stderr.abort();
            return Err(ContainerError::DeadlineExceeded(format!(
                "command {cmd:?} in container {id} timed out after {}s",
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
        tracing::warn!(container = %id, exec = %session.exec_id, "exec output still open after exit; returning what arrived");
        stdout.abort();
        stderr.abort();
    }
    session.finish().await;
    Ok(ExecOutput {
        stdout: take(&out_buf),
        stderr: take(&err_buf),
        exit_code: exit?,
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
