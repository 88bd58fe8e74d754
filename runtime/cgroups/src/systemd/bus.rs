//! A blocking connection to systemd's manager over its private socket,
//! /run/systemd/private: the peer-to-peer D-Bus socket PID 1 keeps for root
//! (systemctl uses it too), so no dbus-daemon needs to run. Only root may
//! connect; the runtime and the daemon are root.
//!
//! One call at a time: a method call, its reply, and for calls that queue a
//! job, the JobRemoved signal that says how the job ended. systemd sends
//! its signals to every private-socket client, so no match rule is needed;
//! signals that arrive before the reply are remembered, not dropped.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use super::wire::{self, Arg, Call, Message};
use crate::error::Error;

/// Where PID 1 listens for private D-Bus connections.
pub(crate) const PRIVATE_SOCKET: &str = "/run/systemd/private";

/// How long one job may take before we give up on it (runc's 30 s).
const JOB_TIMEOUT: Duration = Duration::from_secs(30);

const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
const DESTINATION: &str = "org.freedesktop.systemd1";

/// systemd's error names we act on.
pub(crate) const NO_SUCH_UNIT: &str = "org.freedesktop.systemd1.NoSuchUnit";
pub(crate) const UNIT_EXISTS: &str = "org.freedesktop.systemd1.UnitExists";

/// A failed call: systemd's error name (None for transport problems) and
/// its message.
#[derive(Debug)]
pub(crate) struct CallError {
    pub name: Option<String>,
    pub message: String,
}

impl CallError {
    fn transport(message: String) -> CallError {
        CallError {
            name: None,
            message,
        }
    }

    /// Whether systemd answered with this error name.
    pub(crate) fn is(&self, name: &str) -> bool {
        self.name.as_deref() == Some(name)
    }

    /// This failure as the crate's error, for unit `unit` and operation `op`.
    pub(crate) fn into_error(self, op: &'static str, unit: &str) -> Error {
        let message = match self.name {
            Some(n) => format!("{n}: {}", self.message),
            None => self.message,
        };
        Error::Systemd {
            op,
            unit: unit.to_string(),
            message,
        }
    }
}

/// An authenticated connection to PID 1.
pub(crate) struct Bus {
    sock: UnixStream,
    serial: u32,
    /// JobRemoved results that arrived while waiting for something else,
    /// by job object path.
    finished: HashMap<String, String>,
}

impl Bus {
    /// Connects and authenticates (SASL EXTERNAL with our uid).
    pub(crate) fn connect() -> Result<Bus, CallError> {
        let fail = |what: &str, e: std::io::Error| {
            CallError::transport(format!("{what} {PRIVATE_SOCKET}: {e}"))
        };
        let mut sock = UnixStream::connect(PRIVATE_SOCKET).map_err(|e| fail("connect to", e))?;
        sock.set_read_timeout(Some(JOB_TIMEOUT))
            .map_err(|e| fail("set a timeout on", e))?;
        sock.set_write_timeout(Some(JOB_TIMEOUT))
            .map_err(|e| fail("set a timeout on", e))?;
        let uid = nix::unistd::geteuid().as_raw().to_string();
        let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
        sock.write_all(format!("\0AUTH EXTERNAL {hex}\r\n").as_bytes())
            .map_err(|e| fail("authenticate to", e))?;
        let line = read_line(&mut sock).map_err(|e| fail("authenticate to", e))?;
        if !line.starts_with("OK ") {
            return Err(CallError::transport(format!(
                "{PRIVATE_SOCKET} refused authentication: {line:?}"
            )));
        }
        sock.write_all(b"BEGIN\r\n")
            .map_err(|e| fail("authenticate to", e))?;
        let mut bus = Bus {
            sock,
            serial: 0,
            finished: HashMap::new(),
        };
        bus.sync()?;
        Ok(bus)
    }

    /// Waits until the server is past authentication and reading messages.
    ///
    /// sd-bus (systemd 252 at least) reads up to 256 bytes at a time while
    /// authenticating. A small first call that lands in the same read as
    /// BEGIN stays in its buffer, unparsed, until more bytes arrive — never,
    /// for a client waiting on the reply (we saw StopUnit hang that way).
    /// So we ping, and ping again every few milliseconds until a reply comes:
    /// each new ping is a read event that gets the buffer parsed. Usually the
    /// first ping is answered at once.
    fn sync(&mut self) -> Result<(), CallError> {
        let deadline = Instant::now() + JOB_TIMEOUT;
        let mut pings = Vec::new();
        loop {
            pings.push(self.send(&Call {
                path: MANAGER_PATH,
                interface: "org.freedesktop.DBus.Peer",
                member: "Ping",
                destination: DESTINATION,
                args: &[],
            })?);
            if !self.readable_within(Duration::from_millis(20))? {
                if Instant::now() >= deadline {
                    return Err(CallError::transport(format!(
                        "no reply to Ping from systemd within {} s",
                        JOB_TIMEOUT.as_secs()
                    )));
                }
                continue;
            }
            // Something came: read until a ping's reply (a signal may come
            // first). Every ping sent will be answered; later replies to
            // the others are skipped by serial.
            loop {
                let m = self.read_message(deadline, "reply to Ping")?;
                match m.kind {
                    wire::SIGNAL => self.remember(&m),
                    wire::METHOD_RETURN | wire::ERROR
                        if m.reply_serial.is_some_and(|s| pings.contains(&s)) =>
                    {
                        return Ok(());
                    }
                    _ => {}
                }
            }
        }
    }

