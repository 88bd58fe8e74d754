//! What the daemon asks of a task's shim over the task's life — launch,
//! create, start, wait, stop, reap — behind one small trait, so the
//! orchestration of pods (and its crash recovery) runs against a fake in
//! unit tests without root. [`ShimTasks`] is the real one: carapace-shim
//! over ttrpc, and the teardown of [`crate::task`].

use std::path::Path;

use async_trait::async_trait;
use containerd_shim_protos::api;

use crate::shim_client::{self, Exit, Launch, RuntimeOptions, Shim, ShimError, Stdio};
use crate::task::{Stopped, Task};

/// Where a task's init process is, as its shim says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskStatus {
    /// Created, not started.
    Created,
    /// Running.
    Running,
    /// Exited.
    Stopped,
    /// Paused, pausing or unknown.
    Other,
}

/// A task's state, as its shim keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskState {
    /// Where the init process is.
    pub status: TaskStatus,
    /// How it ended, when Stopped (at_ns 0: the shim did not stamp it).
    pub exit: Option<Exit>,
}

/// A task's shim, as the orchestration sees it.
#[async_trait]
pub trait TaskEffects: Send + Sync + std::fmt::Debug {
    /// Starts the task's shim; its address. The shim writes the address
    /// into the bundle too, so a daemon that dies before recording it
    /// still finds the shim ([`crate::task::address`]).
    async fn launch(&self, launch: &Launch<'_>) -> Result<String, ShimError>;

    /// Has the shim at `address` create the task's init process; its PID.
    async fn create(
        &self,
        address: &str,
        id: &str,
        bundle: &Path,
        stdio: &Stdio,
        runtime: &RuntimeOptions,
    ) -> Result<u32, ShimError>;

    /// Starts the created init process; its PID.
    async fn start(&self, address: &str, id: &str) -> Result<u32, ShimError>;

    /// Waits for the init process to exit; None when the shim cannot tell
    /// (it is gone, or never answered).
    async fn wait(&self, address: &str, id: &str) -> Option<Exit>;

    /// The init process's state as its shim keeps it (restart recovery);
    /// None when the shim is gone or does not know the task.
    async fn state(&self, address: &str, id: &str) -> Option<TaskState>;

    /// Sends `signal` to the init process (`all`: to every process of the
    /// task).
    async fn kill(&self, address: &str, id: &str, signal: u32, all: bool) -> Result<(), ShimError>;

    /// Kills, deletes and ends the task and its shim ([`Task::stop`]).
    async fn stop(&self, task: &Task<'_>, launch: &Launch<'_>) -> Result<Stopped, ShimError>;

    /// Makes sure nothing of the task survives ([`Task::reap`]).
    async fn reap(&self, task: &Task<'_>, stopped: &Stopped);
}

/// The real tasks: carapace-shim processes.
#[derive(Debug, Default)]
pub struct ShimTasks;

#[async_trait]
impl TaskEffects for ShimTasks {
    async fn launch(&self, launch: &Launch<'_>) -> Result<String, ShimError> {
        shim_client::launch(launch).await
    }

    async fn create(
        &self,
        address: &str,
        id: &str,
        bundle: &Path,
        stdio: &Stdio,
        runtime: &RuntimeOptions,
    ) -> Result<u32, ShimError> {
        Shim::connect(address)
            .await?
            .create(id, bundle, stdio, runtime)
            .await
    }

    async fn start(&self, address: &str, id: &str) -> Result<u32, ShimError> {
        Shim::connect(address).await?.start(id, "").await
    }

    async fn wait(&self, address: &str, id: &str) -> Option<Exit> {
        match Shim::connect(address).await {
            Ok(shim) => shim.wait(id, "").await.ok(),
            Err(_) => None,
        }
    }

    async fn state(&self, address: &str, id: &str) -> Option<TaskState> {
        let st = Shim::connect(address)
            .await
            .ok()?
            .state(id, "")
            .await
            .ok()?;
        let status = match st.status.enum_value() {
            Ok(api::Status::CREATED) => TaskStatus::Created,
            Ok(api::Status::RUNNING) => TaskStatus::Running,
            Ok(api::Status::STOPPED) => TaskStatus::Stopped,
            _ => TaskStatus::Other,
        };
        Some(TaskState {
            status,
            exit: (status == TaskStatus::Stopped).then(|| Exit {
                status: st.exit_status,
                at_ns: st
                    .exited_at
                    .as_ref()
                    .map(|t| t.seconds.saturating_mul(1_000_000_000) + i64::from(t.nanos))
                    .unwrap_or(0),
            }),
        })
    }

    async fn kill(&self, address: &str, id: &str, signal: u32, all: bool) -> Result<(), ShimError> {
        Shim::connect(address)
            .await?
            .kill(id, "", signal, all)
            .await
    }

    async fn stop(&self, task: &Task<'_>, launch: &Launch<'_>) -> Result<Stopped, ShimError> {
        task.stop(launch).await
    }

    async fn reap(&self, task: &Task<'_>, stopped: &Stopped) {
        task.reap(stopped).await
    }
}
