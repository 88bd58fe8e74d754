//! Terminals: with `process.terminal`, the container's pty is created inside
//! the container (from its own devpts), and the master end is sent over the
//! caller's `--console-socket` with SCM_RIGHTS, exactly as runc does, so any
//! shim written for runc receives it unchanged.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

use crate::error::{Context, Error, Result};

/// Connect to the caller's console socket (before any namespace is joined:
/// the path is a host path).
pub fn connect(path: &Path) -> Result<OwnedFd> {
    let s =
        UnixStream::connect(path).ctx(|| format!("connect console socket {}", path.display()))?;
    Ok(s.into())
}

/// Create the pty from the container's /dev/ptmx, send its master over
/// `socket`, and make its slave the process's controlling terminal and stdio.
pub fn setup(socket: &OwnedFd, size: Option<(u16, u16)>) -> Result<()> {
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .ctx(|| "open /dev/ptmx in the container")?;
    nix::pty::grantpt(&master).ctx(|| "grantpt")?;
    nix::pty::unlockpt(&master).ctx(|| "unlockpt")?;
    let name = nix::pty::ptsname_r(&master).ctx(|| "ptsname")?;
    let slave = nix::fcntl::open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(|| format!("open {name}"))?;
    if let Some((rows, cols)) = size {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ on a pty fd with a valid winsize.
        unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }
    send_fd(socket.as_raw_fd(), master.as_raw_fd(), &name)?;
    drop(master);
    nix::unistd::setsid().ctx(|| "setsid")?;
    // SAFETY: TIOCSCTTY on our new session's terminal, argument 0.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
        return Err(nix::Error::last()).ctx(|| "TIOCSCTTY");
    }
    for target in 0..3 {
        // SAFETY: dup2 onto the standard fds; the slave stays valid.
        if unsafe { libc::dup2(slave.as_raw_fd(), target) } < 0 {
            return Err(nix::Error::last()).ctx(|| "dup2 pty slave to stdio");
        }
    }
    Ok(())
}

/// Send `fd` with `name` as payload over the unix socket `sock`.
pub fn send_fd(sock: RawFd, fd: RawFd, name: &str) -> Result<()> {
    let fds = [fd];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(name.as_bytes())];
    sendmsg::<()>(sock, &iov, &cmsg, MsgFlags::empty(), None)
        .ctx(|| "send pty master over the console socket")?;
    Ok(())
}

/// Refuse a terminal without a console socket, and the reverse, up front.
pub fn check(terminal: bool, socket: Option<&Path>) -> Result<()> {
    match (terminal, socket) {
        (true, None) => Err(Error::InvalidArgument(
            "process.terminal is true but no --console-socket was given".into(),
        )),
        (false, Some(_)) => Err(Error::InvalidArgument(
            "--console-socket given but process.terminal is false".into(),
        )),
        _ => Ok(()),
    }
}
