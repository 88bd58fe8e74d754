//! Small file helpers that speak cgroupfs: one write(2) per value, errors that
//! carry the path and the errno, bounded rmdir retries.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use nix::errno::Errno;

use crate::error::{errno_of, Error};

#[cfg(test)]
thread_local! {
    /// Every write made by this thread, in order: lets unit tests check the
    /// order of writes that land in the same (regular) file.
    pub(crate) static WRITES: std::cell::RefCell<Vec<(PathBuf, String)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Test helper: takes the writes recorded on this thread so far.
#[cfg(test)]
pub(crate) fn take_writes() -> Vec<(PathBuf, String)> {
    WRITES.with(|w| std::mem::take(&mut *w.borrow_mut()))
}

/// Writes `value` to an existing cgroup file with a single write(2).
///
/// The file is never created: a missing file means a missing controller or
/// feature, and that must surface as ENOENT naming the file.
pub(crate) fn write(path: &Path, value: &str) -> Result<(), Error> {
    #[cfg(test)]
    WRITES.with(|w| w.borrow_mut().push((path.to_path_buf(), value.to_string())));
    let err = |e: std::io::Error| Error::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        errno: errno_of(&e),
    };
    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(err)?;
    let n = f.write(value.as_bytes()).map_err(err)?;
    if n != value.len() {
        return Err(Error::Write {
            path: path.to_path_buf(),
            value: value.to_string(),
            errno: Errno::EIO,
        });
    }
    Ok(())
}

/// Reads a whole cgroup file as text (lossy UTF-8; cgroup files are ASCII).
pub(crate) fn read(path: &Path) -> Result<String, Error> {
    let err = |e: std::io::Error| Error::Read {
        path: path.to_path_buf(),
        errno: errno_of(&e),
    };
    let mut f = fs::File::open(path).map_err(err)?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).map_err(err)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Reads a file and trims surrounding whitespace.
pub(crate) fn read_trimmed(path: &Path) -> Result<String, Error> {
    Ok(read(path)?.trim().to_string())
}

/// Reads a cgroup file holding one unsigned number.
pub(crate) fn read_u64(path: &Path) -> Result<u64, Error> {
    let s = read_trimmed(path)?;
    s.parse().map_err(|_| Error::Parse {
        path: path.to_path_buf(),
        content: s,
    })
}

/// Looks up `key N` in a flat-keyed cgroup file such as memory.events,
/// memory.oom_control or cgroup.events.
pub(crate) fn read_keyed(path: &Path, key: &str) -> Result<u64, Error> {
    let content = read(path)?;
    parse_keyed(&content, key).ok_or_else(|| Error::Parse {
        path: path.to_path_buf(),
        content: format!("no \"{key} <number>\" line in {:?}", content.trim()),
    })
}

/// Pure part of [`read_keyed`].
pub(crate) fn parse_keyed(content: &str, key: &str) -> Option<u64> {
    content.lines().find_map(|line| {
        let mut it = line.split_whitespace();
        if it.next()? != key {
            return None;
        }
        it.next()?.parse().ok()
    })
}

/// Whether a path exists (without following a final symlink's errors).
pub(crate) fn exists(path: &Path) -> bool {
    path.symlink_metadata().is_ok()
}

/// mkdir(2) that treats "already exists" as success. Returns whether it created.
pub(crate) fn mkdir(path: &Path) -> Result<bool, Error> {
    match fs::create_dir(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Error::Mkdir {
            path: path.to_path_buf(),
            errno: errno_of(&e),
        }),
    }
}

/// Sub-directories of a cgroup directory (child cgroups), not following symlinks.
pub(crate) fn subdirs(path: &Path) -> Result<Vec<PathBuf>, Error> {
    let err = |e: std::io::Error| Error::Read {
        path: path.to_path_buf(),
        errno: errno_of(&e),
    };
    let mut out = Vec::new();
    for entry in fs::read_dir(path).map_err(err)? {
        let entry = entry.map_err(err)?;
        if entry.file_type().map_err(err)?.is_dir() {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Every cgroup directory at and below `root`, deepest first (post-order).
pub(crate) fn walk_post_order(root: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut out = Vec::new();
    fn visit(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Error> {
        for child in subdirs(dir)? {
            visit(&child, out)?;
        }
        out.push(dir.to_path_buf());
        Ok(())
    }
    visit(root, &mut out)?;
    Ok(out)
}

/// How often and how long [`rmdir_retry`] retries EBUSY: processes that were
/// just killed may still be leaving the cgroup. About 2 s in total.
const RMDIR_ATTEMPTS: u32 = 12;

/// rmdir(2) with bounded retries on EBUSY; a missing directory is success.
pub(crate) fn rmdir_retry(path: &Path) -> Result<(), Error> {
    let mut delay = Duration::from_millis(5);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                let errno = errno_of(&e);
                if errno != Errno::EBUSY || attempt >= RMDIR_ATTEMPTS {
                    return Err(Error::Rmdir {
                        path: path.to_path_buf(),
                        errno,
                    });
                }
                thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(400));
            }
        }
    }
}

/// Parses cgroup.procs content: one pid per line. Pids that are not visible
/// in our pid namespace read as 0 and are dropped (signalling pid 0 would hit
/// our own process group).
pub(crate) fn parse_pids(path: &Path, content: &str) -> Result<Vec<i32>, Error> {
    let mut out = Vec::new();
    for line in content.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let pid: i32 = line.parse().map_err(|_| Error::Parse {
            path: path.to_path_buf(),
            content: line.to_string(),
        })?;
        if pid > 0 {
            out.push(pid);
        }
    }
    Ok(out)
}

/// All pids in `dir` and every cgroup below it, sorted and deduplicated.
pub(crate) fn pids_recursive(dir: &Path) -> Result<Vec<i32>, Error> {
    let mut pids = Vec::new();
    for d in walk_post_order(dir)? {
        let procs = d.join("cgroup.procs");
        match read(&procs) {
            Ok(content) => pids.extend(parse_pids(&procs, &content)?),
            // A child cgroup removed while we walk is not an error.
            Err(Error::Read {
                errno: Errno::ENOENT,
                ..
            }) if d != dir => {}
            Err(e) => return Err(e),
        }
    }
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_keyed_finds_oom_kill_line() {
        let content = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(parse_keyed(content, "oom_kill"), Some(3));
        assert_eq!(parse_keyed(content, "under_oom"), Some(0));
        assert_eq!(parse_keyed(content, "oom"), None);
    }

    #[test]
    fn parse_pids_drops_invisible_zero_pids() {
        let p = Path::new("/x/cgroup.procs");
        assert_eq!(parse_pids(p, "12\n0\n7\n\n").unwrap(), vec![12, 7]);
        assert!(parse_pids(p, "12\nabc\n").is_err());
    }

    #[test]
    fn write_refuses_to_create_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let err = write(&dir.path().join("memory.max"), "1").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("write 1 to "), "{msg}");
        assert!(msg.contains("memory.max: ENOENT"), "{msg}");
    }

    #[test]
    fn rmdir_retry_is_ok_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        rmdir_retry(&dir.path().join("gone")).unwrap();
    }
}
