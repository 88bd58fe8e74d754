//! The stdio of a container under a containerd shim v2 (a `runtime_type`
//! handler). Such a shim copies the container's output into FIFOs and its
//! stdin out of one, and leaves the rest to its caller, as containerd's
//! CRI plugin does it: the daemon reads the FIFOs, writes the CRI log
//! (with carapace-shim's own writer, [`CriLog`]), fans the output out to
//! attach sessions and holds the stdin FIFO open between them. The shim
//! keeps its ends across a daemon restart, so recovery opens the FIFOs
//! again ([`resume`]); output written meanwhile waits in them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use carapace_shim::crilog::{CriLog, Stream};
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::{broadcast, watch};

use crate::shim_client::Stdio;

use super::ContainerError;

/// Output chunks kept for an attach session that falls behind; past it the
/// session loses the oldest (the CRI log has everything).
const ATTACH_BACKLOG: usize = 256;

/// One chunk of a container's output.
pub type Chunk = (Stream, Bytes);

/// The FIFOs' directory in a bundle.
fn dir(bundle: &Path) -> PathBuf {
    bundle.join("io")
}

fn fifo(bundle: &Path, name: &str) -> PathBuf {
    dir(bundle).join(name)
}

/// A container's FIFO ends, opened before the shim opens its own.
#[derive(Debug)]
pub struct Prepared {
    /// The FIFO paths, for the shim's Create.
    pub stdio: Stdio,
    stdout: Option<pipe::Receiver>,
    stderr: Option<pipe::Receiver>,
    stdin: Option<pipe::Sender>,
}

/// Makes the container's FIFOs (`<bundle>/io/`, mode 0600) and opens the
/// daemon's ends: stdout always, stderr unless a terminal merges it,
/// stdin if the container keeps one.
pub fn prepare(bundle: &Path, tty: bool, stdin: bool) -> Result<Prepared, ContainerError> {
    let d = dir(bundle);
    crate::private::dir(&d, crate::private::DIR_MODE)
        .map_err(|e| ContainerError::io("create", &d, e))?;
    let make = |name: &str| -> Result<PathBuf, ContainerError> {
        let p = fifo(bundle, name);
        match nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(p),
            Err(e) => Err(ContainerError::io("mkfifo", &p, e.into())),
        }
    };
    let mut out = Prepared {
        stdio: Stdio {
            terminal: tty,
            ..Default::default()
        },
        stdout: None,
        stderr: None,
        stdin: None,
    };
    let recv = |p: &Path| {
        pipe::OpenOptions::new()
            .open_receiver(p)
            .map_err(|e| ContainerError::io("open", p, e))
    };
    let p = make("stdout")?;
    out.stdout = Some(recv(&p)?);
    out.stdio.stdout = p.to_string_lossy().into_owned();
    if !tty {
        let p = make("stderr")?;
        out.stderr = Some(recv(&p)?);
        out.stdio.stderr = p.to_string_lossy().into_owned();
    }
    if stdin {
        let p = make("stdin")?;
        // Read-write: opening needs no reader yet, and the container's
        // stdin stays open between attach sessions until this is closed.
        out.stdin = Some(
            pipe::OpenOptions::new()
                .read_write(true)
                .open_sender(&p)
                .map_err(|e| ContainerError::io("open", &p, e))?,
        );
        out.stdio.stdin = p.to_string_lossy().into_owned();
    }
    Ok(out)
}

