//! `checkpoint`: dump a running container with CRIU into an images
//! directory (runc's verb and flags), leaving it running or not.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::PathBuf;

use crate::criu::{self, DumpOptions};
use crate::error::{Context, Error, Result};
use crate::state::{StateRoot, Status};

/// Options of `checkpoint`.
#[derive(Debug, Clone)]
pub struct CheckpointOptions {
    /// Where the images go (made if missing, 0700).
    pub images: PathBuf,
    /// Where CRIU's log and scratch files go (default: the images dir).
    pub work: Option<PathBuf>,
    /// Keep the container running after the dump.
    pub leave_running: bool,
    /// Dump established TCP connections.
    pub tcp_established: bool,
    /// Dump file locks.
    pub file_locks: bool,
}

/// Run `checkpoint`.
pub fn run(root: &StateRoot, id: &str, o: &CheckpointOptions) -> Result<i32> {
    let _lock = root.lock(id)?;
    let (st, status) = super::load(root, id)?;
    if status != Status::Running {
        return Err(Error::WrongState {
            id: id.into(),
            status: status.to_string(),
            what: "only a running container can be checkpointed".into(),
        });
    }
    criu::check_supported(&st.config)?;
    let work = o.work.clone().unwrap_or_else(|| o.images.clone());
    for d in [&o.images, &work] {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(d)
            .ctx(|| format!("mkdir {}", d.display()))?;
    }
    // The init's stdio as the caller gave it: restore hands new pipes in
    // their place.
    let descriptors: Vec<String> = (0..3)
        .map(|fd| {
            std::fs::read_link(format!("/proc/{}/fd/{fd}", st.pid))
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        })
        .collect();
    let json =
        serde_json::to_vec(&descriptors).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    let dpath = o.images.join(criu::DESCRIPTORS);
    std::fs::write(&dpath, json).ctx(|| format!("write {}", dpath.display()))?;
    let opts = DumpOptions {
        images: o.images.clone(),
        work: work.clone(),
        leave_running: o.leave_running,
        tcp_established: o.tcp_established,
        file_locks: o.file_locks,
    };
    let args = criu::dump_args(&st.config, st.pid, &st.rootfs, &opts, |p| {
        std::fs::metadata(p)
            .map(|m| m.ino())
            .ctx(|| format!("stat namespace {p}"))
    })?;
    let mut join = Vec::new();
    for (name, flag) in criu::joined_pod_namespaces(&st.config) {
        let path = format!("/proc/{}/ns/{name}", st.pid);
        let f = std::fs::File::open(&path).ctx(|| format!("open {path}"))?;
        join.push((f, flag));
    }
    criu::run_dump(&args, &work.join("dump.log"), join)?;
    Ok(0)
}
