//! Persistent container state under `--root/<id>/`. The status is never
//! stored: it is derived from the init pid (with its start time, so a reused
//! pid is not mistaken for our container), the exec FIFO and the freezer, so
//! `state` stays right after the init dies and after the runtime restarts.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};
use crate::syscall;

/// Name of the FIFO that holds a created container's init before `start`.
pub const EXEC_FIFO: &str = "exec.fifo";
/// Present while a restored container's processes wait, stopped, for
/// `start` (a restored container's created state).
pub const RESTORED: &str = "restored";
const STATE_FILE: &str = "state.json";
const LOCK_FILE: &str = "lock";

/// The lifecycle status of the OCI runtime spec, plus runc's `paused`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// `create` is still setting the container up.
    Creating,
    /// Set up and waiting for `start`.
    Created,
    /// The user process runs.
    Running,
    /// Frozen by `pause`.
    Paused,
    /// The init process has exited.
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What the runtime remembers about one container.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContainerState {
    /// Container ID (also the state directory's name).
    pub id: String,
    /// Host PID of the container's init; 0 while creating.
    pub pid: i32,
    /// The init's start time in clock ticks, to detect pid reuse.
    pub pid_start_time: u64,
    /// Absolute bundle path.
    pub bundle: PathBuf,
    /// Absolute rootfs path.
    pub rootfs: PathBuf,
    /// Creation time, RFC 3339.
    pub created: String,
    /// The cgroup path the container's cgroups manager resolved.
    pub cgroup_path: Option<String>,
    /// Whether the systemd cgroup driver was requested.
    pub systemd_cgroup: bool,
    /// The spec the container was created from (exec, update and the hooks
    /// of later commands need it).
    pub config: Spec,
}

/// The OCI/runc `state` output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StateOutput {
    /// The OCI version of the container's spec.
    pub oci_version: String,
    /// Container ID.
    pub id: String,
    /// Init PID (0 once stopped, as runc).
    pub pid: i32,
    /// Derived status.
    pub status: Status,
    /// Bundle path.
    pub bundle: PathBuf,
    /// Rootfs path.
    pub rootfs: PathBuf,
    /// Creation time.
    pub created: String,
    /// Owner (runc prints an empty string for root-owned containers).
    pub owner: String,
    /// The spec's annotations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<HashMap<String, String>>,
}

/// Check a container ID as runc does: it becomes a directory name.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= 1024
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidId(id.to_string()))
    }
}

/// The runtime's state root (`--root`).
#[derive(Clone, Debug)]
pub struct StateRoot {
    root: PathBuf,
}

impl StateRoot {
    /// Use `root` as the state directory, creating it (0700) if needed and
    /// tightening it to 0700 if it exists: the states hold every
    /// container's spec, environment included.
    pub fn new(root: &Path) -> Result<Self> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .ctx(|| format!("create state root {}", root.display()))?;
        let md = fs::metadata(root).ctx(|| format!("stat state root {}", root.display()))?;
        if md.permissions().mode() & 0o077 != 0 {
            fs::set_permissions(root, fs::Permissions::from_mode(0o700))
                .ctx(|| format!("chmod state root {}", root.display()))?;
        }
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// Directory of container `id`.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Reserve `id`: mkdir fails if it exists, which makes duplicate IDs
    /// impossible even with concurrent creates.
    pub fn reserve(&self, id: &str) -> Result<PathBuf> {
        validate_id(id)?;
        let dir = self.dir(id);
        match fs::DirBuilder::new().mode(0o711).create(&dir) {
            Ok(()) => Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(Error::AlreadyExists(id.to_string()))
            }
            Err(e) => Err(e).ctx(|| format!("create state dir {}", dir.display())),
        }
    }

    /// IDs of every container with a state file.
    pub fn list(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        let rd = fs::read_dir(&self.root).ctx(|| format!("read {}", self.root.display()))?;
        for e in rd.flatten() {
            if e.path().join(STATE_FILE).exists() {
                if let Some(n) = e.file_name().to_str() {
                    ids.push(n.to_string());
                }
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Load the state of `id`.
    pub fn load(&self, id: &str) -> Result<ContainerState> {
        validate_id(id)?;
        let path = self.dir(id).join(STATE_FILE);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.to_string()))
            }
            Err(e) => return Err(e).ctx(|| format!("read {}", path.display())),
        };
        serde_json::from_slice(&data).map_err(|e| Error::InvalidConfig {
            path,
            reason: format!("corrupt state: {e}"),
        })
    }

    /// Persist `st` atomically (temp file + rename).
    pub fn save(&self, st: &ContainerState) -> Result<()> {
        let dir = self.dir(&st.id);
        let tmp = dir.join(".state.json.tmp");
        let data = serde_json::to_vec(st).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .ctx(|| format!("create {}", tmp.display()))?;
        f.write_all(&data)
            .ctx(|| format!("write {}", tmp.display()))?;
        fs::rename(&tmp, dir.join(STATE_FILE)).ctx(|| format!("rename {}", tmp.display()))
    }

    /// Take the container's lock so concurrent commands on one container
    /// (kill during delete, two deletes) do not interleave.
    pub fn lock(&self, id: &str) -> Result<Lock> {
        validate_id(id)?;
        let dir = self.dir(id);
        if !dir.exists() {
            return Err(Error::NotFound(id.to_string()));
        }
        let path = dir.join(LOCK_FILE);
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .ctx(|| format!("open {}", path.display()))?;
        let fd: OwnedFd = f.into();
        nix::fcntl::Flock::lock(fd, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .ctx(|| format!("lock {}", path.display()))
            .map(Lock)
    }

    /// Remove the state directory of `id` (after the container is gone).
    pub fn remove(&self, id: &str) -> Result<()> {
        let dir = self.dir(id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).ctx(|| format!("remove {}", dir.display())),
        }
    }
}

