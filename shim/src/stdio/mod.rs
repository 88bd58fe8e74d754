//! A process's stdio as the shim owns it: pipes (or a pty received over a
//! console socket) between the container and the shim, copy tasks from
//! there to where the caller wants the bytes, and attach clients that see
//! the output live and write to stdin.
//!
//! The Task API names stdio destinations as strings. The shim accepts:
//! * `""`: none (`/dev/null`);
//! * an absolute path: a FIFO the caller opened, as containerd does;
//! * `file:///PATH`: a plain file, appended to;
//! * `crilog:///PATH` (stdout and/or stderr): the kubelet CRI log file,
//!   written by the shim itself in the CRI format; the Carapace daemon uses
//!   this, and both streams may name the same file;
//! * for stdin only, `attach:`: a stdin pipe held open by the shim and fed
//!   only by Attach clients (CRI `stdin: true`).

pub mod console;
mod fanout;

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use nix::fcntl::OFlag;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, watch};

use crate::crilog::{CriLog, Stream};
use crate::error::{Error, Result};
use crate::runtime_cli::PassFds;
pub use console::ConsoleSocket;
use fanout::Fanout;

/// URI scheme of a CRI log destination.
pub const CRILOG_SCHEME: &str = "crilog://";
/// URI scheme of a plain file destination.
pub const FILE_SCHEME: &str = "file://";
/// stdin value asking for a pipe fed by Attach clients only.
pub const STDIN_ATTACH: &str = "attach:";

/// How big a single read from a container pipe may be.
const CHUNK: usize = 32 * 1024;

/// Where one output stream goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sink {
    /// Discarded (attach clients may still see it).
    None,
    /// A FIFO the caller reads (containerd).
    Fifo(PathBuf),
    /// A file appended to.
    File(PathBuf),
    /// A CRI-format log file.
    CriLog(PathBuf),
}

/// Parses one stdout/stderr destination of the Task API.
pub fn parse_sink(s: &str) -> Result<Sink> {
    if s.is_empty() {
        return Ok(Sink::None);
    }
    let (kind, path): (fn(PathBuf) -> Sink, &str) = if let Some(p) = s.strip_prefix(CRILOG_SCHEME) {
        (Sink::CriLog, p)
    } else if let Some(p) = s.strip_prefix(FILE_SCHEME) {
        (Sink::File, p)
    } else if s.contains("://") {
        return Err(Error::InvalidArgument(format!(
            "unsupported stdio destination {s:?}: use a FIFO path, file:// or crilog://"
        )));
    } else {
        (Sink::Fifo, s)
    };
    if !path.starts_with('/') {
        return Err(Error::InvalidArgument(format!(
            "stdio destination {s:?} is not an absolute path"
        )));
    }
    Ok(kind(PathBuf::from(path)))
}

/// Checks a stdin source: "", `attach:` or an absolute FIFO path.
pub fn check_stdin(s: &str) -> Result<()> {
    if s.is_empty() || s == STDIN_ATTACH || s.starts_with('/') {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "unsupported stdin {s:?}: use a FIFO path or {STDIN_ATTACH:?}"
        )))
    }
}

/// The stdio a process was created with, as the caller named it.
#[derive(Clone, Debug, Default)]
pub struct IoSpec {
    /// stdin: "", a FIFO path, or `attach:`.
    pub stdin: String,
    /// stdout destination.
    pub stdout: String,
    /// stderr destination (ignored with a terminal: the pty has one stream).
    pub stderr: String,
    /// Whether the process has a pty.
    pub terminal: bool,
}

impl IoSpec {
    /// The stdio a Create or Exec request names, validated.
    pub fn checked(stdin: &str, stdout: &str, stderr: &str, terminal: bool) -> Result<IoSpec> {
        let spec = IoSpec {
            stdin: stdin.into(),
            stdout: stdout.into(),
            stderr: stderr.into(),
            terminal,
        };
        spec.check()?;
        Ok(spec)
    }

    /// Validates every field before anything is created.
    pub fn check(&self) -> Result<()> {
        check_stdin(&self.stdin)?;
        parse_sink(&self.stdout)?;
        if !self.terminal {
            parse_sink(&self.stderr)?;
        }
        Ok(())
    }
}

