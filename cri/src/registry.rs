//! The records of pods and containers in memory and on disk, kept in step:
//! one generic registry for both, as containerd's CRI plugin keeps its
//! sandbox and container stores (`internal/cri/store`).
//!
//! It owns the only handle through which pod and container records are
//! written to the store (`crate::store`, the redb database): a record is
//! made with [`Registry::create`], changed with [`Registry::update`] and
//! deleted with [`Registry::delete`]; records already on disk are taken
//! back after a restart with [`Registry::adopt`]. Each change is read,
//! applied, persisted and published under the record's own lock, so memory
//! and disk never disagree and a copy taken earlier can never overwrite a
//! newer state. Names (`name_namespace_uid_attempt`) are reserved here too,
//! and IDs may be looked up by a unique prefix, as crictl users type them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::store::{Kind, Store, StoreError};

/// What the registry keeps: a record with an ID and a table in the store.
pub trait Record: Clone + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The store table of this kind of record.
    const KIND: Kind;
    /// The record's ID.
    fn id(&self) -> &str;
}

/// Told of every change, with the record before and after (None: not
/// there): how lifecycle events are published without any operation
/// having to remember to.
pub type Publish<R> = Box<dyn Fn(Option<&R>, Option<&R>) + Send + Sync>;

/// The [`Publish`] pods and containers use: each change's lifecycle events
/// (`events` of the phases before and after, by `phase`) on the daemon's
/// bus, filed under the record's ID and its pod's (`pod`).
pub fn lifecycle_publisher<R: Record, P: 'static>(
    daemon: Arc<crate::daemon::Daemon>,
    phase: fn(&R) -> P,
    events: fn(Option<P>, Option<P>) -> Vec<k8s_cri::v1::ContainerEventType>,
    pod: fn(&R) -> &str,
) -> Publish<R> {
    Box::new(move |before: Option<&R>, after: Option<&R>| {
        let Some(rec) = after.or(before) else {
            return;
        };
        for kind in events(before.map(phase), after.map(phase)) {
            daemon.events.emit(rec.id(), pod(rec), kind);
        }
    })
}

/// One pod or container: its record and the lock its operations take.
#[derive(Debug)]
pub struct Entry<R> {
    /// Held for the length of an operation (create, start, stop, remove,
    /// update), so two operations on one object do not interleave.
    pub op: tokio::sync::Mutex<()>,
    record: RwLock<R>,
    /// Woken whenever the record changes, for callers waiting on a
    /// transition another task records (StopContainer on the exit).
    changed: tokio::sync::Notify,
}

impl<R: Record> Entry<R> {
    fn new(rec: R) -> Self {
        Entry {
            op: tokio::sync::Mutex::new(()),
            record: RwLock::new(rec),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// A copy of the record as it is now.
    pub fn record(&self) -> R {
        self.with_record(R::clone)
    }

    /// `look` applied to the record as it is now, without copying it all:
    /// the List calls take a few fields of every record (the whole of a
    /// pod's record, its CNI result included, made ListPodSandbox slower
    /// than containerd's at 110 pods).
    pub fn with_record<T>(&self, look: impl FnOnce(&R) -> T) -> T {
        match self.record.read() {
            Ok(r) => look(&r),
            Err(p) => look(&p.into_inner()),
        }
    }

    /// Waits until `done` holds for the record, or `limit` passes;
    /// whether it holds.
    pub async fn wait_for(&self, limit: std::time::Duration, done: impl Fn(&R) -> bool) -> bool {
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

/// Why a lookup by ID found nothing to return.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// No ID is, or starts with, the one asked for (or it was empty).
    NotFound,
    /// More than one ID starts with the prefix asked for.
    Ambiguous,
}

/// Every record of one kind.
pub struct Registry<R> {
    store: Arc<Store>,
    by_id: Mutex<HashMap<String, Arc<Entry<R>>>>,
    /// Reserved name → the ID holding it.
    names: Mutex<HashMap<String, String>>,
    publish: Publish<R>,
}

impl<R> std::fmt::Debug for Registry<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("kind", &std::any::type_name::<R>())
            .finish_non_exhaustive()
    }
}

impl<R: Record> Registry<R> {
    /// An empty registry over `store`; `publish` is told of every change.
    pub fn new(store: Arc<Store>, publish: Publish<R>) -> Self {
        Registry {
            store,
            by_id: Mutex::new(HashMap::new()),
            names: Mutex::new(HashMap::new()),
            publish,
        }
    }

