//! Pod sandboxes: the shared namespaces, files, cgroup and network of a
//! pod, held open by an infra process under its own shim. Every sandbox is
//! a record in the metadata store, written before each step is taken, so a
//! daemon that dies at any point can finish or undo the step on restart
//! ([`recover`]).
//!
//! One file per operation: [`run`], [`stop`], [`remove`] (which also holds
//! the teardown every failure path shares), [`recover`]; [`record`] is what
//! is stored, [`registry`] the in-memory index the CRI calls read.

pub mod cgroup;
#[cfg(test)]
mod crash_tests;
pub mod effects;
pub mod error;
pub mod files;
pub mod infra;
pub mod record;
pub mod recover;
pub mod registry;
pub mod remove;
pub mod resources;
pub mod run;
pub mod shm;
pub mod spec;
pub mod stop;
pub mod sysctl;

pub use error::SandboxError;
pub use record::{Phase, SandboxRecord};
pub use registry::{Sandbox, Sandboxes};