/// The shim's side of a process's stdin.
enum StdinWriter {
    None,
    Pipe(tokio::sync::Mutex<Option<pipe::Sender>>),
    Console(Arc<AsyncFd<OwnedFd>>, AtomicBool),
}

/// Copies in progress for one process, kept so the shim can feed and close
/// stdin, resize the pty, reopen the log, attach clients, and know when all
/// output is flushed.
pub struct ProcessIo {
    stdin: StdinWriter,
    console: Option<Arc<AsyncFd<OwnedFd>>>,
    logs: Vec<Arc<Mutex<CriLog>>>,
    fanout: Arc<Fanout>,
    done: watch::Receiver<usize>,
    streams: usize,
}

/// One attach client's view of a process's output.
pub struct Attachment {
    /// Output chunks, tagged by stream, until the output ends.
    pub rx: mpsc::Receiver<fanout::Chunk>,
    id: u64,
    fanout: Arc<Fanout>,
}

impl Drop for Attachment {
    fn drop(&mut self) {
        self.fanout.unsubscribe(self.id);
    }
}

impl ProcessIo {
    /// Whether the process has a stdin the shim can write to.
    pub fn has_stdin(&self) -> bool {
        !matches!(self.stdin, StdinWriter::None)
    }

    /// Whether the process has a terminal.
    pub fn has_terminal(&self) -> bool {
        self.console.is_some()
    }

    /// Writes to the process's stdin (attach clients, the stdin FIFO).
    pub async fn write_stdin(&self, data: &[u8]) -> Result<()> {
        match &self.stdin {
            StdinWriter::None => Err(Error::FailedPrecondition(
                "the process was created without stdin".into(),
            )),
            StdinWriter::Pipe(p) => {
                let mut g = p.lock().await;
                let w = g.as_mut().ok_or_else(|| {
                    Error::FailedPrecondition("the process's stdin is closed".into())
                })?;
                w.write_all(data)
                    .await
                    .map_err(|e| Error::io("write to the process's stdin", e))
            }
            StdinWriter::Console(master, open) => {
                if !open.load(Ordering::Relaxed) {
                    return Err(Error::FailedPrecondition(
                        "the process's stdin is closed".into(),
                    ));
                }
                write_console(master, data).await
            }
        }
    }

    /// Closes the process's stdin (CloseIO, stdin_once): EOF for a pipe;
    /// for a pty, input stops (the terminal stays for output).
    pub async fn close_stdin(&self) {
        match &self.stdin {
            StdinWriter::None => {}
            StdinWriter::Pipe(p) => {
                p.lock().await.take();
            }
            StdinWriter::Console(_, open) => open.store(false, Ordering::Relaxed),
        }
    }

