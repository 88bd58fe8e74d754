//! The daemon's containers: their records (in the generic
//! [`crate::registry::Registry`], which owns the only way they are
//! written), unique names, and what every operation needs (pods, images,
//! paths).

use std::path::PathBuf;
use std::sync::Arc;

use crate::image::Images;
use crate::registry::{Entry, Lookup, Record, Registry};
use crate::sandbox::Sandboxes;
use crate::store::{Kind, Store};

use super::{ContainerError, ContainerRecord};

/// One container: its record and the lock its operations take. The record
/// changes only through [`Containers::update`].
pub type Container = Entry<ContainerRecord>;

impl Record for ContainerRecord {
    const KIND: Kind = Kind::Container;
    fn id(&self) -> &str {
        &self.id
    }
}

/// Every container of the daemon.
#[derive(Debug)]
pub struct Containers {
    /// The pods.
    pub sandboxes: Arc<Sandboxes>,
    /// The images.
    pub images: Arc<Images>,
    /// `<state>/containers`.
    pub state_dir: PathBuf,
    /// `<root>/containers`.
    pub data_dir: PathBuf,
    /// The stdio of containers under a shim v2, which the daemon copies.
    pub fifo_io: super::fifo_io::Pumps,
    records: Registry<ContainerRecord>,
}

impl Containers {
    /// An empty registry; [`super::recover::recover`] fills it. Every
    /// phase change is published as kubelet's lifecycle events.
    pub fn new(store: Arc<Store>, sandboxes: Arc<Sandboxes>, images: Arc<Images>) -> Self {
        let c = &sandboxes.daemon.config;
        let publish = crate::registry::lifecycle_publisher(
            sandboxes.daemon.clone(),
            |r: &ContainerRecord| r.phase,
            super::record::lifecycle_events,
            |r: &ContainerRecord| r.sandbox_id.as_str(),
        );
        Containers {
            state_dir: c.state.join("containers"),
            data_dir: c.root.join("containers"),
            fifo_io: Default::default(),
            records: Registry::new(store, publish),
            sandboxes,
            images,
        }
    }

    /// Every container record on disk (recovery).
    pub fn stored(&self) -> Result<Vec<(String, ContainerRecord)>, ContainerError> {
        Ok(self.records.stored()?)
    }

    /// Reserves `name` for `id`.
    pub fn reserve_name(&self, name: &str, id: &str) -> Result<(), ContainerError> {
        self.records
            .reserve_name(name, id)
            .map_err(|holder| ContainerError::AlreadyExists {
                name: name.to_string(),
                id: holder,
            })
    }

    /// Frees `name` if `id` holds it.
    pub fn release_name(&self, name: &str, id: &str) {
        self.records.release_name(name, id)
    }

    /// Records a new container: written to the store first (a crash from
    /// here on finds it and rolls it back), then indexed.
    pub fn create(&self, rec: ContainerRecord) -> Result<Arc<Container>, ContainerError> {
        Ok(self.records.create(rec)?)
    }

    /// Indexes a container whose record is already in the store (recovery).
    pub fn insert(&self, rec: ContainerRecord) -> Arc<Container> {
        self.records.adopt(rec)
    }

    /// Deletes the container's record, on disk and in memory: the last
    /// step of its teardown.
    pub fn delete(&self, id: &str) -> Result<(), ContainerError> {
        Ok(self.records.delete(id)?)
    }

    /// The container `id` (exact, or a unique prefix).
    pub fn get(&self, id: &str) -> Result<Arc<Container>, ContainerError> {
        self.records.get(id).map_err(|l| match l {
            Lookup::NotFound => ContainerError::NotFound(format!("container {id:?}")),
            Lookup::Ambiguous => {
                ContainerError::InvalidArgument(format!("container ID prefix {id:?} is ambiguous"))
            }
        })
    }

    /// Every container.
    pub fn all(&self) -> Vec<Arc<Container>> {
        self.records.all()
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
            .flat_map(|c| {
                let r = c.record();
                let volumes = r.image_volumes.into_iter().flat_map(|v| v.chain_ids);
                r.chain_ids.into_iter().chain(volumes).collect::<Vec<_>>()
            })
            .collect()
    }

    /// The IDs of the images containers mount as volumes: RemoveImage
    /// refuses them.
    pub fn images_mounted_as_volumes(&self) -> std::collections::HashSet<String> {
        self.all()
            .iter()
            .flat_map(|c| c.record().image_volumes.into_iter().map(|v| v.image_id))
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
        Ok(self.records.update(c, change)?)
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
        let images = Arc::new(
            Images::open(
                &config.root,
                store.clone(),
                &config.registry,
                &config.images,
            )
            .expect("images"),
        );
        let paths = crate::sandbox::registry::Paths {
            shim: "carapace-shim".into(),
            infra: "carapace-infra".into(),
            pods: dir.join("state/pods"),
            shim_sockets: dir.join("state/s"),
            events_address: String::new(),
        };
        let daemon = Arc::new(crate::daemon::Daemon::new(config));
        let sandboxes = Arc::new(Sandboxes::new(
            daemon,
            store.clone(),
            paths,
            crate::sandbox::effects::Effects::real(),
        ));
        Containers::new(store, sandboxes, images)
    }

    fn stored(cs: &Containers, id: &str) -> ContainerRecord {
        cs.stored()
            .expect("read")
            .into_iter()
            .find(|(k, _)| k == id)
            .map(|(_, r)| r)
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
