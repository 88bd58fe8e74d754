//! A container's CRI log: where it may be written (confined to its pod's
//! log directory), and ReopenContainerLog — after kubelet renames the log
//! away to rotate it, the shim (which writes the log) opens a fresh file at
//! the same path.

use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::shim_client::Shim;

use super::registry::Containers;
use super::ContainerError;

/// The log file of a container: `log_path` below the pod's
/// `log_directory`, or an empty path (no log) when either is empty.
///
/// The shim runs as root and creates or appends to this file, so a path
/// that could land anywhere else on the node is refused with
/// InvalidArgument before anything is created: an absolute `log_path`,
/// one with a `..` component, one that names no file (`.`), and a
/// `log_directory` that is not absolute. Kubelet always sends a relative
/// `log_path` (`name/0.log`) under an absolute `log_directory`.
pub fn confined_path(log_directory: &str, log_path: &str) -> Result<PathBuf, ContainerError> {
    if log_path.is_empty() {
        return Ok(PathBuf::new());
    }
    let refuse = |why: &str| {
        Err(ContainerError::InvalidArgument(format!(
            "log_path {log_path:?} {why}"
        )))
    };
    if log_path.contains('\0') {
        return refuse("contains a NUL byte");
    }
    let rel = Path::new(log_path);
    if rel.has_root() {
        return refuse("is absolute; it must be relative to the pod's log_directory");
    }
    let mut path = PathBuf::from(log_directory);
    for c in rel.components() {
        match c {
            Component::Normal(name) => path.push(name),
            Component::CurDir => {}
            Component::ParentDir => {
                return refuse("contains \"..\"; it must stay inside the pod's log_directory")
            }
            Component::RootDir | Component::Prefix(_) => {
                return refuse("is absolute; it must be relative to the pod's log_directory")
            }
        }
    }
    if !matches!(rel.components().next_back(), Some(Component::Normal(_))) {
        return refuse("names no file");
    }
    if log_directory.is_empty() {
        // No log directory: no log, as containerd does (critest and crictl
        // send container log paths for pods without one).
        return Ok(PathBuf::new());
    }
    if !Path::new(log_directory).is_absolute() || log_directory.contains('\0') {
        return Err(ContainerError::InvalidArgument(format!(
            "log_directory {log_directory:?} must be an absolute path when log_path is set"
        )));
    }
    Ok(path)
}

/// Makes the directories from the pod's `log_directory` down to the
/// directory of `log_file` (a path from [`confined_path`]); kubelet has
/// usually made them already.
///
/// The pod's log directory is the CRI client's choice and may be reached
/// through symlinks, but below it every existing component must be a real
/// directory: a symlink planted there would lead the shim's writes out of
/// the pod's log directory, and is refused with InvalidArgument.
pub fn make_dirs(log_directory: &Path, log_file: &Path) -> Result<(), ContainerError> {
    std::fs::create_dir_all(log_directory)
        .map_err(|e| ContainerError::io("create log dir", log_directory, e))?;
    let Some(below) = log_file
        .strip_prefix(log_directory)
        .ok()
        .and_then(Path::parent)
    else {
        return Ok(());
    };
    let mut dir = log_directory.to_path_buf();
    for c in below.components() {
        dir.push(c);
        match std::fs::symlink_metadata(&dir) {
            Ok(md) if md.is_dir() => continue,
            Ok(md) if md.file_type().is_symlink() => {
                return Err(ContainerError::InvalidArgument(format!(
                    "log_path: {} is a symlink, which could lead out of the pod's log_directory",
                    dir.display()
                )))
            }
            Ok(_) => {
                return Err(ContainerError::io(
                    "create log dir",
                    &dir,
                    std::io::Error::from(ErrorKind::NotADirectory),
                ))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(ContainerError::io("create log dir", &dir, e)),
        }
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            // Made by someone else meanwhile (kubelet): checked again.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let md = std::fs::symlink_metadata(&dir)
                    .map_err(|e| ContainerError::io("create log dir", &dir, e))?;
                if !md.is_dir() {
                    return Err(ContainerError::InvalidArgument(format!(
                        "log_path: {} appeared as a non-directory while it was being made",
                        dir.display()
                    )));
                }
            }
            Err(e) => return Err(ContainerError::io("create log dir", &dir, e)),
        }
    }
    Ok(())
}

