//! Root-only files, directories and sockets, whatever the caller's umask.
//!
//! The daemon's trees hold what no other user of the node may see or
//! reach: pods' environment (secrets) in config.json, image layers with
//! device nodes and setuid files (containerd's CVE-2021-41103), the
//! containers' root filesystems, pods' /dev/shm, and sockets that accept
//! commands. The layout (docs/architecture.md, "Files and directories"):
//!
//! * `<root>` is 0700: nothing below it is for anyone but root.
//! * `<state>`, `<state>/pods` and `<state>/containers` are 0711: a pod in
//!   its own user namespace has its container init (host uid/gid of the
//!   pod's root) traverse them to its rootfs, namespace pins and pod files.
//! * each pod's and container's directory below them is 0700, or 0710 with
//!   the group of the pod's root for a user-namespaced pod: only root and
//!   that pod may enter.
//! * shims' sockets live in a 0700 directory; the daemon's own sockets are
//!   bound in a private directory and renamed into place with their final
//!   mode, so there is no window in which another user could connect.

use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::Path;

/// Mode of the daemon's root directory and of shim socket directories.
pub const DIR_MODE: u32 = 0o700;
/// Mode of directories that user-namespaced pods must traverse.
pub const TRAVERSE_MODE: u32 = 0o711;

/// Make `dir` (and its missing parents, 0700 too) with exactly `mode`,
/// tightening an existing one: the daemon may start on a tree an older
/// version or another umask made.
pub fn dir(dir: &Path, mode: u32) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    let md = std::fs::symlink_metadata(dir)?;
    if !md.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a directory", dir.display()),
        ));
    }
    if md.permissions().mode() & 0o7777 != mode {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Lay out the daemon's top directories with their modes (see the module
/// doc) before anything is put in them, tightening what exists.
pub fn daemon_dirs(root: &Path, state: &Path, shim_sockets: &Path) -> io::Result<()> {
    dir(root, DIR_MODE)?;
    dir(state, TRAVERSE_MODE)?;
    dir(&state.join("pods"), TRAVERSE_MODE)?;
    dir(&state.join("containers"), TRAVERSE_MODE)?;
    dir(shim_sockets, DIR_MODE)
}

/// Make the directory of one pod or container: 0700, or 0710 owned by
/// root and the group `pod_root_gid` (the host gid of a user-namespaced
/// pod's root), so that pod's processes can reach their files in it and
/// nobody else can.
pub fn object_dir(path: &Path, pod_root_gid: Option<u32>) -> io::Result<()> {
    match pod_root_gid {
        None => dir(path, DIR_MODE),
        Some(gid) => {
            dir(path, DIR_MODE)?;
            std::os::unix::fs::chown(path, Some(0), Some(gid))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o710))
        }
    }
}

/// Write `data` to a new or truncated file of mode 0600 (and make an
/// existing file 0600): for specs, which carry the pods' environment.
pub fn write_file(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(data)
}

/// Bind a unix socket at `path` that has `mode` from the first moment it
/// is reachable: it is bound in a fresh 0700 directory beside `path`,
/// given its mode there, and renamed into place (replacing a stale
/// socket). The caller decides beforehand whether a socket at `path` may
/// be replaced.
pub fn bind_socket(path: &Path, mode: u32) -> io::Result<UnixListener> {
    let parent = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "socket path has no name"))?;
    let mut template = parent.join(".");
    template.as_mut_os_string().push(name);
    template.as_mut_os_string().push(".XXXXXX");
    let tmp = nix::unistd::mkdtemp(&template).map_err(io::Error::from)?;
    let staged = tmp.join("s");
    let r = UnixListener::bind(&staged).and_then(|l| {
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&staged, path)?;
        Ok(l)
    });
    let _ = std::fs::remove_file(&staged);
    let _ = std::fs::remove_dir(&tmp);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).expect("stat").mode() & 0o7777
    }

    // The umask is not changed here (it is process-wide and tests run in
    // parallel): every mode is set explicitly, and a loose existing mode
    // is tightened, which is what the umask could otherwise spoil.
    #[test]
    fn dirs_get_their_mode_and_are_tightened() {
        let t = tempfile::tempdir().expect("tmp");
        let d = t.path().join("a/b");
        dir(&d, TRAVERSE_MODE).expect("dir");
        assert_eq!(mode(&t.path().join("a")), 0o700);
        assert_eq!(mode(&d), 0o711);
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        dir(&d, DIR_MODE).expect("again");
        assert_eq!(mode(&d), 0o700);
    }

    #[test]
    fn user_namespaced_object_dirs_let_only_the_pods_group_traverse() {
        let t = tempfile::tempdir().expect("tmp");
        let d = t.path().join("pod");
        object_dir(&d, Some(123456)).expect("dir");
        let md = std::fs::metadata(&d).expect("stat");
        assert_eq!((md.mode() & 0o7777, md.uid(), md.gid()), (0o710, 0, 123456));
        let d = t.path().join("plain");
        object_dir(&d, None).expect("dir");
        assert_eq!(mode(&d), 0o700);
    }

    #[test]
    fn spec_files_are_0600_and_symlinks_are_not_followed() {
        let t = tempfile::tempdir().expect("tmp");
        let p = t.path().join("config.json");
        std::fs::write(&p, "old").expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        write_file(&p, b"{}").expect("write");
        assert_eq!(mode(&p), 0o600);
        let target = t.path().join("elsewhere");
        std::fs::write(&target, "keep").expect("write");
        let link = t.path().join("link.json");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        assert!(write_file(&link, b"{}").is_err());
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "keep");
    }

    #[test]
    fn sockets_appear_with_their_mode_and_replace_a_stale_one() {
        let t = tempfile::tempdir().expect("tmp");
        let p = t.path().join("x.sock");
        drop(bind_socket(&p, 0o600).expect("bind"));
        assert_eq!(mode(&p), 0o600);
        let l = bind_socket(&p, 0o660).expect("rebind over the stale socket");
        assert_eq!(mode(&p), 0o660);
        std::os::unix::net::UnixStream::connect(&p).expect("connect");
        drop(l);
        let left: Vec<_> = std::fs::read_dir(t.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("x.sock")]);
    }
}