    fn ids(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Entry<R>>>> {
        self.by_id.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn name_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.names.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every record on disk, for recovery after a restart.
    pub fn stored(&self) -> Result<Vec<(String, R)>, StoreError> {
        self.store.list(R::KIND)
    }

    /// Reserves `name` for `id`; the ID holding it when it is taken.
    pub fn reserve_name(&self, name: &str, id: &str) -> Result<(), String> {
        let mut names = self.name_map();
        if let Some(holder) = names.get(name) {
            return Err(holder.clone());
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

    /// Records a new object: written to the store first (a crash from here
    /// on finds it and rolls it back), then indexed.
    pub fn create(&self, rec: R) -> Result<Arc<Entry<R>>, StoreError> {
        self.store.put(R::KIND, rec.id(), &rec)?;
        let e = Arc::new(Entry::new(rec.clone()));
        self.ids().insert(rec.id().to_string(), e.clone());
        (self.publish)(None, Some(&rec));
        Ok(e)
    }

    /// Indexes a record that is already on disk (recovery).
    pub fn adopt(&self, rec: R) -> Arc<Entry<R>> {
        let e = Arc::new(Entry::new(rec.clone()));
        self.ids().insert(rec.id().to_string(), e.clone());
        e
    }

    /// The one way a record changes: under the record's lock the current
    /// record is read, `change` applied to it, and the result written to
    /// the store, made the record in memory and published together. If
    /// the store refuses, nothing changes. A change that leaves the record
    /// as it was writes and publishes nothing: watchers often record what
    /// an operation already has (an exit StopPodSandbox recorded), and
    /// each write is a durable commit. Returns the new record and what
    /// `change` returned.
    pub fn update<T>(
        &self,
        e: &Entry<R>,
        change: impl FnOnce(&mut R) -> T,
    ) -> Result<(R, T), StoreError> {
        let (before, next, out) = {
            let mut guard = e.record.write().unwrap_or_else(|p| p.into_inner());
            let mut next = guard.clone();
            let out = change(&mut next);
            // Memory always holds what the store holds (a refused write
            // changes neither), so an equal record is already on disk.
            if next == *guard {
                return Ok((next, out));
            }
            self.store.put(R::KIND, next.id(), &next)?;
            let before = std::mem::replace(&mut *guard, next.clone());
            (before, next, out)
        };
        e.changed.notify_waiters();
        (self.publish)(Some(&before), Some(&next));
        Ok((next, out))
    }

    /// Deletes the record `id` from the store, then from memory, freeing
    /// its names. Deleting what is already gone is done.
    pub fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.store.delete(R::KIND, id)?;
        self.forget(id);
        Ok(())
    }

    /// Drops `id` from memory only and frees its names (its record stays
    /// on disk: a failed creation's, kept for the next start to clean up).
    pub fn forget(&self, id: &str) {
        let gone = self.ids().remove(id);
        self.name_map().retain(|_, holder| holder != id);
        if let Some(e) = gone {
            e.changed.notify_waiters();
            (self.publish)(Some(&e.record()), None);
        }
    }

    /// The entry `id`: an exact ID, or a unique prefix of one.
    pub fn get(&self, id: &str) -> Result<Arc<Entry<R>>, Lookup> {
        if id.is_empty() {
            return Err(Lookup::NotFound);
        }
        let ids = self.ids();
        if let Some(e) = ids.get(id) {
            return Ok(e.clone());
        }
        let mut m = ids.iter().filter(|(k, _)| k.starts_with(id));
        match (m.next(), m.next()) {
            (Some((_, e)), None) => Ok(e.clone()),
            (Some(_), Some(_)) => Err(Lookup::Ambiguous),
            _ => Err(Lookup::NotFound),
        }
    }

    /// Every entry.
    pub fn all(&self) -> Vec<Arc<Entry<R>>> {
        self.ids().values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Thing {
        id: String,
        n: u32,
    }

    impl Record for Thing {
        const KIND: Kind = Kind::Container;
        fn id(&self) -> &str {
            &self.id
        }
    }

    type Seen = Arc<Mutex<Vec<(Option<u32>, Option<u32>)>>>;

    fn registry(dir: &std::path::Path) -> (Registry<Thing>, Seen) {
        let store = Arc::new(Store::open(&dir.join("db.redb")).expect("store"));
        let seen: Seen = Arc::default();
        let s = seen.clone();
        let publish: Publish<Thing> = Box::new(move |b, a| {
            s.lock()
                .expect("lock")
                .push((b.map(|t| t.n), a.map(|t| t.n)))
        });
        (Registry::new(store, publish), seen)
    }

    fn thing(id: &str, n: u32) -> Thing {
        Thing { id: id.into(), n }
    }

    #[test]
    fn every_change_reaches_memory_disk_and_subscribers_together() {
        let d = tempfile::tempdir().expect("tmp");
        let (r, seen) = registry(d.path());
        let e = r.create(thing("abc1", 1)).expect("create");
        let stale = e.record();
        r.update(&e, |t| t.n += 1).expect("update");
        r.update(&e, |t| t.n *= 10).expect("update");
        // Each change applied to the current record, whatever copies exist.
        assert_eq!((stale.n, e.record().n), (1, 20));
        assert_eq!(
            r.stored().expect("stored"),
            vec![("abc1".into(), thing("abc1", 20))]
        );
        r.delete("abc1").expect("delete");
        r.delete("abc1").expect("deleting what is gone is done");
        assert!(r.stored().expect("stored").is_empty());
        assert_eq!(r.get("abc1").err(), Some(Lookup::NotFound));
        assert_eq!(
            *seen.lock().expect("lock"),
            vec![
                (None, Some(1)),
                (Some(1), Some(2)),
                (Some(2), Some(20)),
                (Some(20), None)
            ]
        );
    }

    #[test]
    fn a_change_that_changes_nothing_is_neither_written_nor_published() {
        let d = tempfile::tempdir().expect("tmp");
        let (r, seen) = registry(d.path());
        let e = r.create(thing("abc1", 1)).expect("create");
        // Take the record off the disk behind the registry's back: a
        // write would put it back.
        r.store.delete(Kind::Container, "abc1").expect("delete");
        let (rec, out) = r.update(&e, |t| t.n == 1).expect("update");
        assert_eq!((rec, out), (thing("abc1", 1), true));
        assert!(r.stored().expect("stored").is_empty(), "nothing written");
        assert_eq!(*seen.lock().expect("lock"), vec![(None, Some(1))]);
        // A real change is written and published as ever.
        r.update(&e, |t| t.n = 2).expect("update");
        assert_eq!(
            r.stored().expect("stored"),
            vec![("abc1".into(), thing("abc1", 2))]
        );
        assert_eq!(
            *seen.lock().expect("lock"),
            vec![(None, Some(1)), (Some(1), Some(2))]
        );
    }

    #[test]
    fn ids_are_found_by_unique_prefix_and_names_are_unique() {
        let d = tempfile::tempdir().expect("tmp");
        let (r, _) = registry(d.path());
        r.create(thing("aa11", 0)).expect("create");
        r.create(thing("aa22", 0)).expect("create");
        assert_eq!(r.get("aa1").expect("unique prefix").record().id, "aa11");
        assert_eq!(r.get("aa").err(), Some(Lookup::Ambiguous));
        assert_eq!(r.get("").err(), Some(Lookup::NotFound));
        r.reserve_name("web", "aa11").expect("free");
        assert_eq!(r.reserve_name("web", "aa22"), Err("aa11".to_string()));
        r.release_name("web", "aa22");
        assert!(r.reserve_name("web", "x").is_err(), "only the holder frees");
        r.forget("aa11");
        r.reserve_name("web", "aa22")
            .expect("freed with its holder");
        let adopted = r.adopt(thing("bb", 7));
        assert_eq!(r.get("bb").expect("adopted").record(), adopted.record());
    }
}
