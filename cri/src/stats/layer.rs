//! A container's writable layer: the disk space and inodes its overlay
//! upper directory (`<root>/containers/<id>/upper`) takes — what kubelet
//! evicts on for `ephemeral-storage`.
//!
//! Walking a directory tree is far too slow for every stats request, so
//! each container's last measurement is cached: a request gets the cached
//! value, and one older than [`MAX_AGE`] starts a new walk in the
//! background (at most one per container at a time) whose result the next
//! request sees. Only a container's first request walks on the spot.
//!
//! Bytes are counted as `du` counts them: allocated blocks (`st_blocks` ×
//! 512), each hard-linked inode once. Inodes count every file, directory,
//! symlink and whiteout, the upper directory included. The walk never
//! follows a symlink (every open is `openat(parent, name, O_NOFOLLOW)`, so
//! a container that swaps a directory for a symlink mid-walk cannot send
//! the daemon into the host's tree) and never crosses into another mount.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode, SFlag};

use super::StatsError;

/// How old a cached measurement may be before a request refreshes it.
pub const MAX_AGE: Duration = Duration::from_secs(5);

/// How deep the walk descends (one open directory per level). Deeper
/// directories are counted themselves but not entered, and a warning is
/// logged: a bound on the descriptors a hostile layer can make the daemon
/// hold.
pub const MAX_DEPTH: usize = 128;

/// One measurement of a writable layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LayerUsage {
    /// Bytes allocated on disk.
    pub bytes: u64,
    /// Inodes (files, directories, links, whiteouts).
    pub inodes: u64,
    /// When it was measured, nanoseconds since the epoch.
    pub at_ns: i64,
}

#[derive(Debug)]
struct Entry {
    usage: LayerUsage,
    measured: Instant,
    refreshing: bool,
}

/// The last writable-layer measurement of every container asked about.
#[derive(Debug, Default)]
pub struct LayerCache {
    entries: Mutex<HashMap<String, Entry>>,
}

impl LayerCache {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The writable-layer usage of container `id`, whose upper directory
    /// is `upper`: measured now on the first request, cached afterwards,
    /// and refreshed in the background once older than [`MAX_AGE`].
    pub fn usage(self: &Arc<Self>, id: &str, upper: &Path) -> Result<LayerUsage, StatsError> {
        {
            let mut map = self.map();
            if let Some(e) = map.get_mut(id) {
                if e.measured.elapsed() >= MAX_AGE && !e.refreshing {
                    e.refreshing = true;
                    self.refresh_in_background(id.to_string(), upper.to_path_buf());
                }
                return Ok(e.usage);
            }
        }
        let usage = measure(upper)?;
        self.map().insert(
            id.to_string(),
            Entry {
                usage,
                measured: Instant::now(),
                refreshing: false,
            },
        );
        Ok(usage)
    }

    fn refresh_in_background(self: &Arc<Self>, id: String, upper: PathBuf) {
        let cache = self.clone();
        let work = move || {
            let result = measure(&upper);
            let mut map = cache.map();
            // A container removed meanwhile has no entry any more: leave it so.
            let Some(e) = map.get_mut(&id) else { return };
            e.refreshing = false;
            match result {
                Ok(usage) => {
                    e.usage = usage;
                    e.measured = Instant::now();
                }
                Err(err) => {
                    tracing::debug!(container = %id, error = %err, "writable layer usage not refreshed")
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn_blocking(work);
            }
            Err(_) => {
                std::thread::spawn(work);
            }
        }
    }

    /// Keeps only the entries of containers `keep` accepts.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.map().retain(|id, _| keep(id));
    }
}

/// The usage of the tree at `root` now (see the module doc for what is
/// counted).
pub fn measure(root: &Path) -> Result<LayerUsage, StatsError> {
    let sys = |what, path: &Path| {
        let path = path.to_path_buf();
        move |errno| StatsError::Sys { what, path, errno }
    };
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let top = Dir::open(root, flags, Mode::empty()).map_err(sys("open", root))?;
    let st = fstat(top.as_fd()).map_err(sys("stat", root))?;
    let mut du = Du::new(st.st_dev);
    du.add(&st);
    let mut stack = vec![open_frame(top, root)?];
    let mut truncated = false;
    loop {
        let depth = stack.len();
        let Some(frame) = stack.last_mut() else { break };
        let Some(name) = frame.names.pop() else {
            stack.pop();
            continue;
        };
        let st = match fstatat(
            frame.dir.as_fd(),
            name.as_c_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => st,
            // Removed while we walk: it no longer takes space.
            Err(Errno::ENOENT) => continue,
            Err(errno) => {
                return Err(StatsError::Sys {
                    what: "stat in",
                    path: root.to_path_buf(),
                    errno,
                })
            }
        };
        if st.st_dev != du.dev {
            // A mount point: someone else's file system.
            continue;
        }
        du.add(&st);
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR {
            continue;
        }
        if depth >= MAX_DEPTH {
            truncated = true;
            continue;
        }
        let dir = match Dir::openat(frame.dir.as_fd(), name.as_c_str(), flags, Mode::empty()) {
            Ok(d) => d,
            // Gone, or swapped for a symlink or a file since the stat.
            Err(Errno::ENOENT | Errno::ELOOP | Errno::ENOTDIR) => continue,
            Err(errno) => {
                return Err(StatsError::Sys {
                    what: "open directory in",
                    path: root.to_path_buf(),
                    errno,
                })
            }
        };
        match fstat(dir.as_fd()) {
            Ok(s) if s.st_dev == du.dev => {}
            _ => continue,
        }
        stack.push(open_frame(dir, root)?);
    }
    if truncated {
        tracing::warn!(
            dir = %root.display(),
            max_depth = MAX_DEPTH,
            "writable layer nested deeper than the walk goes: usage undercounted"
        );
    }
    Ok(LayerUsage {
        bytes: du.bytes,
        inodes: du.inodes,
        at_ns: crate::clock::now_ns(),
    })
}

