//! What the shim knows about each process it runs: the container's init
//! and its execs, their state, exit status and stdio.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::types::task::Status;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::stdio::{IoSpec, ProcessIo};

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitInfo {
    /// Exit code, or 128 + signal number for a signal death.
    pub status: u32,
    /// When the shim reaped it.
    pub at: SystemTime,
}

impl ExitInfo {
    /// The protobuf timestamp of `at`.
    pub fn timestamp(&self) -> Timestamp {
        to_timestamp(self.at)
    }
}

/// A SystemTime as a protobuf Timestamp.
pub fn to_timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let mut ts = Timestamp::new();
    ts.seconds = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    ts.nanos = i32::try_from(d.subsec_nanos()).unwrap_or(0);
    ts
}

/// One process: the init (exec ID "") or an exec.
pub struct Proc {
    /// "" for the container's init.
    pub exec_id: String,
    /// Host PID; 0 until created (init) or started (exec).
    pub pid: i32,
    /// Task API status.
    pub status: Status,
    /// stdio as the caller named it.
    pub io_spec: IoSpec,
    /// Live copies, once the process has its stdio.
    pub io: Option<Arc<ProcessIo>>,
    /// For execs: the OCI process spec file handed to `runtime exec`.
    pub spec_file: Option<PathBuf>,
    exit_tx: watch::Sender<Option<ExitInfo>>,
}

impl Proc {
    /// A process not yet running.
    pub fn new(exec_id: &str, io_spec: IoSpec) -> Proc {
        let (exit_tx, _) = watch::channel(None);
        Proc {
            exec_id: exec_id.to_string(),
            pid: 0,
            status: Status::CREATED,
            io_spec,
            io: None,
            spec_file: None,
            exit_tx,
        }
    }

    /// The recorded exit, if any.
    pub fn exit(&self) -> Option<ExitInfo> {
        *self.exit_tx.borrow()
    }

    /// A receiver that sees the exit once published (Wait).
    pub fn subscribe(&self) -> watch::Receiver<Option<ExitInfo>> {
        self.exit_tx.subscribe()
    }

    /// Records the exit and wakes every waiter.
    pub fn set_exited(&mut self, e: ExitInfo) {
        self.status = Status::STOPPED;
        self.exit_tx.send_replace(Some(e));
    }

    /// Whether the process is still alive as far as the shim knows.
    pub fn is_live(&self) -> bool {
        self.pid > 0 && self.exit().is_none()
    }
}

/// Execs and containers are named by the caller; the name becomes part of
/// file names in the bundle, so anything that could climb out is refused.
pub fn check_name(kind: &str, id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "invalid {kind} ID {id:?}: use 1-128 characters of [A-Za-z0-9_.+-], not starting with '.'"
        )))
    }
}

/// What the shim leaves behind when the container's init exits, so that
/// whoever asks later (the daemon after a restart, or `carapace-shim
/// delete` after the shim itself is gone) still learns the outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitFile {
    /// Host PID of the init.
    pub pid: i32,
    /// Exit status (128 + signal for a signal death).
    pub exit_status: u32,
    /// Seconds since the epoch of the exit.
    pub exited_at_secs: i64,
    /// Nanoseconds part.
    pub exited_at_nanos: u32,
}

/// Name of the exit file in the bundle.
pub const EXIT_FILE: &str = "init.exit";

impl ExitFile {
    /// Writes it atomically (temp + rename) into `bundle`.
    pub fn write(&self, bundle: &Path) -> Result<()> {
        let tmp = bundle.join(format!("{EXIT_FILE}.tmp"));
        let data = serde_json::to_vec(self)
            .map_err(|e| Error::InvalidArgument(format!("encode exit file: {e}")))?;
        std::fs::write(&tmp, data).map_err(|e| Error::io(format!("write {}", tmp.display()), e))?;
        let dst = bundle.join(EXIT_FILE);
        std::fs::rename(&tmp, &dst).map_err(|e| Error::io(format!("rename {}", dst.display()), e))
    }

    /// Reads it back; `None` when the init's exit was never recorded.
    pub fn read(bundle: &Path) -> Option<ExitFile> {
        let data = std::fs::read(bundle.join(EXIT_FILE)).ok()?;
        serde_json::from_slice(&data).ok()
    }

    /// Builds one from a recorded exit.
    pub fn from_exit(pid: i32, e: ExitInfo) -> ExitFile {
        let d =
            e.at.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
        ExitFile {
            pid,
            exit_status: e.status,
            exited_at_secs: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            exited_at_nanos: d.subsec_nanos(),
        }
    }

    /// The protobuf timestamp of the exit.
    pub fn timestamp(&self) -> Timestamp {
        let mut ts = Timestamp::new();
        ts.seconds = self.exited_at_secs;
        ts.nanos = i32::try_from(self.exited_at_nanos).unwrap_or(0);
        ts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_ids_that_could_escape_the_bundle_are_refused() {
        assert!(check_name("exec", "probe-1").is_ok());
        assert!(check_name("exec", "a.b_c+d").is_ok());
        for bad in ["", "..", ".hidden", "a/b", "../x", "x y", &"a".repeat(129)] {
            assert!(check_name("exec", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn exit_file_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(ExitFile::read(dir.path()).is_none());
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 5);
        let f = ExitFile::from_exit(42, ExitInfo { status: 137, at });
        f.write(dir.path()).expect("write");
        let back = ExitFile::read(dir.path()).expect("read");
        assert_eq!(back, f);
        assert_eq!(back.timestamp().seconds, 1_700_000_000);
        assert_eq!(back.timestamp().nanos, 5);
    }

    #[test]
    fn waiters_see_the_exit() {
        let mut p = Proc::new("", IoSpec::default());
        let rx = p.subscribe();
        assert!(rx.borrow().is_none());
        p.pid = 7;
        assert!(p.is_live());
        let e = ExitInfo {
            status: 3,
            at: SystemTime::now(),
        };
        p.set_exited(e);
        assert_eq!(*rx.borrow(), Some(e));
        assert_eq!(p.status, Status::STOPPED);
        assert!(!p.is_live());
    }
}
