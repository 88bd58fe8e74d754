//! carapace-runtime: Carapace's low-level OCI runtime. It turns an OCI
//! bundle into an isolated process (namespaces, cgroups, a pivot_root'ed
//! rootfs, capabilities, seccomp) behind a runc-compatible command line, so
//! the Carapace shim, containerd, CRI-O and the OCI validation tools can
//! drive it exactly as they drive runc or crun.
//!
//! Layout: `commands` holds one module per CLI verb; `process` the fork
//! choreography; `rootfs`, `namespaces`, `credentials`, `seccomp`,
//! `console`, `hooks`, `sysctl` the pieces of container setup; `state` the
//! per-container state on disk. cgroups live in the `carapace-cgroups` crate,
//! shared with the shim and the daemon.

pub mod commands;
pub mod console;
pub mod credentials;
pub mod criu;
pub mod error;
pub mod hooks;
pub mod logging;
pub mod lsm;
pub mod namespaces;
pub mod process;
pub mod procfs;
pub mod rootfs;
pub mod seccomp;
pub mod selfexe;
pub mod signal;
pub mod spec;
pub mod state;
pub mod syscall;
pub mod sysctl;

pub use error::{Error, Result};