    /// Sets the pty's window size (ResizePty, attach resize).
    pub fn resize(&self, width: u32, height: u32) -> Result<()> {
        let Some(master) = &self.console else {
            return Err(Error::FailedPrecondition(
                "the process has no terminal to resize".into(),
            ));
        };
        let ws = libc::winsize {
            ws_row: u16::try_from(height).unwrap_or(u16::MAX),
            ws_col: u16::try_from(width).unwrap_or(u16::MAX),
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize struct from a valid pointer;
        // the fd is the pty master we own.
        let r = unsafe { libc::ioctl(master.get_ref().as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        if r < 0 {
            return Err(Error::io("resize pty", std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Reopens every CRI log file of the process (kubelet's rotation).
    pub fn reopen_logs(&self) -> Result<()> {
        if self.logs.is_empty() {
            return Err(Error::FailedPrecondition(
                "the process does not write a CRI log".into(),
            ));
        }
        for l in &self.logs {
            let mut l = l
                .lock()
                .map_err(|_| Error::FailedPrecondition("log writer poisoned".into()))?;
            l.reopen()
                .map_err(|e| Error::io("reopen container log", std::io::Error::other(e)))?;
        }
        Ok(())
    }

    /// Subscribes to the output from now on; `None` once the output ended.
    pub fn attach(&self, stdout: bool, stderr: bool) -> Option<Attachment> {
        let (id, rx) = self.fanout.subscribe(stdout, stderr)?;
        Some(Attachment {
            rx,
            id,
            fanout: self.fanout.clone(),
        })
    }

    /// Waits until every output stream reached end-of-file and was written.
    pub async fn wait_output(&self) {
        let mut rx = self.done.clone();
        let want = self.streams;
        let _ = rx.wait_for(|n| *n >= want).await;
    }
}

/// Output destinations opened for one process; shared CRI logs merged.
struct Sinks {
    stdout: Out,
    stderr: Out,
    logs: Vec<Arc<Mutex<CriLog>>>,
}

#[derive(Clone)]
enum Out {
    None,
    Log(Arc<Mutex<CriLog>>),
    Pipe(Arc<pipe::Sender>),
    File(Arc<Mutex<std::fs::File>>),
}

fn open_sinks(spec: &IoSpec) -> Result<Sinks> {
    spec.check()?;
    let so = parse_sink(&spec.stdout)?;
    let se = if spec.terminal {
        Sink::None
    } else {
        parse_sink(&spec.stderr)?
    };
    let mut logs: Vec<(PathBuf, Arc<Mutex<CriLog>>)> = Vec::new();
    let mut open = |s: &Sink| -> Result<Out> {
        Ok(match s {
            Sink::None => Out::None,
            Sink::CriLog(p) => {
                if let Some((_, l)) = logs.iter().find(|(q, _)| q == p) {
                    Out::Log(l.clone())
                } else {
                    let l = CriLog::open(p)
                        .map_err(|e| Error::InvalidArgument(format!("open container log: {e}")))?;
                    let l = Arc::new(Mutex::new(l));
                    logs.push((p.clone(), l.clone()));
                    Out::Log(l)
                }
            }
            Sink::Fifo(p) => {
                let tx = pipe::OpenOptions::new()
                    .read_write(true)
                    .open_sender(p)
                    .map_err(|e| Error::io(format!("open {}", p.display()), e))?;
                Out::Pipe(Arc::new(tx))
            }
            Sink::File(p) => {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| Error::io(format!("open {}", p.display()), e))?;
                Out::File(Arc::new(Mutex::new(f)))
            }
        })
    };
    let stdout = open(&so)?;
    let stderr = open(&se)?;
    Ok(Sinks {
        stdout,
        stderr,
        logs: logs.into_iter().map(|(_, l)| l).collect(),
    })
}

fn pipe_pair() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::io("pipe", e.into()))
}

/// Pipes prepared for a process without a terminal: the container's ends
/// go to the runtime call, ours are kept to copy from.
pub struct PreparedPipes {
    spec: IoSpec,
    sinks: Sinks,
    stdin_w: Option<OwnedFd>,
    stdout_r: OwnedFd,
    stderr_r: OwnedFd,
}

/// Opens the destinations and makes the pipes for a non-terminal process.
/// stdout and stderr always get pipes, so attach clients can see output
/// even where the caller keeps no copy.
pub fn prepare_pipes(spec: &IoSpec) -> Result<(PassFds, PreparedPipes)> {
    let sinks = open_sinks(spec)?;
    let mut fds = PassFds::default();
    let mut stdin_w = None;
    if !spec.stdin.is_empty() {
        let (r, w) = pipe_pair()?;
        fds.stdin = Some(r);
        stdin_w = Some(w);
    }
    let (stdout_r, w) = pipe_pair()?;
    fds.stdout = Some(w);
    let (stderr_r, w) = pipe_pair()?;
    fds.stderr = Some(w);
    Ok((
        fds,
        PreparedPipes {
            spec: spec.clone(),
            sinks,
            stdin_w,
            stdout_r,
            stderr_r,
        },
    ))
}

impl PreparedPipes {
    /// Starts the copy tasks once the runtime holds the container's ends.
    pub fn start(self) -> Result<Arc<ProcessIo>> {
        let fanout = Arc::new(Fanout::default());
        let (done_tx, done) = watch::channel(0usize);
        let done_tx = Arc::new(done_tx);
        for (fd, out, stream) in [
            (self.stdout_r, self.sinks.stdout.clone(), Stream::Stdout),
            (self.stderr_r, self.sinks.stderr.clone(), Stream::Stderr),
        ] {
            let rx = pipe::Receiver::from_owned_fd(fd)
                .map_err(|e| Error::io("watch container output pipe", e))?;
            let done_tx = done_tx.clone();
            let fanout = fanout.clone();
            tokio::spawn(async move {
                copy_out(rx, out, stream, &fanout).await;
                done_tx.send_modify(|n| *n += 1);
            });
        }
        let stdin = match self.stdin_w {
            None => StdinWriter::None,
            Some(w) => StdinWriter::Pipe(tokio::sync::Mutex::new(Some(
                pipe::Sender::from_owned_fd(w)
                    .map_err(|e| Error::io("watch container stdin pipe", e))?,
            ))),
        };
        let io = Arc::new(ProcessIo {
            stdin,
            console: None,
            logs: self.sinks.logs,
            fanout: fanout.clone(),
            done,
            streams: 2,
        });
        finish_when_done(&io);
        spawn_stdin_fifo(&self.spec.stdin, &io);
        Ok(io)
    }
}

/// Ends every attachment once all output streams ended.
fn finish_when_done(io: &Arc<ProcessIo>) {
    let mut done = io.done.clone();
    let want = io.streams;
    let fanout = io.fanout.clone();
    tokio::spawn(async move {
        let _ = done.wait_for(|n| *n >= want).await;
        fanout.close();
    });
}

/// Copies the caller's stdin FIFO into the process until it ends.
fn spawn_stdin_fifo(src: &str, io: &Arc<ProcessIo>) {
    if src.is_empty() || src == STDIN_ATTACH {
        return;
    }
    let src = src.to_string();
    let io = Arc::downgrade(io);
    tokio::spawn(async move {
        let mut rx = match pipe::OpenOptions::new().open_receiver(&src) {
            Ok(rx) => rx,
            Err(e) => {
                log::warn!("open stdin fifo {src}: {e}");
                return;
            }
        };
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match rx.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let Some(io) = io.upgrade() else { return };
            if io.write_stdin(&buf[..n]).await.is_err() {
                return;
            }
        }
        // The caller closed its end: so does the container's stdin.
        if let Some(io) = io.upgrade() {
            io.close_stdin().await;
        }
    });
}

/// Copies the container's output on `stream` until it closes. The read
/// buffer exists only while output is flowing: the shim of an idle
/// container holds none (a shim is paid once per container on a node).
async fn copy_out(rx: pipe::Receiver, out: Out, stream: Stream, fanout: &Fanout) {
    'idle: loop {
        if rx.readable().await.is_err() {
            break;
        }
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match rx.try_read(&mut buf) {
                Ok(0) => break 'idle,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue 'idle,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break 'idle,
            };
            write_out(&out, stream, &buf[..n]).await;
            fanout.send(stream, &buf[..n]);
        }
    }
    finish_out(&out, stream);
}

async fn write_out(out: &Out, stream: Stream, data: &[u8]) {
    match out {
        Out::None => {}
        Out::Log(l) => {
            if let Ok(mut l) = l.lock() {
                l.write(stream, data);
                if let Some(e) = l.take_error() {
                    log::warn!("container log {}: {e}", l.path().display());
                }
            }
        }
        Out::Pipe(p) => {
            // A reader that went away must not stall the container: drop.
            let mut off = 0;
            while off < data.len() {
                if p.writable().await.is_err() {
                    return;
                }
                match p.try_write(&data[off..]) {
                    Ok(n) => off += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(_) => return,
                }
            }
        }
        Out::File(f) => {
            if let Ok(mut f) = f.lock() {
                let _ = std::io::Write::write_all(&mut *f, data);
            }
        }
    }
}

fn finish_out(out: &Out, stream: Stream) {
    if let Out::Log(l) = out {
        if let Ok(mut l) = l.lock() {
            l.close_stream(stream);
        }
    }
}

/// Starts copying a pty master to the stdout destination and attach
/// clients, and takes stdin from the FIFO or attach clients.
pub fn start_console(spec: &IoSpec, master: OwnedFd) -> Result<Arc<ProcessIo>> {
    let sinks = open_sinks(spec)?;
    nix::fcntl::fcntl(&master, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
        .map_err(|e| Error::io("pty master non-blocking", e.into()))?;
    // SAFETY: the AsyncFd owns the master from here on and only hands out
    // shared references to it, so the fd stays open and the same.
    let master =
        unsafe { AsyncFd::register_with_interest(master, Interest::READABLE | Interest::WRITABLE) }
            .map_err(|e| Error::io("watch the pty master", e.into_parts().1))?;
    let master = Arc::new(master);
    let fanout = Arc::new(Fanout::default());
    let (done_tx, done) = watch::channel(0usize);
    {
        let out = sinks.stdout.clone();
        let m = master.clone();
        let fanout = fanout.clone();
        tokio::spawn(async move {
            copy_console_out(m, out, &fanout).await;
            done_tx.send_modify(|n| *n += 1);
        });
    }
    let stdin = if spec.stdin.is_empty() {
        StdinWriter::None
    } else {
        StdinWriter::Console(master.clone(), AtomicBool::new(true))
    };
    let io = Arc::new(ProcessIo {
        stdin,
        console: Some(master),
        logs: sinks.logs,
        fanout,
        done,
        streams: 1,
    });
    finish_when_done(&io);
    spawn_stdin_fifo(&spec.stdin, &io);
    Ok(io)
}

/// [`copy_out`] for a pty's master: the buffer, again, only while output
/// flows.
async fn copy_console_out(afd: Arc<AsyncFd<OwnedFd>>, out: Out, fanout: &Fanout) {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let Ok(mut g) = afd.readable().await else {
            break;
        };
        if buf.is_empty() {
            buf = vec![0u8; CHUNK];
        }
        match g.try_io(|fd| nix::unistd::read(fd.get_ref(), &mut buf).map_err(std::io::Error::from))
        {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => {
                write_out(&out, Stream::Stdout, &buf[..n]).await;
                fanout.send(Stream::Stdout, &buf[..n]);
            }
            // EIO: every slave end is closed (the process exited).
            Ok(Err(_)) => break,
            // Drained: idle again, without a buffer.
            Err(_would_block) => buf = Vec::new(),
        }
    }
    finish_out(&out, Stream::Stdout);
}

async fn write_console(afd: &AsyncFd<OwnedFd>, data: &[u8]) -> Result<()> {
    let mut off = 0;
    while off < data.len() {
        let mut g = afd
            .writable()
            .await
            .map_err(|e| Error::io("wait for the pty", e))?;
        match g.try_io(|fd| {
            nix::unistd::write(fd.get_ref(), &data[off..]).map_err(std::io::Error::from)
        }) {
            Ok(Ok(w)) => off += w,
            Ok(Err(e)) => return Err(Error::io("write to the pty", e)),
            Err(_would_block) => continue,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdio_destinations_parse() {
        assert_eq!(parse_sink("").ok(), Some(Sink::None));
        assert_eq!(
            parse_sink("/run/x/stdout").ok(),
            Some(Sink::Fifo("/run/x/stdout".into()))
        );
        assert_eq!(
            parse_sink("file:///var/log/x").ok(),
            Some(Sink::File("/var/log/x".into()))
        );
        assert_eq!(
            parse_sink("crilog:///var/log/pods/p/c/0.log").ok(),
            Some(Sink::CriLog("/var/log/pods/p/c/0.log".into()))
        );
        assert!(matches!(
            parse_sink("binary:///usr/bin/logger"),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            parse_sink("relative/path"),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn stdin_sources_are_checked() {
        assert!(check_stdin("").is_ok());
        assert!(check_stdin(STDIN_ATTACH).is_ok());
        assert!(check_stdin("/run/x/stdin").is_ok());
        assert!(check_stdin("tcp://x").is_err());
        let spec = IoSpec {
            stdin: "relative".into(),
            ..Default::default()
        };
        assert!(spec.check().is_err());
    }
}