/// The daemon's side of one container's FIFOs while it runs.
#[derive(Debug)]
pub struct Pump {
    log: Arc<Mutex<Option<CriLog>>>,
    out: broadcast::Sender<Chunk>,
    stdin: tokio::sync::Mutex<Option<pipe::Sender>>,
    ended: watch::Receiver<usize>,
    streams: usize,
    copiers: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Pump {
    fn drop(&mut self) {
        for c in &self.copiers {
            c.abort();
        }
    }
}

impl Pump {
    /// Starts copying the container's output into its CRI log at
    /// `log_path` (none if empty) and to attach sessions. Called once the
    /// shim holds its ends (after Create): a FIFO reader that starts
    /// before any writer came would not see one leave.
    pub fn start(id: &str, prepared: Prepared, log_path: &Path) -> Pump {
        let log = if log_path.as_os_str().is_empty() {
            None
        } else {
            match CriLog::open(log_path) {
                Ok(l) => Some(l),
                Err(e) => {
                    // Output is still drained (a full FIFO would stop the
                    // container); kubelet's ReopenContainerLog brings it back.
                    tracing::warn!(container = %id, error = %e, "open container log");
                    None
                }
            }
        };
        let log = Arc::new(Mutex::new(log));
        let (out, _) = broadcast::channel(ATTACH_BACKLOG);
        let (ended_tx, ended) = watch::channel(0usize);
        let ended_tx = Arc::new(ended_tx);
        let mut copiers = Vec::new();
        let mut streams = 0;
        for (rx, stream) in [
            (prepared.stdout, Stream::Stdout),
            (prepared.stderr, Stream::Stderr),
        ] {
            let Some(rx) = rx else { continue };
            streams += 1;
            copiers.push(tokio::spawn(copy(
                id.to_string(),
                rx,
                stream,
                log.clone(),
                out.clone(),
                ended_tx.clone(),
            )));
        }
        Pump {
            log,
            out,
            stdin: tokio::sync::Mutex::new(prepared.stdin),
            ended,
            streams,
            copiers,
        }
    }

    /// Waits (at most `limit`) until every output stream has ended: the
    /// container's last output is in its log when its exit is recorded.
    pub async fn drained(&self, limit: Duration) {
        let mut ended = self.ended.clone();
        let want = self.streams;
        let _ = tokio::time::timeout(limit, ended.wait_for(|n| *n >= want)).await;
    }

    /// Resolves once every output stream has ended.
    pub async fn ended(&self) {
        let mut ended = self.ended.clone();
        let want = self.streams;
        let _ = ended.wait_for(|n| *n >= want).await;
    }

    /// The container's output from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Chunk> {
        self.out.subscribe()
    }

    /// Whether the container still has a stdin to write to.
    pub async fn has_stdin(&self) -> bool {
        self.stdin.lock().await.is_some()
    }

    /// Writes to the container's stdin.
    pub async fn write_stdin(&self, data: &[u8]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        match self.stdin.lock().await.as_mut() {
            Some(w) => w.write_all(data).await,
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        }
    }

    /// Closes the container's stdin for good (a `stdin_once` attach ended).
    pub async fn close_stdin(&self) {
        self.stdin.lock().await.take();
    }

    /// Reopens the CRI log at its path (kubelet rotated it).
    pub fn reopen_log(&self, path: &Path) -> Result<(), ContainerError> {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let res = match log.as_mut() {
            Some(l) => l.reopen(),
            None => CriLog::open(path).map(|l| {
                *log = Some(l);
            }),
        };
        res.map_err(|e| ContainerError::FailedPrecondition(format!("reopen log: {e}")))
    }
}

/// Copies one output stream until the shim closes its end.
async fn copy(
    id: String,
    mut rx: pipe::Receiver,
    stream: Stream,
    log: Arc<Mutex<Option<CriLog>>>,
    out: broadcast::Sender<Chunk>,
    ended: Arc<watch::Sender<usize>>,
) {
    let mut buf = vec![0u8; 32 << 10];
    loop {
        let n = match rx.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(container = %id, error = %e, "read container output");
                break;
            }
        };
        {
            let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(l) = log.as_mut() {
                l.write(stream, &buf[..n]);
                if let Some(e) = l.take_error() {
                    tracing::warn!(container = %id, error = %e, "container log");
                }
            }
        }
        // Nobody attached is fine.
        let _ = out.send((stream, Bytes::copy_from_slice(&buf[..n])));
    }
    if let Some(l) = log.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
        l.close_stream(stream);
    }
    ended.send_modify(|n| *n += 1);
}

/// After a daemon restart: opens the FIFOs of a running container again
/// (the shim kept its ends) and resumes copying. None when the container
/// has no FIFOs (it was never created through them).
pub fn resume(id: &str, bundle: &Path, log_path: &Path) -> Option<Pump> {
    let out = fifo(bundle, "stdout");
    if !out.exists() {
        return None;
    }
    let open_rx = |p: PathBuf| -> Option<pipe::Receiver> {
        if !p.exists() {
            return None;
        }
        match pipe::OpenOptions::new().open_receiver(&p) {
            Ok(rx) => Some(rx),
            Err(e) => {
                tracing::warn!(container = %id, path = %p.display(), error = %e, "reopen FIFO");
                None
            }
        }
    };
    let stdin = fifo(bundle, "stdin");
    let prepared = Prepared {
        stdio: Stdio::default(),
        stdout: open_rx(out),
        stderr: open_rx(fifo(bundle, "stderr")),
        stdin: if stdin.exists() {
            pipe::OpenOptions::new()
                .read_write(true)
                .open_sender(&stdin)
                .ok()
        } else {
            None
        },
    };
    Some(Pump::start(id, prepared, log_path))
}

