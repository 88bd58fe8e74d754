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

    /// Whether the init process runs (restart recovery); false when the
    /// shim is gone.
    async fn running(&self, address: &str, id: &str) -> bool;

    /// Kills, deletes and ends the task and its shim ([`Task::stop`]).
    async fn stop(&self, task: &Task<'_>, launch: &Launch<'_>) -> Result<Stopped, ShimError>;

    /// Makes sure nothing of the task survives ([`Task::reap`]).
    async fn reap(&self, task: &Task<'_>, shim_pid: Option<u32>);
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

    async fn running(&self, address: &str, id: &str) -> bool {
        match Shim::connect(address).await {
            Ok(shim) => match shim.state(id, "").await {
                Ok(st) => st.status.enum_value() == Ok(api::Status::RUNNING),
                Err(_) => false,
            },
            Err(_) => false,
        }
    }

    async fn stop(&self, task: &Task<'_>, launch: &Launch<'_>) -> Result<Stopped, ShimError> {
        task.stop(launch).await
    }

    async fn reap(&self, task: &Task<'_>, shim_pid: Option<u32>) {
        task.reap(shim_pid).await
    }
}