    /// Whether bytes (or a hang-up) are waiting within `wait`, without
    /// consuming them.
    fn readable_within(&mut self, wait: Duration) -> Result<bool, CallError> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let mut fds = [PollFd::new(self.sock.as_fd(), PollFlags::POLLIN)];
        let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(n) => Ok(n > 0),
            Err(nix::errno::Errno::EINTR) => Ok(false),
            Err(e) => Err(CallError::transport(format!("poll {PRIVATE_SOCKET}: {e}"))),
        }
    }

    /// Sends a call; returns its serial.
    fn send(&mut self, call: &Call<'_>) -> Result<u32, CallError> {
        self.serial = self.serial.wrapping_add(1).max(1);
        let msg = wire::encode_call(call, self.serial);
        self.sock
            .write_all(&msg)
            .map_err(|e| CallError::transport(format!("write to {PRIVATE_SOCKET}: {e}")))?;
        Ok(self.serial)
    }

    /// Reads the next message; `what` names what we wait for, for the
    /// error when nothing comes in time.
    fn read_message(&mut self, deadline: Instant, what: &str) -> Result<Message, CallError> {
        let left = deadline.saturating_duration_since(Instant::now());
        let late = || {
            CallError::transport(format!(
                "no {what} from systemd within {} s",
                JOB_TIMEOUT.as_secs()
            ))
        };
        if left.is_zero() {
            return Err(late());
        }
        let io = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => late(),
            _ => CallError::transport(format!("read {what} from {PRIVATE_SOCKET}: {e}")),
        };
        self.sock.set_read_timeout(Some(left)).map_err(io)?;
        let mut fixed = [0u8; 16];
        self.sock.read_exact(&mut fixed).map_err(io)?;
        let total = wire::message_len(&fixed).map_err(|e| CallError::transport(e.to_string()))?;
        let mut buf = vec![0u8; total];
        buf[..16].copy_from_slice(&fixed);
        self.sock.read_exact(&mut buf[16..]).map_err(io)?;
        wire::decode(&buf).map_err(|e| CallError::transport(e.to_string()))
    }

    /// Calls a manager method and returns its reply; an error reply is a
    /// [`CallError`] carrying systemd's error name.
    pub(crate) fn call(&mut self, member: &str, args: &[Arg]) -> Result<Message, CallError> {
        let serial = self.send(&Call {
            path: MANAGER_PATH,
            interface: MANAGER,
            member,
            destination: DESTINATION,
            args,
        })?;
        let deadline = Instant::now() + JOB_TIMEOUT;
        loop {
            let m = self.read_message(deadline, &format!("reply to {member}"))?;
            match m.kind {
                wire::SIGNAL => self.remember(&m),
                wire::METHOD_RETURN if m.reply_serial == Some(serial) => return Ok(m),
                wire::ERROR if m.reply_serial == Some(serial) => {
                    return Err(CallError {
                        name: m.error_name,
                        message: m.strings.into_iter().next().unwrap_or_default(),
                    })
                }
                _ => {}
            }
        }
    }

    fn remember(&mut self, m: &Message) {
        if m.member.as_deref() == Some("JobRemoved") {
            if let [job, _unit, result] = &m.strings[..] {
                self.finished.insert(job.clone(), result.clone());
            }
        }
    }

    /// Calls a method that queues a job (its reply is the job's path) and
    /// waits for the job to finish; a result other than "done" is an error.
    pub(crate) fn call_job(&mut self, member: &str, args: &[Arg]) -> Result<(), CallError> {
        let reply = self.call(member, args)?;
        let Some(job) = reply.strings.into_iter().next() else {
            return Err(CallError::transport(format!(
                "{member}: systemd's reply has no job path"
            )));
        };
        let deadline = Instant::now() + JOB_TIMEOUT;
        let result = loop {
            if let Some(r) = self.finished.remove(&job) {
                break r;
            }
            let m = self.read_message(deadline, &format!("end of job {job}"))?;
            if m.kind == wire::SIGNAL {
                self.remember(&m);
            }
        };
        if result == "done" {
            Ok(())
        } else {
            Err(CallError::transport(format!(
                "{member}: job {job} finished with result {result:?}"
            )))
        }
    }
}

/// Reads one SASL line (up to "\r\n"), byte by byte: the binary protocol
/// starts right after it and must not be read ahead.
fn read_line(sock: &mut UnixStream) -> std::io::Result<String> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        if line.len() > 512 {
            return Err(std::io::Error::other("authentication line too long"));
        }
        sock.read_exact(&mut b)?;
        line.push(b[0]);
    }
    line.truncate(line.len() - 2);
    Ok(String::from_utf8_lossy(&line).into_owned())
}
