//! The one error type of this crate.

use std::path::PathBuf;

use nix::errno::Errno;

/// Everything that can go wrong while managing a cgroup.
///
/// Every variant that touches the file system names the file and the errno,
/// so the message alone tells an operator what the kernel refused
/// ("write 100 to /sys/fs/cgroup/memory/x/memory.limit_in_bytes: EBUSY: …").
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading a cgroup (or /proc) file failed.
    #[error("read {}: {errno}", path.display())]
    Read {
        /// The file that could not be read.
        path: PathBuf,
        /// What the kernel said.
        errno: Errno,
    },

    /// Writing a value to a cgroup file failed.
    #[error("write {value} to {}: {errno}", path.display())]
    Write {
        /// The file that refused the value.
        path: PathBuf,
        /// The value as it was written.
        value: String,
        /// What the kernel said.
        errno: Errno,
    },

    /// Opening a cgroup directory or file failed.
    #[error("open {}: {errno}", path.display())]
    Open {
        /// The path that could not be opened.
        path: PathBuf,
        /// What the kernel said.
        errno: Errno,
    },

    /// Creating a cgroup directory failed.
    #[error("mkdir {}: {errno}", path.display())]
    Mkdir {
        /// The directory that could not be created.
        path: PathBuf,
        /// What the kernel said.
        errno: Errno,
    },

    /// Removing a cgroup directory failed (after bounded retries for EBUSY).
    #[error("rmdir {}: {errno}", path.display())]
    Rmdir {
        /// The directory that could not be removed.
        path: PathBuf,
        /// What the kernel said on the last attempt.
        errno: Errno,
    },

    /// statfs(2) on the cgroup mount point failed, so the hierarchy is unknown.
    #[error("statfs {}: {errno}", path.display())]
    Statfs {
        /// The path that was probed.
        path: PathBuf,
        /// What the kernel said.
        errno: Errno,
    },

    /// A cgroup file held something this crate does not understand.
    #[error("parse {}: unexpected content {content:?}", path.display())]
    Parse {
        /// The file that was read.
        path: PathBuf,
        /// What it contained (trimmed).
        content: String,
    },

    /// The OCI `cgroupsPath` (or the container id used to build it) is unusable.
    #[error("invalid cgroups path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// Why it was refused.
        reason: String,
    },

    /// The OCI `linux.resources` ask for something impossible or malformed.
    #[error("invalid resources: {0}")]
    InvalidResources(String),

    /// A resource needs a controller that is not mounted (v1) or not enabled (v2).
    #[error("cgroup controller {controller} is not available; it is needed for {wanted}")]
    ControllerMissing {
        /// The controller, e.g. "memory" or "hugetlb".
        controller: String,
        /// What needed it, e.g. "memory.max" or "linux.resources.memory".
        wanted: String,
    },

    /// The request is valid but this crate (or this kernel) cannot honour it.
    #[error("{0}")]
    Unsupported(String),

    /// The systemd driver was requested on a machine that does not run systemd.
    #[error("systemd cgroup driver requested but systemd is not running (no /run/systemd/system)")]
    SystemdNotRunning,

    /// systemd refused or failed an operation on a unit, or could not be
    /// reached over its private D-Bus socket.
    #[error("systemd: {op} unit {unit}: {message}")]
    Systemd {
        /// What we asked: "start", "stop" or "update".
        op: &'static str,
        /// The unit, e.g. carapace-abc.scope.
        unit: String,
        /// systemd's error name and message, or the transport failure.
        message: String,
    },

    /// The kernel refused a memory limit because the cgroup already uses more.
    #[error(
        "write {limit} to {}: EBUSY: the cgroup already uses {usage} bytes, more than the new limit",
        path.display()
    )]
    MemoryBelowUsage {
        /// The limit file.
        path: PathBuf,
        /// The requested limit in bytes.
        limit: i64,
        /// The usage the kernel reported.
        usage: u64,
    },

    /// A freeze or thaw did not settle within the bounded wait.
    #[error("timed out after {waited_ms} ms waiting for {} to report {state}", path.display())]
    Timeout {
        /// The state file that was polled.
        path: PathBuf,
        /// The state that never came.
        state: &'static str,
        /// How long we waited.
        waited_ms: u64,
    },

    /// kill(2) on a process of the cgroup failed with something other than ESRCH.
    #[error("send signal {signal} to pid {pid}: {errno}")]
    Kill {
        /// The target process.
        pid: i32,
        /// The signal number.
        signal: i32,
        /// What the kernel said.
        errno: Errno,
    },

    /// A bpf(2) operation for the cgroup v2 device filter failed.
    #[error("bpf {op} for {}: {errno}{log}", path.display())]
    Bpf {
        /// The bpf(2) command, e.g. "BPF_PROG_LOAD".
        op: &'static str,
        /// The cgroup directory the program is for.
        path: PathBuf,
        /// What the kernel said.
        errno: Errno,
        /// The verifier log (prefixed with ": verifier log: "), empty if none.
        log: String,
    },
}

/// Turns an `std::io::Error` from a syscall into its errno (EIO if it has none).
pub(crate) fn errno_of(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}
