//! The parent ↔ child channel of the create/exec choreography: a
//! SOCK_SEQPACKET socketpair carrying one JSON message per packet, so
//! message boundaries survive and a dead peer reads as end-of-file.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType};
use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};

/// The biggest message we exchange (an error text or a warning).
const MAX_MSG: usize = 64 * 1024;

/// Messages between the runtime CLI (parent), the namespace-joining child and
/// the container init.
#[derive(Debug, Serialize, Deserialize)]
pub enum Msg {
    /// Parent → child: the child is in the cgroup, go on.
    Go,
    /// Child → parent: new user namespace made, write the id maps.
    UserNsReady,
    /// Parent → child: id maps written.
    UserNsMapped,
    /// Child → parent: host PID of the container init.
    InitPid(i32),
    /// Init → parent: run the createRuntime/prestart hooks now.
    RunCreateRuntimeHooks,
    /// Parent → init: hooks done.
    HooksDone,
    /// Init → parent: a warning to log.
    Warning(String),
    /// Init → parent: set up, blocked on the exec FIFO (create) or about to
    /// exec (exec).
    Ready,
    /// Any child → parent: setup failed with this message.
    Error(String),
}

/// One end of the channel.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

impl Channel {
    /// Close this end's copy in a forked child (which inherited it): a
    /// child that keeps the parent's end open never reads end-of-file when
    /// the parent gives up, and the parent's wait for it would hang.
    pub fn close_inherited(fd: std::os::fd::RawFd) {
        let _ = nix::unistd::close(fd);
    }

    /// The raw fd, for [`Channel::close_inherited`] in a forked child.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }

    /// A connected pair, both ends close-on-exec.
    pub fn pair() -> Result<(Channel, Channel)> {
        let (a, b) = socket::socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .ctx(|| "socketpair for the init channel")?;
        Ok((Channel { fd: a }, Channel { fd: b }))
    }

    /// Send one message.
    pub fn send(&self, m: &Msg) -> Result<()> {
        let data = serde_json::to_vec(m).map_err(|e| Error::Init(e.to_string()))?;
        socket::send(self.fd.as_raw_fd(), &data, MsgFlags::MSG_NOSIGNAL)
            .ctx(|| "send on the init channel")?;
        Ok(())
    }

    /// Receive one message; `None` when the peer closed its end.
    pub fn recv(&self) -> Result<Option<Msg>> {
        let mut buf = vec![0u8; MAX_MSG];
        loop {
            match socket::recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(0) => return Ok(None),
                Ok(n) => {
                    return serde_json::from_slice(&buf[..n])
                        .map(Some)
                        .map_err(|e| Error::Init(format!("bad message from init: {e}")))
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).ctx(|| "receive on the init channel"),
            }
        }
    }

    /// Receive, treating end-of-file as an error described by `who`.
    pub fn expect(&self, who: &str) -> Result<Msg> {
        self.recv()?
            .ok_or_else(|| Error::Init(format!("{who} exited before finishing setup")))
    }

    /// Raw fd (the init keeps it across its setup).
    pub fn raw(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_eof_is_none() {
        let (a, b) = Channel::pair().expect("pair");
        a.send(&Msg::InitPid(42)).expect("send");
        a.send(&Msg::Error("boom".into())).expect("send");
        assert!(matches!(b.recv().expect("recv"), Some(Msg::InitPid(42))));
        assert!(matches!(b.recv().expect("recv"), Some(Msg::Error(e)) if e == "boom"));
        drop(a);
        assert!(b.recv().expect("recv").is_none());
        assert!(b.expect("init").is_err());
    }
}
