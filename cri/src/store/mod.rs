//! The daemon's metadata store: one embedded, crash-safe database (redb)
//! under the root directory, shared by the runtime and image services.
//! Records are JSON values keyed by ID in one table per kind; every write
//! is its own durable transaction, so a record written before an action is
//! there after a crash, to complete or roll back the action on restart.
//!
//! The database file is locked while open: a second daemon on the same
//! root is refused instead of corrupting it.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// What is stored: one table each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Pod sandboxes by sandbox ID.
    Sandbox,
    /// Containers by container ID.
    Container,
    /// Images by image ID (config digest).
    Image,
}

impl Kind {
    fn table(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        match self {
            Kind::Sandbox => TableDefinition::new("sandboxes"),
            Kind::Container => TableDefinition::new("containers"),
            Kind::Image => TableDefinition::new("images"),
        }
    }

    fn all() -> [Kind; 3] {
        [Kind::Sandbox, Kind::Container, Kind::Image]
    }
}

/// Why the store could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed (I/O, corruption, locked by another daemon).
    #[error("metadata store {path}: {source}")]
    Db {
        /// The database file.
        path: PathBuf,
        /// redb's error.
        source: Box<redb::Error>,
    },
    /// A record could not be encoded or decoded.
    #[error("metadata store record {id}: {source}")]
    Codec {
        /// The record's key.
        id: String,
        /// serde's error.
        source: serde_json::Error,
    },
    /// The directory for the database could not be made.
    #[error("create {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The database file could not be made root-only.
    #[error("chmod 0600 {path}: {source}")]
    Mode {
        /// The database file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The open database.
#[derive(Debug)]
pub struct Store {
    db: Database,
    path: PathBuf,
}

impl Store {
    /// Opens (or creates) the database at `path`, making every table so
    /// that reads never meet a missing one.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let db = Database::create(path).map_err(|e| StoreError::Db {
            path: path.to_path_buf(),
            source: Box::new(e.into()),
        })?;
        // The records hold every pod's and container's config, secrets in
        // their environment included: root only, whatever the umask.
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(|source| StoreError::Mode {
                path: path.to_path_buf(),
                source,
            })?;
        let store = Store {
            db,
            path: path.to_path_buf(),
        };
        store.write(|tx| {
            for k in Kind::all() {
                tx.open_table(k.table()).map_err(|e| store.db_err(e))?;
            }
            Ok(())
        })?;
        Ok(store)
    }

    fn db_err(&self, e: impl Into<redb::Error>) -> StoreError {
        StoreError::Db {
            path: self.path.clone(),
            source: Box::new(e.into()),
        }
    }

    fn write(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.db_err(e))?;
        f(&tx)?;
        tx.commit().map_err(|e| self.db_err(e))
    }

    /// Writes (inserts or replaces) the record `id` of `kind`, durably.
    pub fn put<T: Serialize>(&self, kind: Kind, id: &str, value: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(|source| StoreError::Codec {
            id: id.to_string(),
            source,
        })?;
        self.write(|tx| {
            tx.open_table(kind.table())
                .map_err(|e| self.db_err(e))?
                .insert(id, bytes.as_slice())
                .map_err(|e| self.db_err(e))?;
            Ok(())
        })
    }

    /// Removes the record `id` of `kind`; removing a missing one is fine.
    pub fn delete(&self, kind: Kind, id: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.open_table(kind.table())
                .map_err(|e| self.db_err(e))?
                .remove(id)
                .map_err(|e| self.db_err(e))?;
            Ok(())
        })
    }

    /// The record `id` of `kind`, if there is one.
    pub fn get<T: DeserializeOwned>(&self, kind: Kind, id: &str) -> Result<Option<T>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let table = tx.open_table(kind.table()).map_err(|e| self.db_err(e))?;
        let Some(v) = table.get(id).map_err(|e| self.db_err(e))? else {
            return Ok(None);
        };
        serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|source| StoreError::Codec {
                id: id.to_string(),
                source,
            })
    }

    /// Every record of `kind`, in key order. A record that no longer
    /// decodes (written by an incompatible version) is an error naming it,
    /// not silently dropped.
    pub fn list<T: DeserializeOwned>(&self, kind: Kind) -> Result<Vec<(String, T)>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let table = tx.open_table(kind.table()).map_err(|e| self.db_err(e))?;
        let mut out = Vec::new();
        for item in table.iter().map_err(|e| self.db_err(e))? {
            let (k, v) = item.map_err(|e| self.db_err(e))?;
            let id = k.value().to_string();
            let value = serde_json::from_slice(v.value()).map_err(|source| StoreError::Codec {
                id: id.clone(),
                source,
            })?;
            out.push((id, value));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Rec {
        n: u32,
    }

    #[test]
    fn records_survive_reopening() {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("sub/meta.redb");
        {
            let s = Store::open(&p).expect("open");
            s.put(Kind::Sandbox, "a", &Rec { n: 1 }).expect("put");
            s.put(Kind::Sandbox, "b", &Rec { n: 2 }).expect("put");
            s.put(Kind::Sandbox, "a", &Rec { n: 3 }).expect("replace");
            s.put(Kind::Container, "c", &Rec { n: 4 }).expect("put");
            s.delete(Kind::Sandbox, "b").expect("delete");
            s.delete(Kind::Sandbox, "never").expect("delete missing");
        }
        let s = Store::open(&p).expect("reopen");
        assert_eq!(
            s.get::<Rec>(Kind::Sandbox, "a").expect("get"),
            Some(Rec { n: 3 })
        );
        assert_eq!(s.get::<Rec>(Kind::Sandbox, "b").expect("get"), None);
        let all: Vec<(String, Rec)> = s.list(Kind::Sandbox).expect("list");
        assert_eq!(all, vec![("a".to_string(), Rec { n: 3 })]);
        let cs: Vec<(String, Rec)> = s.list(Kind::Container).expect("list");
        assert_eq!(cs.len(), 1);
    }

    #[test]
    fn a_second_open_of_the_same_file_is_refused() {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("meta.redb");
        let _first = Store::open(&p).expect("open");
        let err = Store::open(&p).expect_err("second open must fail");
        assert!(err.to_string().contains("meta.redb"), "{err}");
    }

    #[test]
    fn an_undecodable_record_is_an_error_naming_it() {
        let d = tempfile::tempdir().expect("tmp");
        let s = Store::open(&d.path().join("m.redb")).expect("open");
        s.put(Kind::Sandbox, "x", &"just a string").expect("put");
        let err = s.get::<Rec>(Kind::Sandbox, "x").expect_err("decode");
        assert!(err.to_string().contains("record x"), "{err}");
    }
}