/// Reopens the running container's log file.
pub async fn reopen(cs: &Arc<Containers>, id: &str) -> Result<(), ContainerError> {
    let c = cs.get(id)?;
    let rec = c.record();
    rec.ensure_running()?;
    if rec.log_path.as_os_str().is_empty() {
        return Err(ContainerError::FailedPrecondition(format!(
            "container {} has no log file",
            rec.id
        )));
    }
    if rec.shim.is_v2() {
        return match cs.fifo_io.get(&rec.id) {
            Some(pump) => pump.reopen_log(&rec.log_path),
            None => Err(ContainerError::FailedPrecondition(format!(
                "container {}: its output is not being copied",
                rec.id
            ))),
        };
    }
    let shim = Shim::connect(&rec.shim_address)
        .await
        .map_err(|e| ContainerError::from_shim(&rec.id, e))?;
    shim.reopen_log(&rec.id, "")
        .await
        .map_err(|e| ContainerError::from_shim(&rec.id, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error_kind::Kinded;

    fn refused(dir: &str, rel: &str) -> String {
        match confined_path(dir, rel) {
            Err(e @ ContainerError::InvalidArgument(_)) => {
                assert_eq!(e.kind(), crate::error_kind::ErrorKind::InvalidArgument);
                e.to_string()
            }
            other => panic!("{dir:?} + {rel:?}: expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn log_path_escaping_the_log_directory_is_invalid_argument() {
        let dir = "/var/log/pods/ns_pod_uid";
        let m = refused(dir, "/etc/passwd");
        assert!(m.contains("log_path") && m.contains("absolute"), "{m}");
        for rel in ["../x", "a/../../x", "a/..", "name/../0.log"] {
            let m = refused(dir, rel);
            assert!(m.contains("log_path") && m.contains(".."), "{rel}: {m}");
        }
        for rel in [".", "./"] {
            let m = refused(dir, rel);
            assert!(
                m.contains("log_path") && m.contains("names no file"),
                "{rel}: {m}"
            );
        }
        let m = refused(dir, "a\0b");
        assert!(m.contains("NUL"), "{m}");
    }

    #[test]
    fn log_directory_must_be_absolute_when_log_path_is_set() {
        assert_eq!(
            confined_path("", "name/0.log").expect("no log directory: no log"),
            PathBuf::new()
        );
        for dir in ["relative/dir", "./pods"] {
            let m = refused(dir, "name/0.log");
            assert!(
                m.contains("log_directory") && m.contains("absolute"),
                "{dir:?}: {m}"
            );
        }
        // No log asked for: nothing to check, no log.
        assert_eq!(confined_path("", "").expect("no log"), PathBuf::new());
        assert_eq!(
            confined_path("/var/log/pods/p", "").expect("no log"),
            PathBuf::new()
        );
    }

    #[test]
    fn kubelet_log_paths_land_below_the_log_directory() {
        let dir = "/var/log/pods/ns_pod_uid";
        assert_eq!(
            confined_path(dir, "name/0.log").expect("kubelet form"),
            Path::new("/var/log/pods/ns_pod_uid/name/0.log")
        );
        assert_eq!(
            confined_path(dir, "./name//1.log").expect("redundant parts"),
            Path::new("/var/log/pods/ns_pod_uid/name/1.log")
        );
        assert_eq!(
            confined_path(dir, "c.log").expect("crictl form"),
            Path::new("/var/log/pods/ns_pod_uid/c.log")
        );
    }

    #[test]
    fn log_dirs_are_made_below_the_log_directory() {
        let t = tempfile::tempdir().expect("tempdir");
        let dir = t.path().join("pod");
        let file = confined_path(dir.to_str().expect("utf8"), "a/b/0.log").expect("path");
        make_dirs(&dir, &file).expect("make");
        assert!(dir.join("a/b").is_dir());
        assert!(!file.exists(), "the shim creates the file, not the daemon");
        make_dirs(&dir, &file).expect("again: already there");
    }

    #[test]
    fn symlinked_dir_below_the_log_directory_is_refused() {
        let t = tempfile::tempdir().expect("tempdir");
        let dir = t.path().join("pod");
        let outside = t.path().join("outside");
        std::fs::create_dir_all(&dir).expect("mkdir pod");
        std::fs::create_dir_all(&outside).expect("mkdir outside");
        std::os::unix::fs::symlink(&outside, dir.join("name")).expect("plant symlink");
        let file = confined_path(dir.to_str().expect("utf8"), "name/sub/0.log").expect("path");
        let e = make_dirs(&dir, &file).expect_err("symlink below the log directory");
        assert_eq!(
            e.kind(),
            crate::error_kind::ErrorKind::InvalidArgument,
            "{e}"
        );
        assert!(e.to_string().contains("symlink"), "{e}");
        assert!(
            !outside.join("sub").exists(),
            "nothing was made through the symlink"
        );
    }
}