/// One open directory of the walk and the entries left to visit in it.
struct Frame {
    dir: Dir,
    names: Vec<CString>,
}

/// Reads every entry name of `dir` (but `.` and `..`) up front, so the
/// directory's descriptor is free for `fstatat`/`openat` afterwards.
fn open_frame(mut dir: Dir, root: &Path) -> Result<Frame, StatsError> {
    let mut names = Vec::new();
    for entry in dir.iter() {
        let entry = entry.map_err(|errno| StatsError::Sys {
            what: "read directory in",
            path: root.to_path_buf(),
            errno,
        })?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            names.push(name.to_owned());
        }
    }
    Ok(Frame { dir, names })
}

/// Running totals of a walk.
struct Du {
    dev: u64,
    bytes: u64,
    inodes: u64,
    linked: HashSet<u64>,
}

impl Du {
    fn new(dev: u64) -> Self {
        Du {
            dev,
            bytes: 0,
            inodes: 0,
            linked: HashSet::new(),
        }
    }

    /// Counts an inode, once however many names it has.
    fn add(&mut self, st: &FileStat) {
        let is_dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
        if !is_dir && st.st_nlink > 1 && !self.linked.insert(st.st_ino) {
            return;
        }
        self.inodes += 1;
        self.bytes += u64::try_from(st.st_blocks).unwrap_or(0) * 512;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn blocks_of(p: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(p).expect("stat").blocks() * 512
    }

    #[test]
    fn measure_counts_allocated_bytes_and_every_inode() {
        let d = tempfile::tempdir().expect("tempdir");
        let root = d.path();
        std::fs::create_dir_all(root.join("a/b")).expect("mkdir");
        std::fs::write(root.join("a/b/data"), vec![7u8; 300_000]).expect("write");
        std::fs::write(root.join("small"), b"x").expect("write");
        symlink("/etc", root.join("link")).expect("symlink");
        let u = measure(root).expect("measure");
        // root, a, a/b, data, small, link
        assert_eq!(u.inodes, 6);
        let expected: u64 = ["", "a", "a/b", "a/b/data", "small", "link"]
            .iter()
            .map(|p| blocks_of(&root.join(p)))
            .sum();
        assert_eq!(u.bytes, expected);
        assert!(u.bytes >= 300_000, "{u:?}");
        assert!(u.at_ns > 0);
    }

    #[test]
    fn measure_counts_hard_links_once_and_never_follows_symlinks() {
        let d = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(outside.path().join("big"), vec![1u8; 1 << 20]).expect("write");
        let root = d.path();
        std::fs::write(root.join("f"), vec![1u8; 100_000]).expect("write");
        std::fs::hard_link(root.join("f"), root.join("g")).expect("link");
        symlink(outside.path(), root.join("out")).expect("symlink");
        let u = measure(root).expect("measure");
        assert_eq!(u.inodes, 3, "root, f (= g), out: {u:?}");
        assert!(u.bytes < 1 << 20, "followed the symlink: {u:?}");
    }

    #[test]
    fn measure_of_a_missing_dir_is_an_error() {
        let d = tempfile::tempdir().expect("tempdir");
        assert!(measure(&d.path().join("nope")).is_err());
    }

    #[test]
    fn the_cache_answers_from_memory_until_refreshed() {
        let d = tempfile::tempdir().expect("tempdir");
        let cache = Arc::new(LayerCache::default());
        let first = cache.usage("c", d.path()).expect("usage");
        std::fs::write(d.path().join("new"), vec![1u8; 200_000]).expect("write");
        // Fresh: the cached value, not a new walk.
        assert_eq!(cache.usage("c", d.path()).expect("usage"), first);
        cache.retain(|_| false);
        // Forgotten: measured again.
        let again = cache.usage("c", d.path()).expect("usage");
        assert_eq!(again.inodes, first.inodes + 1);
    }

    #[test]
    fn a_stale_entry_is_refreshed_in_the_background() {
        let d = tempfile::tempdir().expect("tempdir");
        let cache = Arc::new(LayerCache::default());
        let first = cache.usage("c", d.path()).expect("usage");
        std::fs::write(d.path().join("new"), vec![1u8; 200_000]).expect("write");
        // Age the entry instead of sleeping.
        if let Some(e) = cache.map().get_mut("c") {
            e.measured = Instant::now()
                .checked_sub(MAX_AGE)
                .expect("clock far enough from boot");
        }
        // The stale value is answered and a refresh starts.
        assert_eq!(cache.usage("c", d.path()).expect("usage"), first);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let u = cache.usage("c", d.path()).expect("usage");
            if u.inodes == first.inodes + 1 {
                break;
            }
            assert!(Instant::now() < deadline, "never refreshed: {u:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
