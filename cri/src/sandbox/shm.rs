//! The pod's /dev/shm: one tmpfs per pod (64 MiB, as Docker and containerd
//! size it), mounted under the pod directory and bind-mounted into each of
//! its containers, so they share POSIX shared memory and nothing else does.

use std::path::Path;

use nix::mount::{MntFlags, MsFlags};

use super::SandboxError;

/// The tmpfs options of a pod's shm.
const SHM_OPTIONS: &str = "mode=1777,size=65536k";

/// Mounts the pod's shm tmpfs at `dir` (created if needed), its root
/// owned by `owner` (uid, gid): the host IDs of the container root of a
/// pod in its own user namespace, for which the host's root is nobody.
pub fn mount(dir: &Path, owner: Option<(u32, u32)>) -> Result<(), SandboxError> {
    std::fs::create_dir_all(dir).map_err(|e| SandboxError::io("create", dir, e))?;
    let options = match owner {
        Some((uid, gid)) => format!("{SHM_OPTIONS},uid={uid},gid={gid}"),
        None => SHM_OPTIONS.to_string(),
    };
    nix::mount::mount(
        Some("shm"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(options.as_str()),
    )
    .map_err(|errno| SandboxError::Mount {
        what: "mount shm tmpfs at",
        path: dir.to_path_buf(),
        errno,
    })
}

/// Whether `dir` is a mount point (its device differs from its parent's).
fn is_mount(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(a), Some(Ok(b))) = (std::fs::metadata(dir), dir.parent().map(std::fs::metadata)) else {
        return false;
    };
    a.dev() != b.dev()
}

/// Unmounts the pod's shm (every stacked mount); nothing mounted is fine.
pub fn unmount(dir: &Path) -> Result<(), SandboxError> {
    while is_mount(dir) {
        nix::mount::umount2(dir, MntFlags::MNT_DETACH).map_err(|errno| SandboxError::Mount {
            what: "unmount shm",
            path: dir.to_path_buf(),
            errno,
        })?;
    }
    Ok(())
}
