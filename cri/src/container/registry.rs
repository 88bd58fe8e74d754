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
///
/// The record changes only through [`Containers::update`], which reads,
/// changes, persists and publishes it under the record's own lock: a copy
/// taken earlier (by an operation, the exit watcher or the OOM follower)
/// can never overwrite a newer state.
#[derive(Debug)]
pub struct Container {
    /// Held for the length of an operation (create, start, stop, remove,
    /// update), so two operations on one container do not interleave.
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

    /// Records a new container: written to the store first (a crash from
    /// here on finds it and rolls it back), then indexed.
    pub fn create(&self, rec: ContainerRecord) -> Result<Arc<Container>, ContainerError> {
        self.store.put(Kind::Container, &rec.id, &rec)?;
        Ok(self.insert(rec))
    }

    /// Indexes a container whose record is already in the store (recovery).
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
            for kind in super::record::lifecycle_events(Some(rec.phase), None) {
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

    /// The one way a container's record changes: under the record's lock
    /// the current record is read, `change` applied to it, and the result
    /// written to the store, made the record in memory and published (the
    /// lifecycle events of its phase change) together. If the store refuses,
    /// nothing changes. Returns the new record and what `change` returned.
    pub fn update<T>(
        &self,
        c: &Container,
        change: impl FnOnce(&mut ContainerRecord) -> T,
    ) -> Result<(ContainerRecord, T), ContainerError> {
        let (next, out, before) = {
            let mut guard = c.record.write().unwrap_or_else(|p| p.into_inner());
            let mut next = guard.clone();
            let out = change(&mut next);
            self.store.put(Kind::Container, &next.id, &next)?;
            let before = guard.phase;
            *guard = next.clone();
            (next, out, before)
        };
        c.changed.notify_waiters();
        for kind in super::record::lifecycle_events(Some(before), Some(next.phase)) {
            self.sandboxes
                .daemon
                .events
                .emit(&next.id, &next.sandbox_id, kind);
        }
        Ok((next, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::start::{record_exit, record_oom, tests::KILLED, OOM_KILLED};
    use crate::container::Phase;

    /// A registry over a real store in `dir`, with no pods.
    fn registry(dir: &std::path::Path) -> Containers {
        let config = crate::config::Config {
            root: dir.join("root"),
            state: dir.join("state"),
            ..Default::default()
        };
        let store = Arc::new(Store::open(&dir.join("metadata.redb")).expect("store"));
        let images =
            Arc::new(Images::open(&config.root, store.clone(), &config.registry).expect("images"));
        let paths = crate::sandbox::registry::Paths {
            shim: "carapace-shim".into(),
            infra: "carapace-infra".into(),
            pods: dir.join("state/pods"),
            shim_sockets: dir.join("state/s"),
            events_address: String::new(),
        };
        let daemon = Arc::new(crate::daemon::Daemon::new(config));
        let sandboxes = Arc::new(Sandboxes::new(daemon, store.clone(), paths));
        Containers::new(store, sandboxes, images)
    }

    fn stored(cs: &Containers, id: &str) -> ContainerRecord {
        cs.store
            .get::<ContainerRecord>(Kind::Container, id)
            .expect("read")
            .expect("stored")
    }

    /// The lost update of issue 20: the OOM follower used to take a copy
    /// (Running), the exit watcher recorded the exit, and the follower
    /// saved its copy over it: RUNNING forever. Through `update` each
    /// change applies to the current record, in either order.
    #[test]
    fn oom_event_and_exit_in_either_order_end_exited_oom_killed_137() {
        let d = tempfile::tempdir().expect("tmp");
        let cs = registry(d.path());
        for (id, oom_first) in [("a", true), ("b", false)] {
            let c = cs
                .create(ContainerRecord::for_test(id, Phase::Running))
                .expect("create");
            let copy_before = c.record();
            if oom_first {
                cs.update(&c, record_oom).expect("oom");
                cs.update(&c, |r| record_exit(r, KILLED)).expect("exit");
            } else {
                cs.update(&c, |r| record_exit(r, KILLED)).expect("exit");
                cs.update(&c, record_oom).expect("oom");
            }
            let now = c.record();
            assert_eq!(
                (now.phase, now.reason.as_str(), now.exit_code),
                (Phase::Exited, OOM_KILLED, 137),
                "oom first: {oom_first}"
            );
            assert_eq!(copy_before.phase, Phase::Running, "the copy is a copy");
            let on_disk = stored(&cs, id);
            assert_eq!(
                (on_disk.phase, on_disk.reason, on_disk.exit_code),
                (now.phase, now.reason, now.exit_code),
                "store and memory disagree"
            );
        }
    }
}
