//! A process's stdio as the shim owns it: pipes (or a pty received over a
//! console socket) between the container and the shim, and copy tasks from
//! there to where the caller wants the bytes.
//!
//! The Task API names stdio destinations as strings. The shim accepts:
//! * `""`: none (`/dev/null`);
//! * an absolute path: a FIFO the caller opened, as containerd does;
//! * `file:///PATH`: a plain file, appended to;
//! * `crilog:///PATH` (stdout and/or stderr): the kubelet CRI log file,
//!   written by the shim itself in the CRI format; the Carapace daemon uses
//!   this, and both streams may name the same file.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::fcntl::OFlag;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::unix::pipe;
use tokio::sync::watch;

use crate::crilog::{CriLog, Stream};
use crate::error::{Error, Result};
use crate::runtime_cli::PassFds;

/// URI scheme of a CRI log destination.
pub const CRILOG_SCHEME: &str = "crilog://";
/// URI scheme of a plain file destination.
pub const FILE_SCHEME: &str = "file://";

/// How big a single read from a container pipe may be.
const CHUNK: usize = 32 * 1024;

/// Where one output stream goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sink {
    /// Discarded.
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

/// The stdio a process was created with, as the caller named it.
#[derive(Clone, Debug, Default)]
pub struct IoSpec {
    /// stdin FIFO path or "".
    pub stdin: String,
    /// stdout destination.
    pub stdout: String,
    /// stderr destination (ignored with a terminal: the pty has one stream).
    pub stderr: String,
    /// Whether the process has a pty.
    pub terminal: bool,
}

/// Copies in progress for one process, kept so the shim can close stdin,
/// resize the pty, reopen the log and know when all output is flushed.
pub struct ProcessIo {
    stdin: Arc<Mutex<Option<StdinHandle>>>,
    console: Option<Arc<AsyncFd<OwnedFd>>>,
    logs: Vec<Arc<Mutex<CriLog>>>,
    done: watch::Receiver<usize>,
    streams: usize,
}

/// What holds the container's stdin open: the shim's write end.
enum StdinHandle {
    Pipe(Arc<OwnedFd>),
    Console,
}

impl ProcessIo {
    /// Closes the process's stdin (CloseIO): EOF for a pipe; for a pty,
    /// stop copying input (the terminal stays for output).
    pub fn close_stdin(&self) {
        if let Ok(mut s) = self.stdin.lock() {
            s.take();
        }
    }

    /// Sets the pty's window size (ResizePty).
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
        for l in &self.logs {
            let mut l = l
                .lock()
                .map_err(|_| Error::InvalidArgument("log writer poisoned".into()))?;
            l.reopen()
                .map_err(|e| Error::io("reopen container log", std::io::Error::other(e)))?;
        }
        Ok(())
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
    stdout_r: Option<OwnedFd>,
    stderr_r: Option<OwnedFd>,
}

/// Opens the destinations and makes the pipes for a non-terminal process.
pub fn prepare_pipes(spec: &IoSpec) -> Result<(PassFds, PreparedPipes)> {
    let sinks = open_sinks(spec)?;
    let mut fds = PassFds::default();
    let mut p = PreparedPipes {
        spec: spec.clone(),
        sinks,
        stdin_w: None,
        stdout_r: None,
        stderr_r: None,
    };
    if !spec.stdin.is_empty() {
        let (r, w) = pipe_pair()?;
        fds.stdin = Some(r);
        p.stdin_w = Some(w);
    }
    if !matches!(p.sinks.stdout, Out::None) {
        let (r, w) = pipe_pair()?;
        fds.stdout = Some(w);
        p.stdout_r = Some(r);
    }
    if !matches!(p.sinks.stderr, Out::None) {
        let (r, w) = pipe_pair()?;
        fds.stderr = Some(w);
        p.stderr_r = Some(r);
    }
    Ok((fds, p))
}

impl PreparedPipes {
    /// Starts the copy tasks once the runtime holds the container's ends.
    pub fn start(self) -> Result<ProcessIo> {
        let (done_tx, done) = watch::channel(0usize);
        let done_tx = Arc::new(done_tx);
        let mut streams = 0;
        for (fd, out, stream) in [
            (self.stdout_r, self.sinks.stdout.clone(), Stream::Stdout),
            (self.stderr_r, self.sinks.stderr.clone(), Stream::Stderr),
        ] {
            let Some(fd) = fd else { continue };
            let rx = pipe::Receiver::from_owned_fd(fd)
                .map_err(|e| Error::io("watch container output pipe", e))?;
            streams += 1;
            let done_tx = done_tx.clone();
            tokio::spawn(async move {
                copy_out(rx, out, stream).await;
                done_tx.send_modify(|n| *n += 1);
            });
        }
        let stdin = Arc::new(Mutex::new(
            self.stdin_w.map(|w| StdinHandle::Pipe(Arc::new(w))),
        ));
        if let Some(h) = lock_pipe(&stdin) {
            let src = self.spec.stdin.clone();
            let stdin = stdin.clone();
            tokio::spawn(async move { copy_stdin_pipe(src, h, stdin).await });
        }
        Ok(ProcessIo {
            stdin,
            console: None,
            logs: self.sinks.logs,
            done,
            streams,
        })
    }
}

fn lock_pipe(stdin: &Arc<Mutex<Option<StdinHandle>>>) -> Option<Arc<OwnedFd>> {
    match stdin.lock().ok()?.as_ref()? {
        StdinHandle::Pipe(w) => Some(w.clone()),
        StdinHandle::Console => None,
    }
}

