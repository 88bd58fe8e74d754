//! cgroup management for Carapace: the runtime, the shim and the daemon use
//! it to create a container's cgroup, apply OCI `linux.resources`, freeze,
//! kill and remove it, on cgroup v1 (including hybrid) and v2, with the
//! cgroupfs driver or the systemd one (transient units over D-Bus).
//!
//! ```no_run
//! # fn main() -> Result<(), carapace_cgroups::Error> {
//! use carapace_cgroups::Manager;
//! let cg = Manager::new(Some("/kubepods/pod1/abc"), "abc", false)?;
//! cg.create()?;
//! cg.add_process(1234)?;
//! cg.apply(&oci_spec::runtime::LinuxResources::default())?;
//! cg.kill_all(libc::SIGKILL)?;
//! cg.destroy()?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod convert;
mod devices;
mod error;
mod fs;
mod manager;
mod mountinfo;
mod path;
pub mod stats;
mod systemd;
mod v1;
mod v2;

pub use convert::{blkio_weight_to_io_weight, io_max_lines, shares_to_weight, swap_v2};
pub use devices::{apply_device_rules_v2, attached_device_filters};
pub use error::Error;
pub use manager::{detect, Manager, CGROUP_ROOT};
pub use path::{expand_slice, is_systemd_form, systemd_unit_name, DEFAULT_PARENT, DEFAULT_SLICE};
pub use stats::{CpuStats, HugetlbStats, MemoryStats, PidsStats, Stats};

/// Checks that the systemd driver can work on this host: systemd is PID 1,
/// the host is on cgroup v2 and systemd's private D-Bus socket accepts us. Lets a daemon configured for
/// the systemd driver refuse to start, saying why, rather than fail every
/// pod later.
pub fn check_systemd() -> Result<(), Error> {
    systemd::probe()
}

/// Which cgroup version a host (or a [`Manager`]) uses; decides which files
/// exist and how resources are spelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hierarchy {
    /// Legacy: one hierarchy per controller (hybrid hosts count as V1).
    V1,
    /// Unified: a single cgroup2 hierarchy.
    V2,
}

#[cfg(test)]
mod tests;