/// The pumps of the daemon's shim v2 containers, by container ID.
#[derive(Debug, Default)]
pub struct Pumps(Mutex<HashMap<String, Arc<Pump>>>);

impl Pumps {
    /// Keeps `pump` for container `id`.
    pub fn insert(&self, id: &str, pump: Pump) {
        self.lock().insert(id.to_string(), Arc::new(pump));
    }

    /// Container `id`'s pump, if it runs under a shim v2.
    pub fn get(&self, id: &str) -> Option<Arc<Pump>> {
        self.lock().get(id).cloned()
    }

    /// Forgets container `id`'s pump (its teardown): its copiers end.
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Pump>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn writer(p: &str) -> pipe::Sender {
        pipe::OpenOptions::new()
            .open_sender(p)
            .expect("open writer")
    }

    /// What a shim writes lands in the CRI log as records, reaches an
    /// attached session, and is all there once the writers are gone.
    #[tokio::test]
    async fn output_reaches_the_log_and_attach_and_drains_at_the_end() {
        let dir = tempfile::tempdir().expect("tmp");
        let bundle = dir.path().join("bundle");
        std::fs::create_dir(&bundle).expect("bundle");
        let log = dir.path().join("0.log");
        let p = prepare(&bundle, false, true).expect("prepare");
        let (out_path, err_path) = (p.stdio.stdout.clone(), p.stdio.stderr.clone());
        let stdin_path = p.stdio.stdin.clone();
        assert!(stdin_path.ends_with("io/stdin"), "{stdin_path}");
        // The shim's ends.
        let (mut out, mut err) = (writer(&out_path), writer(&err_path));
        let pump = Pump::start("c", p, &log);
        let mut attached = pump.subscribe();
        out.write_all(b"hello\nwor").await.expect("write");
        err.write_all(b"oops\n").await.expect("write");
        out.write_all(b"ld\n").await.expect("write");
        drop((out, err));
        pump.drained(Duration::from_secs(10)).await;
        let (mut seen_out, mut seen_err) = (Vec::new(), Vec::new());
        while let Ok((stream, data)) = attached.try_recv() {
            match stream {
                Stream::Stdout => seen_out.extend_from_slice(&data),
                Stream::Stderr => seen_err.extend_from_slice(&data),
            }
        }
        assert_eq!(seen_out, b"hello\nworld\n");
        assert_eq!(seen_err, b"oops\n");
        let text = std::fs::read_to_string(&log).expect("log");
        let records: Vec<(&str, &str)> = text
            .lines()
            .map(|l| {
                let mut f = l.splitn(4, ' ');
                f.next();
                let stream = f.next().unwrap_or_default();
                f.next();
                (stream, f.next().unwrap_or_default())
            })
            .collect();
        assert!(records.contains(&("stdout", "hello")), "{text}");
        assert!(records.contains(&("stdout", "world")), "{text}");
        assert!(records.contains(&("stderr", "oops")), "{text}");
        // stdin reaches whoever reads the FIFO, and closes for good.
        let mut shim_in = pipe::OpenOptions::new()
            .open_receiver(&stdin_path)
            .expect("reader");
        pump.write_stdin(b"input").await.expect("stdin");
        let mut got = [0u8; 5];
        shim_in.read_exact(&mut got).await.expect("read stdin");
        assert_eq!(&got, b"input");
        pump.close_stdin().await;
        assert!(!pump.has_stdin().await);
        assert!(pump.write_stdin(b"more").await.is_err());
    }

    /// A terminal merges stderr into stdout: no stderr FIFO is made.
    #[tokio::test]
    async fn a_terminal_has_no_stderr_fifo() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = prepare(dir.path(), true, false).expect("prepare");
        assert!(p.stdio.terminal);
        assert!(p.stdio.stderr.is_empty() && p.stdio.stdin.is_empty());
        assert!(!fifo(dir.path(), "stderr").exists());
    }
}
