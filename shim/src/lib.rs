//! `carapace-shim`: the per-container shim. One process per container (and
//! per pod infra process) that owns the container's stdio, writes its CRI
//! log, reaps it as a subreaper, runs its execs and reports exits and OOM
//! kills to whoever started it — the Carapace daemon or containerd — over
//! the containerd shim v2 Task API (ttrpc).
pub mod crilog;
pub mod error;
pub mod io_service;
pub mod oom;
pub mod process;
pub mod proto;
pub mod publisher;
pub mod runtime_cli;
pub mod serve;
pub mod service;
pub mod stats;
pub mod stdio;
pub mod task;
