//! The daemon's root object, as containerd's criService is: it owns the
//! configuration and daemon-wide state ([`Daemon`]), the metadata store
//! (through the registries), the images, the pods and the containers. It
//! is built the same way by `main` and by the crash-recovery tests (with a
//! fake node: [`Effects`]), and it is what the gRPC services, the
//! streaming server and the metrics endpoint are given.

use std::sync::Arc;

use crate::container::{self, ContainerError, Containers};
use crate::daemon::Daemon;
use crate::image::{ImageError, Images};
use crate::sandbox::effects::Effects;
use crate::sandbox::registry::Paths;
use crate::sandbox::{self, SandboxError, Sandboxes};
use crate::store::{Store, StoreError};

/// Why the daemon's state could not be opened or recovered.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The metadata store.
    #[error("metadata store: {0}")]
    Store(#[from] StoreError),
    /// The image store.
    #[error("image store: {0}")]
    Image(#[from] ImageError),
    /// Recovering the pods.
    #[error("recover pods: {0}")]
    Sandbox(#[from] SandboxError),
    /// Recovering the containers.
    #[error("recover containers: {0}")]
    Container(#[from] ContainerError),
}

/// Everything one daemon serves.
#[derive(Debug)]
pub struct Service {
    /// The configuration, pod CIDR and lifecycle events.
    pub daemon: Arc<Daemon>,
    /// The images.
    pub images: Arc<Images>,
    /// The pods.
    pub sandboxes: Arc<Sandboxes>,
    /// The containers.
    pub containers: Arc<Containers>,
}

impl Service {
    /// Opens the metadata and image stores under the config's root, with
    /// pods and containers reaching the node through `effects`. Nothing is
    /// recovered yet: see [`Service::recover`].
    pub fn open(
        daemon: Arc<Daemon>,
        paths: Paths,
        effects: Effects,
    ) -> Result<Service, ServiceError> {
        let c = &daemon.config;
        let store = Arc::new(Store::open(&c.root.join("metadata.redb"))?);
        let images = Arc::new(Images::open(
            &c.root,
            store.clone(),
            &c.registry,
            &c.images,
        )?);
        let sandboxes = Arc::new(Sandboxes::new(
            daemon.clone(),
            store.clone(),
            paths,
            effects,
        ));
        let containers = Arc::new(Containers::new(store, sandboxes.clone(), images.clone()));
        Ok(Service {
            daemon,
            images,
            sandboxes,
            containers,
        })
    }

    /// Restart recovery: every pod, then every container (a container's
    /// recovery reads its pod).
    pub async fn recover(&self) -> Result<(), ServiceError> {
        sandbox::recover::recover(&self.sandboxes).await?;
        container::recover::recover(&self.containers).await?;
        if let Err(e) = self
            .images
            .collect_at_start(&self.containers.chain_ids_in_use())
            .await
        {
            tracing::warn!(error = %e, "collect what interrupted pulls left");
        }
        Ok(())
    }
}
