//! The console socket: how a runtime hands the shim the pty master of a
//! process created with a terminal (runc's `--console-socket` protocol, one
//! SCM_RIGHTS message).

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use tokio::io::Interest;

use crate::error::{Error, Result};

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
