//! Containers in pods: the OCI spec built from image + CRI config + pod
//! ([`spec`]), records in the metadata store, the root filesystem mounted
//! from the image's layers, one shim per container that runs it and writes
//! its CRI log, and the lifecycle calls (one file each).

#[cfg(test)]
mod crash_tests;
pub mod create;
pub mod error;
pub mod exec;
pub mod fifo_io;
pub mod image_volume;
pub mod logs;
pub mod record;
pub mod recover;
pub mod registry;
pub mod remove;
pub mod restore;
pub mod seccomp_default;
pub mod spec;
pub mod start;
pub mod stop;
pub mod update;
pub mod userns;

pub use error::ContainerError;
pub use record::{ContainerRecord, Phase};
pub use registry::{Container, Containers};
