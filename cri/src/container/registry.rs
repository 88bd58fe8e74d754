//! The daemon's containers in memory: records the CRI calls read, unique
//! names, and what every operation needs (store, pods, images, paths).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use crate::image::Images;
use crate::sandbox::Sandboxes;
use crate::store::{Kind, Store};

use super::{ContainerError, ContainerRecord};

/// One container: its record and the lock its operations take.
#[derive(Debug)]
pub struct Container {
    /// Held while an operation changes the container.
    pub op: tokio::sync::Mutex<()>,
    record: RwLock<ContainerRecord>,
    /// Woken whenever the record changes, for callers waiting on a
    /// transition another task records (StopContainer on the exit).
    changed: tokio::sync::Notify,
}

impl Container {
    /// A copy of the record.
    pub fn record(&self) -> ContainerRecord {
        match self.record.read() {
            Ok(r) => r.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn set(&self, rec: ContainerRecord) {
        match self.record.write() {
            Ok(mut r) => *r = rec,
            Err(p) => *p.into_inner() = rec,
        }
        self.changed.notify_waiters();
    }

    /// Waits until `done` holds for the record, or `limit` passes;
    /// whether it holds.
    pub async fn wait_for(
        &self,
        limit: std::time::Duration,
        done: impl Fn(&ContainerRecord) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            // Made before the check: a change between the check and the
            // await still wakes it.
            let changed = self.changed.notified();
            if done(&self.record()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return done(&self.record());
            }
        }
    }
}

/// Every container of the daemon.
#[derive(Debug)]
pub struct Containers {
    /// The metadata store.
    pub store: Arc<Store>,
    /// The pods.
    pub sandboxes: Arc<Sandboxes>,
    /// The images.
    pub images: Arc<Images>,
    /// `<state>/containers`.
    pub state_dir: PathBuf,
    /// `<root>/containers`.
    pub data_dir: PathBuf,
    by_id: Mutex<HashMap<String, Arc<Container>>>,
    names: Mutex<HashMap<String, String>>,
}

impl Containers {
    /// An empty registry; [`super::recover::recover`] fills it.
    pub fn new(store: Arc<Store>, sandboxes: Arc<Sandboxes>, images: Arc<Images>) -> Self {
        let c = &sandboxes.daemon.config;
        Containers {
            state_dir: c.state.join("containers"),
            data_dir: c.root.join("containers"),
            store,
            sandboxes,
            images,
            by_id: Mutex::new(HashMap::new()),
            names: Mutex::new(HashMap::new()),
        }
    }

    fn ids(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Container>>> {
        self.by_id.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves `name` for `id`.
    pub fn reserve_name(&self, name: &str, id: &str) -> Result<(), ContainerError> {
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(holder) = names.get(name) {
            return Err(ContainerError::AlreadyExists {
                name: name.to_string(),
                id: holder.clone(),
            });
        }
        names.insert(name.to_string(), id.to_string());
        Ok(())
    }

    /// Frees `name` if `id` holds it.
    pub fn release_name(&self, name: &str, id: &str) {
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        if names.get(name).map(String::as_str) == Some(id) {
            names.remove(name);
        }
    }

    /// Adds a container to the index.
    pub fn insert(&self, rec: ContainerRecord) -> Arc<Container> {
        let c = Arc::new(Container {
            op: tokio::sync::Mutex::new(()),
            record: RwLock::new(rec.clone()),
            changed: tokio::sync::Notify::new(),
        });
        self.ids().insert(rec.id.clone(), c.clone());
        c
    }

    /// Drops a container from the index (its name is freed by the caller).
    pub fn forget(&self, id: &str) {
        let gone = self.ids().remove(id).map(|c| c.record());
        if let Some(rec) = gone {
            for kind in crate::lifecycle::container_transition(Some(rec.phase), None) {
                self.sandboxes
                    .daemon
                    .events
                    .emit(&rec.id, &rec.sandbox_id, kind);
            }
        }
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        names.retain(|_, v| v != id);
    }

    /// The container `id` (exact, or a unique prefix).
    pub fn get(&self, id: &str) -> Result<Arc<Container>, ContainerError> {
        if id.is_empty() {
            return Err(ContainerError::NotFound("container \"\"".into()));
        }
        let ids = self.ids();
        if let Some(c) = ids.get(id) {
            return Ok(c.clone());
        }
        let mut m = ids.iter().filter(|(k, _)| k.starts_with(id));
        match (m.next(), m.next()) {
            (Some((_, c)), None) => Ok(c.clone()),
            (Some(_), Some(_)) => Err(ContainerError::InvalidArgument(format!(
                "container ID prefix {id:?} is ambiguous"
            ))),
            _ => Err(ContainerError::NotFound(format!("container {id:?}"))),
        }
    }

    /// Every container.
    pub fn all(&self) -> Vec<Arc<Container>> {
        self.ids().values().cloned().collect()
    }

    /// The containers of pod `sandbox_id`.
    pub fn of_pod(&self, sandbox_id: &str) -> Vec<Arc<Container>> {
        self.all()
            .into_iter()
            .filter(|c| c.record().sandbox_id == sandbox_id)
            .collect()
    }

    /// Layer chain IDs containers use (kept by image GC).
    pub fn chain_ids_in_use(&self) -> std::collections::HashSet<String> {
        self.all()
            .iter()
            .flat_map(|c| c.record().chain_ids)
            .collect()
    }

    /// Writes `rec` to the store, then makes it the container's record.
    pub fn save(&self, c: &Container, rec: ContainerRecord) -> Result<(), ContainerError> {
        self.store.put(Kind::Container, &rec.id, &rec)?;
        let before = c.record().phase;
        let (id, pod, after) = (rec.id.clone(), rec.sandbox_id.clone(), rec.phase);
        c.set(rec);
        for kind in crate::lifecycle::container_transition(Some(before), Some(after)) {
            self.sandboxes.daemon.events.emit(&id, &pod, kind);
        }
        Ok(())
    }
}
