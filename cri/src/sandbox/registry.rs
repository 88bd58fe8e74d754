//! The daemon's sandboxes in memory: the records the CRI calls read, the
//! name reservations that make pod names unique, and the paths and store
//! every operation needs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use crate::daemon::Daemon;
use crate::shim_client::Launch;
use crate::store::{Kind, Store};

use super::{SandboxError, SandboxRecord};

/// One sandbox: its record, and a lock that serialises operations on it
/// (Stop and Remove of the same pod) without blocking readers.
#[derive(Debug)]
pub struct Sandbox {
    /// Held for the length of an operation that changes the pod.
    pub op: tokio::sync::Mutex<()>,
    record: RwLock<SandboxRecord>,
}

impl Sandbox {
    /// A copy of the record as it is now.
    pub fn record(&self) -> SandboxRecord {
        match self.record.read() {
            Ok(r) => r.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn set(&self, rec: SandboxRecord) {
        match self.record.write() {
            Ok(mut r) => *r = rec,
            Err(p) => *p.into_inner() = rec,
        }
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
    /// The metadata store.
    pub store: Arc<Store>,
    /// Helper binaries and sockets.
    pub paths: Paths,
    by_id: Mutex<HashMap<String, Arc<Sandbox>>>,
    names: Mutex<HashMap<String, String>>,
}

impl Sandboxes {
    /// Whether pod and container cgroups are systemd units (the
    /// `cgroup_driver` of the config).
    pub fn systemd_cgroups(&self) -> bool {
        self.daemon.config.cgroup_driver == "systemd"
    }

    /// An empty registry; [`super::recover::recover`] fills it from the store.
    pub fn new(daemon: Arc<Daemon>, store: Arc<Store>, paths: Paths) -> Self {
        Sandboxes {
            daemon,
            store,
            paths,
            by_id: Mutex::new(HashMap::new()),
            names: Mutex::new(HashMap::new()),
        }
    }

    fn ids(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Sandbox>>> {
        self.by_id.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn name_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.names.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves `name` for `id`; the holder's ID when it is taken.
    pub fn reserve_name(&self, name: &str, id: &str) -> Result<(), SandboxError> {
        let mut names = self.name_map();
        if let Some(holder) = names.get(name) {
            return Err(SandboxError::AlreadyExists {
                name: name.to_string(),
                id: holder.clone(),
            });
        }
        names.insert(name.to_string(), id.to_string());
        Ok(())
    }

    /// Frees `name` if `id` holds it.
    pub fn release_name(&self, name: &str, id: &str) {
        let mut names = self.name_map();
        if names.get(name).map(String::as_str) == Some(id) {
            names.remove(name);
        }
    }

    /// Adds a sandbox to the index (after creation or recovery).
    pub fn insert(&self, rec: SandboxRecord) -> Arc<Sandbox> {
        let s = Arc::new(Sandbox {
            op: tokio::sync::Mutex::new(()),
            record: RwLock::new(rec.clone()),
        });
        self.ids().insert(rec.id.clone(), s.clone());
        s
    }

    /// Drops a sandbox from the index and frees its name.
    pub fn forget(&self, rec: &SandboxRecord) {
        let before = self.ids().remove(&rec.id).map(|s| s.record().phase);
        for kind in super::record::lifecycle_events(before, None) {
            self.daemon.events.emit(&rec.id, &rec.id, kind);
        }
        self.release_name(&SandboxRecord::name_key(&rec.config), &rec.id);
    }

    /// The sandbox `id`: an exact ID, or a unique prefix of one (as crictl
    /// users type them).
    pub fn get(&self, id: &str) -> Result<Arc<Sandbox>, SandboxError> {
        if id.is_empty() {
            return Err(SandboxError::NotFound(String::new()));
        }
        let ids = self.ids();
        if let Some(s) = ids.get(id) {
            return Ok(s.clone());
        }
        let mut matches = ids.iter().filter(|(k, _)| k.starts_with(id));
        match (matches.next(), matches.next()) {
            (Some((_, s)), None) => Ok(s.clone()),
            (Some(_), Some(_)) => Err(SandboxError::InvalidArgument(format!(
                "pod sandbox ID prefix {id:?} is ambiguous"
            ))),
            _ => Err(SandboxError::NotFound(id.to_string())),
        }
    }

    /// Every sandbox.
    pub fn all(&self) -> Vec<Arc<Sandbox>> {
        self.ids().values().cloned().collect()
    }

    /// How to start (or clean up after) the shim of task `id` in `bundle`:
    /// the daemon's shim binary, sockets and events endpoint.
    pub fn launch<'a>(&'a self, id: &'a str, bundle: &'a std::path::Path) -> Launch<'a> {
        Launch {
            binary: &self.paths.shim,
            id,
            bundle,
            daemon_address: &self.daemon.config.socket,
            events_address: &self.paths.events_address,
            socket_dir: &self.paths.shim_sockets,
        }
    }

    /// Writes `rec` to the store, then makes it the sandbox's record.
    pub fn save(&self, s: &Sandbox, rec: SandboxRecord) -> Result<(), SandboxError> {
        self.store.put(Kind::Sandbox, &rec.id, &rec)?;
        let before = s.record().phase;
        let (id, after) = (rec.id.clone(), rec.phase);
        s.set(rec);
        for kind in super::record::lifecycle_events(Some(before), Some(after)) {
            self.daemon.events.emit(&id, &id, kind);
        }
        Ok(())
    }
}
