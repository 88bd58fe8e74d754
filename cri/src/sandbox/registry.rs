//! The daemon's sandboxes in memory: the records the CRI calls read, the
//! name reservations that make pod names unique, and the paths and store
//! every operation needs.

use std::path::PathBuf;
use std::sync::Arc;

use crate::daemon::Daemon;
use crate::registry::{Entry, Lookup, Record, Registry};
use crate::shim_client::Launch;
use crate::store::{Kind, Store};

use super::effects::Effects;
use super::{SandboxError, SandboxRecord};

/// One sandbox: its record, and a lock that serialises operations on it
/// (Stop and Remove of the same pod) without blocking readers. The record
/// changes only through [`Sandboxes::update`].
pub type Sandbox = Entry<SandboxRecord>;

impl Record for SandboxRecord {
    const KIND: Kind = Kind::Sandbox;
    fn id(&self) -> &str {
        &self.id
    }
}

/// Where the daemon's helper programs and sockets are.
#[derive(Clone, Debug)]
pub struct Paths {
    /// `carapace-shim`.
    pub shim: PathBuf,
    /// `carapace-infra`.
    pub infra: PathBuf,
    /// `<state>/pods`.
    pub pods: PathBuf,
    /// Where shims put their sockets.
    pub shim_sockets: PathBuf,
    /// The events endpoint shims publish to (`unix://…`).
    pub events_address: String,
}

/// Every sandbox of the daemon.
#[derive(Debug)]
pub struct Sandboxes {
    /// The daemon's config and pod CIDR.
    pub daemon: Arc<Daemon>,
    /// Helper binaries and sockets.
    pub paths: Paths,
    /// What pod operations do to the node and ask of shims.
    pub effects: Effects,
    records: Registry<SandboxRecord>,
}

impl Sandboxes {
    /// Whether pod and container cgroups are systemd units (the
    /// `cgroup_driver` of the config).
    pub fn systemd_cgroups(&self) -> bool {
        self.daemon.config.cgroup_driver == "systemd"
    }

    /// An empty registry; [`super::recover::recover`] fills it from the
    /// store. Every phase change is published as kubelet's lifecycle
    /// events (the pod's ID is its container ID there).
    pub fn new(daemon: Arc<Daemon>, store: Arc<Store>, paths: Paths, effects: Effects) -> Self {
        // A pod's own events are filed under its ID as the container ID.
        let publish = crate::registry::lifecycle_publisher(
            daemon.clone(),
            |r: &SandboxRecord| r.phase,
            super::record::lifecycle_events,
            |r: &SandboxRecord| r.id.as_str(),
        );
        Sandboxes {
            daemon,
            paths,
            effects,
            records: Registry::new(store, publish),
        }
    }

    /// Every sandbox record on disk (recovery).
    pub fn stored(&self) -> Result<Vec<(String, SandboxRecord)>, SandboxError> {
        Ok(self.records.stored()?)
    }

    /// Reserves `name` for `id`; the holder's ID when it is taken.
    pub fn reserve_name(&self, name: &str, id: &str) -> Result<(), SandboxError> {
        self.records
            .reserve_name(name, id)
            .map_err(|holder| SandboxError::AlreadyExists {
                name: name.to_string(),
                id: holder,
            })
    }

    /// Frees `name` if `id` holds it.
    pub fn release_name(&self, name: &str, id: &str) {
        self.records.release_name(name, id)
    }

    /// Records a new pod: written to the store first (a crash from here on
    /// finds it and rolls it back), then indexed.
    pub fn create(&self, rec: SandboxRecord) -> Result<Arc<Sandbox>, SandboxError> {
        Ok(self.records.create(rec)?)
    }

    /// Indexes a pod whose record is already in the store (recovery).
    pub fn adopt(&self, rec: SandboxRecord) -> Arc<Sandbox> {
        self.records.adopt(rec)
    }

    /// Deletes the pod's record, on disk and in memory, and frees its
    /// name: the last step of its teardown.
    pub fn delete(&self, id: &str) -> Result<(), SandboxError> {
        Ok(self.records.delete(id)?)
    }

    /// The sandbox `id`: an exact ID, or a unique prefix of one (as crictl
    /// users type them).
    pub fn get(&self, id: &str) -> Result<Arc<Sandbox>, SandboxError> {
        self.records.get(id).map_err(|l| match l {
            Lookup::NotFound => SandboxError::NotFound(id.to_string()),
            Lookup::Ambiguous => {
                SandboxError::InvalidArgument(format!("pod sandbox ID prefix {id:?} is ambiguous"))
            }
        })
    }

    /// Every sandbox.
    pub fn all(&self) -> Vec<Arc<Sandbox>> {
        self.records.all()
    }

    /// How to start (or clean up after) the shim of task `id` in `bundle`:
    /// the handler's shim (`shim`: carapace-shim unless a shim v2), the
    /// daemon's sockets and events endpoint.
    pub fn launch<'a>(
        &'a self,
        id: &'a str,
        bundle: &'a std::path::Path,
        shim: &'a crate::shim_client::ShimKind,
    ) -> Launch<'a> {
        Launch {
            binary: if shim.is_v2() {
                &shim.binary
            } else {
                &self.paths.shim
            },
            v2: shim.is_v2(),
            id,
            bundle,
            daemon_address: &self.daemon.config.socket,
            events_address: &self.paths.events_address,
            socket_dir: &self.paths.shim_sockets,
        }
    }

    /// The one way a pod's record changes: under the record's lock the
    /// current record is read, `change` applied, and the result written to
    /// the store, made the record in memory and published together. If the
    /// store refuses, nothing changes. Returns the new record and what
    /// `change` returned.
    pub fn update<T>(
        &self,
        s: &Sandbox,
        change: impl FnOnce(&mut SandboxRecord) -> T,
    ) -> Result<(SandboxRecord, T), SandboxError> {
        Ok(self.records.update(s, change)?)
    }
}