/// An exclusive lock on one container, released on drop.
pub struct Lock(#[allow(dead_code)] nix::fcntl::Flock<OwnedFd>);

impl ContainerState {
    /// Is the recorded init still the same live process?
    pub fn init_alive(&self) -> bool {
        self.pid > 0
            && syscall::process_alive(self.pid)
            && syscall::process_start_time(self.pid) == Some(self.pid_start_time)
    }

    /// The cgroups manager for this container.
    pub fn cgroups(&self) -> Result<carapace_cgroups::Manager> {
        Ok(carapace_cgroups::Manager::new(
            self.cgroup_path.as_deref(),
            &self.id,
            self.systemd_cgroup,
        )?)
    }

    /// Derive the status from the system (see the module doc).
    pub fn status(&self, dir: &Path) -> Status {
        if self.pid == 0 {
            return Status::Creating;
        }
        if !self.init_alive() {
            return Status::Stopped;
        }
        if dir.join(EXEC_FIFO).exists() || dir.join(RESTORED).exists() {
            return Status::Created;
        }
        match self.cgroups().and_then(|c| Ok(c.is_frozen()?)) {
            Ok(true) => Status::Paused,
            _ => Status::Running,
        }
    }

    /// The runc-compatible `state` view.
    pub fn output(&self, status: Status) -> StateOutput {
        StateOutput {
            oci_version: self.config.version().clone(),
            id: self.id.clone(),
            pid: if status == Status::Stopped {
                0
            } else {
                self.pid
            },
            status,
            bundle: self.bundle.clone(),
            rootfs: self.rootfs.clone(),
            created: self.created.clone(),
            owner: String::new(),
            annotations: self.config.annotations().clone(),
        }
    }

    /// Whether the container has no mount namespace of its own (none
    /// listed): its mounts were made in the runtime's, below its rootfs,
    /// and are the runtime's to unmount at delete.
    pub fn mounts_in_runtime_namespace(&self) -> bool {
        inherits_mount_namespace(&self.config)
    }

    /// The OCI state handed to hooks on stdin.
    pub fn hook_state(&self, status: Status) -> serde_json::Value {
        serde_json::json!({
            "ociVersion": self.config.version(),
            "id": self.id,
            "status": status,
            "pid": self.pid,
            "bundle": self.bundle,
            "annotations": self.config.annotations().clone().unwrap_or_default(),
        })
    }
}

/// Wait (bounded) until `pid` has exited; works for non-children via pidfd.
pub fn wait_exit(pid: i32, timeout: std::time::Duration) -> bool {
    let Ok(fd) = syscall::pidfd_open(pid) else {
        return true; // ESRCH: already gone
    };
    let mut pfd = [nix::poll::PollFd::new(
        std::os::fd::AsFd::as_fd(&fd),
        nix::poll::PollFlags::POLLIN,
    )];
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    let _ = fd.as_raw_fd();
    matches!(
        nix::poll::poll(&mut pfd, nix::poll::PollTimeout::try_from(ms).unwrap_or(nix::poll::PollTimeout::MAX)),
        Ok(n) if n > 0
    ) || !syscall::process_alive(pid)
}

/// Current time in RFC 3339 with nanoseconds, UTC.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}

/// Whether `spec` lists no mount namespace, so the container shares the
/// runtime's.
pub fn inherits_mount_namespace(spec: &oci_spec::runtime::Spec) -> bool {
    !spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| {
            ns.iter()
                .any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Mount)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated_like_runc() {
        for ok in ["a", "abc-123_x.y+z", "A"] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "../x", "a\0"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reserve_refuses_duplicates() {
        let d = tempfile::tempdir().expect("tempdir");
        let r = StateRoot::new(d.path()).expect("root");
        r.reserve("c1").expect("first");
        assert!(matches!(r.reserve("c1"), Err(Error::AlreadyExists(_))));
        assert!(matches!(r.load("nope"), Err(Error::NotFound(_))));
    }
}