/// Reads the caller's stdin FIFO and writes into the container's stdin
/// pipe until the FIFO ends or CloseIO drops our handle.
async fn copy_stdin_pipe(src: String, w: Arc<OwnedFd>, handle: Arc<Mutex<Option<StdinHandle>>>) {
    let Ok(mut rx) = pipe::OpenOptions::new()
        .read_write(false)
        .open_receiver(&src)
    else {
        log::warn!("open stdin fifo {src} failed");
        return;
    };
    let Ok(dup) = w.try_clone() else { return };
    drop(w);
    let Ok(mut tx) = pipe::Sender::from_owned_fd(dup) else {
        return;
    };
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match rx.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if handle.lock().map(|h| h.is_none()).unwrap_or(true) {
            break;
        }
        if tx.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    // Our duplicate closes here; the original closes with the handle.
    if let Ok(mut h) = handle.lock() {
        h.take();
    }
}

async fn copy_out(mut rx: pipe::Receiver, out: Out, stream: Stream) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match rx.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        write_out(&out, stream, &buf[..n]).await;
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

/// A console socket the runtime connects to, to hand over the pty master
/// of a process created with a terminal.
pub struct ConsoleSocket {
    path: PathBuf,
    listener: tokio::net::UnixListener,
}

impl ConsoleSocket {
    /// Binds a fresh socket in `dir`.
    pub fn bind(dir: &Path) -> Result<ConsoleSocket> {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.join(format!("console-{}-{n}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path)
            .map_err(|e| Error::io(format!("bind console socket {}", path.display()), e))?;
        Ok(ConsoleSocket { path, listener })
    }

    /// The socket's path, for `--console-socket`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts the runtime's connection and receives the pty master.
    pub async fn receive(self) -> Result<OwnedFd> {
        let r = self.receive_inner().await;
        let _ = std::fs::remove_file(&self.path);
        r
    }

    async fn receive_inner(&self) -> Result<OwnedFd> {
        let (conn, _) = self
            .listener
            .accept()
            .await
            .map_err(|e| Error::io("accept on the console socket", e))?;
        loop {
            conn.readable()
                .await
                .map_err(|e| Error::io("console socket", e))?;
            match conn.try_io(Interest::READABLE, || recv_fd(conn.as_raw_fd())) {
                Ok(fd) => return Ok(fd),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(Error::io("receive the pty master", e)),
            }
        }
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn recv_fd(sock: i32) -> std::io::Result<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(std::io::Error::from)?;
    for c in msg.cmsgs().map_err(std::io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(&fd) = fds.first() {
                for &extra in &fds[1..] {
                    let _ = nix::unistd::close(extra);
                }
                // SAFETY: SCM_RIGHTS installed this descriptor in our table
                // for us; nothing else owns it.
                return Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
            }
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "console socket message carried no file descriptor",
    ))
}

/// Starts copying a pty master to the stdout destination and the stdin
/// FIFO into the pty.
pub fn start_console(spec: &IoSpec, master: OwnedFd) -> Result<ProcessIo> {
    let sinks = open_sinks(spec)?;
    nix::fcntl::fcntl(&master, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
        .map_err(|e| Error::io("pty master non-blocking", e.into()))?;
    // SAFETY: the AsyncFd owns the master from here on and only hands out
    // shared references to it, so the fd stays open and the same.
    let master =
        unsafe { AsyncFd::register_with_interest(master, Interest::READABLE | Interest::WRITABLE) }
            .map_err(|e| Error::io("watch the pty master", e.into_parts().1))?;
    let master = Arc::new(master);
    let (done_tx, done) = watch::channel(0usize);
    let mut streams = 0;
    if !matches!(sinks.stdout, Out::None) {
        streams = 1;
        let out = sinks.stdout.clone();
        let m = master.clone();
        tokio::spawn(async move {
            copy_console_out(m, out).await;
            done_tx.send_modify(|n| *n += 1);
        });
    }
    let stdin = Arc::new(Mutex::new(if spec.stdin.is_empty() {
        None
    } else {
        Some(StdinHandle::Console)
    }));
    if !spec.stdin.is_empty() {
        let src = spec.stdin.clone();
        let m = master.clone();
        let h = stdin.clone();
        tokio::spawn(async move { copy_console_in(src, m, h).await });
    }
    Ok(ProcessIo {
        stdin,
        console: Some(master),
        logs: sinks.logs,
        done,
        streams,
    })
}

async fn copy_console_out(afd: Arc<AsyncFd<OwnedFd>>, out: Out) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let Ok(mut g) = afd.readable().await else {
            break;
        };
        match g.try_io(|fd| nix::unistd::read(fd.get_ref(), &mut buf).map_err(std::io::Error::from))
        {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => write_out(&out, Stream::Stdout, &buf[..n]).await,
            // EIO: every slave end is closed (the process exited).
            Ok(Err(_)) => break,
            Err(_would_block) => continue,
        }
    }
    finish_out(&out, Stream::Stdout);
}

async fn copy_console_in(
    src: String,
    afd: Arc<AsyncFd<OwnedFd>>,
    handle: Arc<Mutex<Option<StdinHandle>>>,
) {
    let Ok(mut rx) = pipe::OpenOptions::new().open_receiver(&src) else {
        log::warn!("open stdin fifo {src} failed");
        return;
    };
    let mut buf = vec![0u8; CHUNK];
    'outer: loop {
        let n = match rx.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if handle.lock().map(|h| h.is_none()).unwrap_or(true) {
            break;
        }
        let mut off = 0;
        while off < n {
            let Ok(mut g) = afd.writable().await else {
                break 'outer;
            };
            match g.try_io(|fd| {
                nix::unistd::write(fd.get_ref(), &buf[off..n]).map_err(std::io::Error::from)
            }) {
                Ok(Ok(w)) => off += w,
                Ok(Err(_)) => break 'outer,
                Err(_would_block) => continue,
            }
        }
    }
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
}
