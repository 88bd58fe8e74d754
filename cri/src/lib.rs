//! `carapace`: the CRI daemon kubelet, crictl and critest talk to over a
//! unix socket. This crate holds the gRPC services (one file per CRI call
//! as they grow), the daemon's configuration and the domain modules they
//! call.

pub mod admin;
pub mod apparmor;
pub mod authority;
pub mod cdi;
pub mod cgroup_limits;
pub mod checkpoint;
pub mod clock;
pub mod config;
pub mod container;
#[cfg(test)]
pub mod crash_world;
pub mod cri_annotations;
pub mod daemon;
pub mod error_kind;
pub mod events;
#[cfg(test)]
pub mod fake_effects;
pub mod grpc;
pub mod heap;
pub mod idmap;
pub mod ids;
pub mod image;
pub mod image_service;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod namespaces;
pub mod network;
pub mod pod;
pub mod private;
pub mod prometheus;
pub mod registry;
pub mod runtime_handler;
pub mod runtime_service;
pub mod sandbox;
pub mod sd_notify;
pub mod selinux;
pub mod server;
pub mod service;
pub mod shim_client;
pub mod shim_effects;
pub mod shim_log;
pub mod stats;
pub mod store;
pub mod streaming;
pub mod task;
pub mod task_api;
pub mod tls_crypto;
