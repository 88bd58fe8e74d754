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
    private_dir: PathBuf,
    listener: tokio::net::UnixListener,
}

impl ConsoleSocket {
    /// Binds a fresh socket in a private directory made in `dir` by
    /// mkdtemp(3): mode 0700 and an unguessable name, so no other user of
    /// the node can connect first and hand us a terminal of theirs, nor
    /// plant something at the path (`dir` is usually the shared /tmp).
    pub fn bind(dir: &Path) -> Result<ConsoleSocket> {
        let private_dir = nix::unistd::mkdtemp(&dir.join("carapace-console-XXXXXX"))
            .map_err(|e| Error::io(format!("mkdtemp in {}", dir.display()), e.into()))?;
        let path = private_dir.join("c.sock");
        let listener = match tokio::net::UnixListener::bind(&path) {
            Ok(l) => l,
            Err(e) => {
                let _ = std::fs::remove_dir(&private_dir);
                return Err(Error::io(
                    format!("bind console socket {}", path.display()),
                    e,
                ));
            }
        };
        Ok(ConsoleSocket {
            path,
            private_dir,
            listener,
        })
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
        let _ = std::fs::remove_dir(&self.private_dir);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn console_socket_lives_in_a_private_directory_removed_after_use() {
        let tmp = tempfile::tempdir().expect("tmp");
        let sock = ConsoleSocket::bind(tmp.path()).expect("bind");
        let dir = sock.path().parent().expect("parent").to_path_buf();
        assert_ne!(dir, tmp.path(), "socket bound directly in the shared dir");
        let mode = std::fs::metadata(&dir).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
        let other = ConsoleSocket::bind(tmp.path()).expect("bind again");
        assert_ne!(other.path(), sock.path());
        drop(sock);
        drop(other);
        assert_eq!(
            std::fs::read_dir(tmp.path()).expect("ls").count(),
            0,
            "console socket directories left behind"
        );
    }
}
