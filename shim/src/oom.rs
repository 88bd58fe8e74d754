//! OOM-kill watcher: tells the shim, as it happens, that the kernel
//! OOM-killed a process of the container's cgroup, so it can publish a
//! TaskOOM event (what Kubernetes turns into `OOMKilled`).
//!
//! The shim must be idle at rest, so this is event driven only — no timer
//! runs while nothing happens:
//!
//! * cgroup v1: the memory controller's notification API. An eventfd is
//!   registered for `memory.oom_control` through `cgroup.event_control`; the
//!   kernel signals it each time the cgroup enters OOM, and once more when
//!   the cgroup is removed (told apart by the directory being gone, as runc's
//!   `notify_linux.go` does). The notification is sent *before* the kernel
//!   picks and kills a victim (and also when `oom_kill_disable` is set and
//!   nothing is killed), so a wake is confirmed by the `oom_kill` count
//!   increasing, re-read a few times over at most about a second after the
//!   wake (a bounded re-check that only ever follows a notification).
//! * cgroup v2: inotify `IN_MODIFY` on `memory.events`, which the kernel
//!   touches on every memory event; each wake re-reads the `oom_kill` count.
//!   The cgroup file system (kernfs) sends neither `IN_DELETE_SELF` nor
//!   `IN_IGNORED` when a cgroup is removed (the watch pins the inode), so
//!   removal is seen as `IN_DELETE` (or `IN_MOVED_FROM`) of the cgroup's
//!   directory name in a watch on its parent, which rmdir(2) does generate.
//!   `IN_DELETE_SELF`/`IN_IGNORED` on the file are still honoured.
//!
//! Only increases over the count seen when watching started are reported.

use std::ffi::{CString, OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::ops::ControlFlow;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use carapace_cgroups::{Hierarchy, Manager};
use nix::errno::Errno;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};

/// Why watching a cgroup for OOM kills could not start. Each variant names
/// the cgroup, file or directory involved and, for syscalls, the errno, so
/// the message alone says what the kernel refused.
#[derive(Debug, thiserror::Error)]
pub enum OomError {
    /// `watch` was called outside a tokio runtime, so there is nothing to
    /// run the watcher on.
    #[error("watch OOM kills of cgroup {cgroup}: not called inside a tokio runtime")]
    NoRuntime {
        /// The cgroup path below the hierarchy roots, e.g. "/carapace/abc".
        cgroup: String,
    },

    /// The cgroup's directory does not exist (it must, to be watched).
    #[error("watch OOM kills: cgroup directory {} does not exist", path.display())]
    NotFound {
        /// The memory cgroup directory that was looked for.
        path: PathBuf,
    },

    /// The cgroup has no memory controller: on v1 none is mounted, on v2 it
    /// is not enabled in the parent's cgroup.subtree_control (no
    /// memory.events file). OOM kills cannot be observed without it.
    #[error("watch OOM kills of cgroup {cgroup}: no memory controller ({reason})")]
    NoMemoryController {
        /// The cgroup path below the hierarchy roots.
        cgroup: String,
        /// What is missing, e.g. "no cgroup v1 memory hierarchy is mounted".
        reason: String,
    },

    /// The starting `oom_kill` count could not be read.
    #[error("watch OOM kills: read the starting oom_kill count: {0}")]
    Count(#[source] carapace_cgroups::Error),

    /// eventfd(2) failed (v1).
    #[error("watch OOM kills of {}: eventfd: {errno}", path.display())]
    Eventfd {
        /// The memory cgroup directory the eventfd was for.
        path: PathBuf,
        /// What the kernel said.
        errno: Errno,
    },

    /// Opening a cgroup file failed (v1: memory.oom_control or
    /// cgroup.event_control).
    #[error("watch OOM kills: open {}: {errno}", path.display())]
    Open {
        /// The file that could not be opened.
        path: PathBuf,
        /// What the kernel said.
        errno: Errno,
    },

    /// The kernel refused the eventfd registration written to
    /// cgroup.event_control (v1).
    #[error("watch OOM kills: write {value:?} to {}: {errno}", path.display())]
    Register {
        /// The cgroup.event_control file.
        path: PathBuf,
        /// The registration line, `"<eventfd> <memory.oom_control fd>"`.
        value: String,
        /// What the kernel said.
        errno: Errno,
    },

    /// inotify_init1(2) failed (v2).
    #[error("watch OOM kills of {}: inotify_init1: {errno}", path.display())]
    InotifyInit {
        /// The cgroup directory the inotify instance was for.
        path: PathBuf,
        /// What the kernel said (EMFILE: fs.inotify.max_user_instances).
        errno: Errno,
    },

    /// inotify_add_watch(2) failed (v2).
    #[error("watch OOM kills: inotify_add_watch {}: {errno}", path.display())]
    AddWatch {
        /// The file or directory that could not be watched.
        path: PathBuf,
        /// What the kernel said (ENOSPC: fs.inotify.max_user_watches).
        errno: Errno,
    },

    /// The eventfd or inotify fd could not be registered with the tokio
    /// reactor.
    #[error("watch OOM kills of {}: register with the tokio reactor: {errno}", path.display())]
    Reactor {
        /// The cgroup directory being watched.
        path: PathBuf,
        /// What epoll said.
        errno: Errno,
    },
}

/// Starts watching `cgroup` (must exist) and returns a receiver that yields
/// the new total oom_kill count each time it increases; the sender side is
/// dropped (receiver yields None) when the cgroup is removed or watching
/// fails irrecoverably. Must be called inside a tokio runtime with I/O
/// enabled (spawns one task with `tokio::spawn`).
///
/// This is how the shim learns of OOM kills while they happen (to publish
/// TaskOOM), without any timer while the container runs quietly. Kills
/// counted before the call are not reported. On a v1 kernel older than 4.13
/// (no `oom_kill` line in memory.oom_control) each value is instead the
/// number of OOM notifications received since the call. Dropping the
/// receiver stops the task and closes its file descriptors.
pub fn watch(cgroup: Manager) -> Result<UnboundedReceiver<u64>, OomError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(OomError::NoRuntime {
            cgroup: cgroup.relative_path().to_string(),
        });
    }
    let (tx, rx) = mpsc::unbounded_channel();
    match cgroup.hierarchy() {
        Hierarchy::V1 => {
            let w = V1Watch::start(cgroup)?;
            tokio::spawn(w.run(tx));
        }
        Hierarchy::V2 => {
            let w = V2Watch::start(cgroup)?;
            tokio::spawn(w.run(tx));
        }
    }
    Ok(rx)
}

/// The memory cgroup directory, or why there is none.
fn memory_dir(cgroup: &Manager) -> Result<PathBuf, OomError> {
    let dir = cgroup
        .path_for("memory")
        .ok_or_else(|| OomError::NoMemoryController {
            cgroup: cgroup.relative_path().to_string(),
            reason: "no cgroup v1 memory hierarchy is mounted".into(),
        })?;
    if is_gone(&dir) {
        return Err(OomError::NotFound { path: dir });
    }
    Ok(dir)
}

/// Whether `path` is known not to exist. Other lstat errors (EACCES, …) do
/// not count as removal.
fn is_gone(path: &Path) -> bool {
    matches!(path.symlink_metadata(), Err(e) if e.kind() == ErrorKind::NotFound)
}

/// The errno behind an `std::io::Error` from a syscall (EIO if none).
fn errno_of(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// Takes ownership of a descriptor a syscall just returned (or its errno).
fn owned_fd(ret: RawFd) -> Result<OwnedFd, Errno> {
    if ret < 0 {
        return Err(Errno::last());
    }
    // SAFETY: `ret` is a descriptor the kernel has just created for us and
    // nothing else owns or will close it.
    Ok(unsafe { OwnedFd::from_raw_fd(ret) })
}

/// One read(2) from a non-blocking fd the reactor watches; EAGAIN comes
/// back as WouldBlock so `AsyncFdReadyGuard::try_io` clears readiness.
fn read_fd(fd: &OwnedFd, buf: &mut [u8]) -> std::io::Result<usize> {
    nix::unistd::read(fd.as_fd(), buf).map_err(std::io::Error::from)
}

/// Hands `fd` to the tokio reactor (read interest only: an eventfd is
/// always writable).
fn register(fd: OwnedFd, dir: &Path) -> Result<AsyncFd<OwnedFd>, OomError> {
    // SAFETY: `fd` is open and owned by the AsyncFd from here on; it is
    // closed only when the AsyncFd drops it and is never swapped out (only
    // `get_ref` is used), so it names the same file for the AsyncFd's life.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(|e| {
        let (_fd, cause) = e.into_parts();
        OomError::Reactor {
            path: dir.to_path_buf(),
            errno: errno_of(&cause),
        }
    })
}

/// What the watcher reports: only increases of the count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counter {
    /// The kernel's `oom_kill` count, last value seen.
    Kernel(u64),
    /// v1 before 4.13: OOM notifications received so far.
    Notifications(u64),
}

impl Counter {
    /// Records a fresh `oom_kill` count; Some(count) when it went up.
    fn observe(&mut self, count: u64) -> Option<u64> {
        match self {
            Counter::Kernel(last) if count > *last => {
                *last = count;
                Some(count)
            }
            _ => None,
        }
    }

    /// Records `n` v1 notifications; Some(total) in notification mode.
    fn notified(&mut self, n: u64) -> Option<u64> {
        match self {
            Counter::Notifications(total) if n > 0 => {
                *total = total.saturating_add(n);
                Some(*total)
            }
            _ => None,
        }
    }
}

/// Delays (ms) of the bounded re-reads of the v1 count after a notification
/// that the count does not reflect yet: the kernel notifies before it kills.
const V1_RECHECK_MS: [u64; 7] = [5, 10, 20, 50, 100, 200, 500];

/// The line cgroup.event_control takes to register `efd` for `cfd`.
fn registration_line(efd: RawFd, cfd: RawFd) -> String {
    format!("{efd} {cfd}")
}

/// cgroup v1: an eventfd registered for memory.oom_control.
struct V1Watch {
    cgroup: Manager,
    /// cgroup.event_control: gone once the cgroup is removed.
    event_control: PathBuf,
    efd: AsyncFd<OwnedFd>,
    /// Kept open while registered, as runc does.
    _oom_control: File,
    counter: Counter,
}

impl V1Watch {
    fn start(cgroup: Manager) -> Result<V1Watch, OomError> {
        let dir = memory_dir(&cgroup)?;
        // The baseline is read before registering; run() re-reads once right
        // away, so a kill in between is reported rather than absorbed.
        let counter = match cgroup.oom_kill_count() {
            Ok(n) => Counter::Kernel(n),
            Err(carapace_cgroups::Error::Parse { .. }) => Counter::Notifications(0),
            Err(e) => return Err(OomError::Count(e)),
        };
        // SAFETY: eventfd(2) takes no pointers; the result is checked by owned_fd.
        let efd = owned_fd(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })
            .map_err(|errno| OomError::Eventfd {
                path: dir.clone(),
                errno,
            })?;
        let oom_path = dir.join("memory.oom_control");
        let oom_control = File::open(&oom_path).map_err(|e| OomError::Open {
            path: oom_path,
            errno: errno_of(&e),
        })?;
        let event_control = dir.join("cgroup.event_control");
        let value = registration_line(efd.as_raw_fd(), oom_control.as_raw_fd());
        let mut ctl = OpenOptions::new()
            .write(true)
            .open(&event_control)
            .map_err(|e| OomError::Open {
                path: event_control.clone(),
                errno: errno_of(&e),
            })?;
        ctl.write_all(value.as_bytes())
            .map_err(|e| OomError::Register {
                path: event_control.clone(),
                value: value.clone(),
                errno: errno_of(&e),
            })?;
        let efd = register(efd, &dir)?;
        Ok(V1Watch {
            cgroup,
            event_control,
            efd,
            _oom_control: oom_control,
            counter,
        })
    }

    async fn run(mut self, tx: UnboundedSender<u64>) {
        let cg = self.cgroup.relative_path().to_string();
        if self.confirm(&tx, false).await.is_break() {
            return;
        }
        loop {
            let n = tokio::select! {
                () = tx.closed() => return,
                ready = self.efd.readable() => match ready {
                    Ok(mut guard) => match guard.try_io(|fd| {
                        let mut buf = [0u8; 8];
                        read_fd(fd.get_ref(), &mut buf).map(|_| u64::from_ne_bytes(buf))
                    }) {
                        Ok(Ok(n)) => n,
                        Ok(Err(e)) => {
                            log::warn!("oom watcher of {cg}: read eventfd: {e}; stopping");
                            return;
                        }
                        Err(_would_block) => continue,
                    },
                    Err(e) => {
                        log::warn!("oom watcher of {cg}: wait for eventfd: {e}; stopping");
                        return;
                    }
                },
            };
            // The kernel also signals when the cgroup is removed.
            if is_gone(&self.event_control) {
                log::debug!("oom watcher of {cg}: cgroup removed");
                return;
            }
            if let Some(total) = self.counter.notified(n) {
                if tx.send(total).is_err() {
                    return;
                }
                continue;
            }
            if self.confirm(&tx, true).await.is_break() {
                return;
            }
        }
    }

    /// Re-reads the count and reports an increase. After a notification
    /// (`recheck`), a count that has not moved yet is re-read a bounded
    /// number of times.
    async fn confirm(&mut self, tx: &UnboundedSender<u64>, recheck: bool) -> ControlFlow<()> {
        if matches!(self.counter, Counter::Notifications(_)) {
            return ControlFlow::Continue(());
        }
        let delays = if recheck { &V1_RECHECK_MS[..] } else { &[] };
        for delay in std::iter::once(&0).chain(delays) {
            if *delay > 0 {
                tokio::time::sleep(Duration::from_millis(*delay)).await;
            }
            match self.cgroup.oom_kill_count() {
                Ok(count) => {
                    if let Some(total) = self.counter.observe(count) {
                        return if tx.send(total).is_ok() {
                            ControlFlow::Continue(())
                        } else {
                            ControlFlow::Break(())
                        };
                    }
                }
                Err(e) => {
                    if !is_gone(&self.event_control) {
                        log::warn!(
                            "oom watcher of {}: {e}; stopping",
                            self.cgroup.relative_path()
                        );
                    }
                    return ControlFlow::Break(());
                }
            }
        }
        if recheck {
            log::debug!(
                "oom watcher of {}: OOM notification without a kill",
                self.cgroup.relative_path()
            );
        }
        ControlFlow::Continue(())
    }
}

/// One event decoded from an inotify read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct InotifyEvent {
    wd: i32,
    mask: u32,
    name: OsString,
}

/// Size of `struct inotify_event` without its name.
const INOTIFY_EVENT_SIZE: usize = 16;

/// Decodes the `struct inotify_event` records of one read(2). A truncated
/// trailing record (which the kernel never produces) is dropped.
fn parse_inotify(buf: &[u8]) -> Vec<InotifyEvent> {
    let mut events = Vec::new();
    let mut rest = buf;
    while rest.len() >= INOTIFY_EVENT_SIZE {
        let word = |i: usize| [rest[i], rest[i + 1], rest[i + 2], rest[i + 3]];
        let wd = i32::from_ne_bytes(word(0));
        let mask = u32::from_ne_bytes(word(4));
        let len = u32::from_ne_bytes(word(12)) as usize;
        let Some(raw) = rest.get(INOTIFY_EVENT_SIZE..INOTIFY_EVENT_SIZE + len) else {
            break;
        };
        let name = raw.split(|b| *b == 0).next().unwrap_or_default();
        events.push(InotifyEvent {
            wd,
            mask,
            name: OsStr::from_bytes(name).to_os_string(),
        });
        rest = &rest[INOTIFY_EVENT_SIZE + len..];
    }
    events
}

/// What a batch of v2 inotify events asks for.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Wake {
    /// memory.events changed: re-read the count.
    recount: bool,
    /// The cgroup may be gone: check.
    check_gone: bool,
    /// The watch on memory.events is dead (IN_IGNORED): nothing more can come.
    stop: bool,
}

/// The v2 watch descriptors and the cgroup's directory name.
struct V2Wds<'a> {
    file: i32,
    parent: Option<i32>,
    leaf: &'a OsStr,
}

/// Folds one read's events into what to do.
fn fold(events: &[InotifyEvent], wds: &V2Wds<'_>) -> Wake {
    let mut wake = Wake::default();
    for ev in events {
        if ev.mask & libc::IN_Q_OVERFLOW != 0 {
            wake.recount = true;
            wake.check_gone = true;
        } else if ev.wd == wds.file {
            if ev.mask & libc::IN_MODIFY != 0 {
                wake.recount = true;
            }
            if ev.mask & (libc::IN_DELETE_SELF | libc::IN_MOVE_SELF | libc::IN_UNMOUNT) != 0 {
                wake.check_gone = true;
            }
            if ev.mask & libc::IN_IGNORED != 0 {
                wake.stop = true;
            }
        } else if Some(ev.wd) == wds.parent {
            let ours = ev.name.as_os_str() == wds.leaf
                && ev.mask & (libc::IN_DELETE | libc::IN_MOVED_FROM) != 0;
            if ours || ev.mask & (libc::IN_IGNORED | libc::IN_DELETE_SELF) != 0 {
                wake.check_gone = true;
            }
        }
    }
    wake
}

/// inotify_add_watch(2) of `path`; returns the watch descriptor.
fn add_watch(inotify: &OwnedFd, path: &Path, mask: u32) -> Result<i32, OomError> {
    let err = |errno| OomError::AddWatch {
        path: path.to_path_buf(),
        errno,
    };
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| err(Errno::EINVAL))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call;
    // the kernel only reads it.
    let wd = unsafe { libc::inotify_add_watch(inotify.as_raw_fd(), c.as_ptr(), mask) };
    if wd < 0 {
        return Err(err(Errno::last()));
    }
    Ok(wd)
}

/// cgroup v2: inotify on memory.events, plus the parent directory to see
/// the cgroup removed.
struct V2Watch {
    cgroup: Manager,
    /// memory.events of the cgroup.
    events: PathBuf,
    leaf: OsString,
    inotify: AsyncFd<OwnedFd>,
    file_wd: i32,
    parent_wd: Option<i32>,
    counter: Counter,
    /// The parent's memory.events (hierarchical: it counts our kills too)
    /// and its oom_kill count when ours was last read. See [`Self::run`].
    parent_events: Option<PathBuf>,
    parent_count: Option<u64>,
}

/// The `oom_kill` count of a cgroup v2 memory.events file.
fn read_oom_kill(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
}

impl V2Watch {
    fn start(cgroup: Manager) -> Result<V2Watch, OomError> {
        let dir = memory_dir(&cgroup)?;
        let events = dir.join("memory.events");
        if is_gone(&events) {
            return Err(OomError::NoMemoryController {
                cgroup: cgroup.relative_path().to_string(),
                reason: format!(
                    "{} is missing: memory is not enabled in the parent's cgroup.subtree_control",
                    events.display()
                ),
            });
        }
        // Baseline before the watches; run() re-reads once right away.
        let counter = Counter::Kernel(cgroup.oom_kill_count().map_err(OomError::Count)?);
        // SAFETY: inotify_init1(2) takes no pointers; the result is checked by owned_fd.
        let inotify =
            owned_fd(unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) })
                .map_err(|errno| OomError::InotifyInit {
                    path: dir.clone(),
                    errno,
                })?;
        let file_wd = add_watch(
            &inotify,
            &events,
            libc::IN_MODIFY | libc::IN_DELETE_SELF | libc::IN_MOVE_SELF,
        )?;
        let parent_wd = match dir.parent() {
            Some(parent) => Some(add_watch(
                &inotify,
                parent,
                libc::IN_DELETE | libc::IN_MOVED_FROM | libc::IN_ONLYDIR,
            )?),
            None => None,
        };
        let leaf = dir.file_name().unwrap_or_default().to_os_string();
        let inotify = register(inotify, &dir)?;
        let parent_events = dir.parent().map(|p| p.join("memory.events"));
        let parent_count = parent_events.as_deref().and_then(read_oom_kill);
        Ok(V2Watch {
            cgroup,
            events,
            leaf,
            inotify,
            file_wd,
            parent_wd,
            counter,
            parent_events,
            parent_count,
        })
    }

    /// Reports each increase of the cgroup's oom_kill count.
    ///
    /// An OOM kill can empty the cgroup, and under the systemd driver
    /// systemd then removes the container's scope at once, possibly
    /// before this task has read the count it was woken for (the kernel
    /// also delays that wake by up to 10 ms). So when memory.events
    /// changed and the cgroup is gone by the time it is read, the parent's
    /// memory.events, which counts its children's kills, decides: if its
    /// count rose since ours was last read, the kill was ours.
    /// Reports each increase of the cgroup's oom_kill count.
    ///
    /// An OOM kill can empty the cgroup, and under the systemd driver
    /// systemd then removes the container's scope at once, possibly
    /// before this task has read the count it was woken for (the kernel
    /// also delays that wake by up to 10 ms). So when memory.events
    /// changed and the cgroup is gone by the time it is read, the parent's
    /// memory.events, which counts its children's kills, decides: if its
    /// count rose since ours was last read, the kill was ours.
    async fn run(mut self, tx: UnboundedSender<u64>) {
        let cg = self.cgroup.relative_path().to_string();
        let mut first = true;
        // When memory.events last woke us: the memory pressure an OOM kill
        // comes with, moments before the cgroup empties.
        let mut last_event: Option<std::time::Instant> = None;
        // Room for many events; at least one with a NAME_MAX name.
        let mut buf = vec![0u8; 4096];
        let mut wake = Wake {
            recount: true,
            check_gone: true,
            stop: false,
        };
        loop {
            if wake.recount {
                match self.cgroup.oom_kill_count() {
                    Ok(count) => {
                        self.parent_count = self.parent_events.as_deref().and_then(read_oom_kill);
                        if let Some(total) = self.counter.observe(count) {
                            if tx.send(total).is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        if !is_gone(&self.events) {
                            log::warn!("oom watcher of {cg}: {e}; stopping");
                        } else if !first {
                            self.report_kill_before_removal(Some(std::time::Instant::now()), &tx);
                        }
                        return;
                    }
                }
            }
            if wake.recount && !first {
                last_event = Some(std::time::Instant::now());
            }
            first = false;
            if (wake.check_gone || wake.stop) && is_gone(&self.events) {
                log::debug!("oom watcher of {cg}: cgroup removed");
                self.report_kill_before_removal(last_event, &tx);
                return;
            }
            if wake.stop {
                log::warn!("oom watcher of {cg}: the kernel dropped the inotify watch; stopping");
                return;
            }
            let n = tokio::select! {
                () = tx.closed() => return,
                ready = self.inotify.readable() => match ready {
                    Ok(mut guard) => match guard.try_io(|fd| read_fd(fd.get_ref(), &mut buf)) {
                        Ok(Ok(n)) => n,
                        Ok(Err(e)) => {
                            log::warn!("oom watcher of {cg}: read inotify: {e}; stopping");
                            return;
                        }
                        Err(_would_block) => {
                            wake = Wake::default();
                            continue;
                        }
                    },
                    Err(e) => {
                        log::warn!("oom watcher of {cg}: wait for inotify: {e}; stopping");
                        return;
                    }
                },
            };
            let wds = V2Wds {
                file: self.file_wd,
                parent: self.parent_wd,
                leaf: &self.leaf,
            };
            wake = fold(&parse_inotify(&buf[..n]), &wds);
        }
    }
}

/// How soon after memory pressure in the cgroup its removal is taken as
/// following an OOM kill (see [`V2Watch::run`]).
const KILL_TO_REMOVAL: Duration = Duration::from_secs(2);

impl V2Watch {
    /// The cgroup is gone: if memory.events woke us within
    /// [`KILL_TO_REMOVAL`] before, and the parent's oom_kill count rose
    /// since ours was last read, the kill was ours: report it. (The
    /// kernel cancels a delayed memory.events wake when it removes the
    /// cgroup, so the wake for the kill itself may never come; the one
    /// for reaching memory.max, just before, does.)
    fn report_kill_before_removal(
        &mut self,
        last_event: Option<std::time::Instant>,
        tx: &UnboundedSender<u64>,
    ) {
        let recent = last_event.is_some_and(|t| t.elapsed() <= KILL_TO_REMOVAL);
        let rose = match (
            self.parent_events.as_deref().and_then(read_oom_kill),
            self.parent_count,
        ) {
            (Some(now), Some(before)) => now > before,
            _ => false,
        };
        if let (true, true, Counter::Kernel(last)) = (recent, rose, self.counter) {
            log::debug!(
                "oom watcher of {}: removed right after an OOM kill",
                self.cgroup.relative_path()
            );
            let _ = tx.send(last + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(wd: i32, mask: u32, name: &str, padded: usize) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&wd.to_ne_bytes());
        v.extend_from_slice(&mask.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        v.extend_from_slice(&(padded as u32).to_ne_bytes());
        let mut n = name.as_bytes().to_vec();
        n.resize(padded, 0);
        v.extend_from_slice(&n);
        v
    }

    fn ev(wd: i32, mask: u32, name: &str) -> InotifyEvent {
        InotifyEvent {
            wd,
            mask,
            name: name.into(),
        }
    }

    #[test]
    fn parses_records_with_and_without_names() {
        let mut buf = record(1, libc::IN_MODIFY, "", 0);
        buf.extend(record(2, libc::IN_DELETE | libc::IN_ISDIR, "ctr", 16));
        buf.extend(record(1, libc::IN_IGNORED, "", 0));
        assert_eq!(
            parse_inotify(&buf),
            vec![
                ev(1, libc::IN_MODIFY, ""),
                ev(2, libc::IN_DELETE | libc::IN_ISDIR, "ctr"),
                ev(1, libc::IN_IGNORED, ""),
            ]
        );
    }

    #[test]
    fn truncated_record_is_dropped() {
        let mut buf = record(1, libc::IN_MODIFY, "", 0);
        let second = record(2, libc::IN_DELETE, "ctr", 16);
        buf.extend_from_slice(&second[..20]);
        assert_eq!(parse_inotify(&buf), vec![ev(1, libc::IN_MODIFY, "")]);
        assert_eq!(parse_inotify(&[0u8; 5]), vec![]);
    }

    fn wds(leaf: &OsStr) -> V2Wds<'_> {
        V2Wds {
            file: 1,
            parent: Some(2),
            leaf,
        }
    }

    #[test]
    fn modify_of_memory_events_recounts() {
        let leaf = OsStr::new("ctr");
        let w = fold(&[ev(1, libc::IN_MODIFY, "")], &wds(leaf));
        assert_eq!(
            w,
            Wake {
                recount: true,
                ..Wake::default()
            }
        );
    }

    #[test]
    fn removal_of_our_directory_checks_gone_but_siblings_do_not() {
        let leaf = OsStr::new("ctr");
        let ours = ev(2, libc::IN_DELETE | libc::IN_ISDIR, "ctr");
        let sibling = ev(2, libc::IN_DELETE | libc::IN_ISDIR, "ctr2");
        let moved = ev(2, libc::IN_MOVED_FROM | libc::IN_ISDIR, "ctr");
        assert!(fold(&[ours], &wds(leaf)).check_gone);
        assert!(fold(&[moved], &wds(leaf)).check_gone);
        assert_eq!(fold(&[sibling], &wds(leaf)), Wake::default());
    }

    #[test]
    fn ignored_file_watch_stops_and_overflow_rechecks_everything() {
        let leaf = OsStr::new("ctr");
        let w = fold(
            &[ev(1, libc::IN_MODIFY, ""), ev(1, libc::IN_IGNORED, "")],
            &wds(leaf),
        );
        assert!(w.recount && w.stop);
        let w = fold(&[ev(-1, libc::IN_Q_OVERFLOW, "")], &wds(leaf));
        assert!(w.recount && w.check_gone && !w.stop);
        let w = fold(&[ev(1, libc::IN_DELETE_SELF, "")], &wds(leaf));
        assert!(w.check_gone && !w.recount);
        // Unknown watch descriptors are ignored.
        assert_eq!(
            fold(&[ev(7, libc::IN_MODIFY, "")], &wds(leaf)),
            Wake::default()
        );
    }

    #[test]
    fn only_increases_are_reported() {
        let mut c = Counter::Kernel(2);
        assert_eq!(c.observe(2), None);
        assert_eq!(c.observe(3), Some(3));
        assert_eq!(c.observe(3), None);
        assert_eq!(c.observe(1), None);
        assert_eq!(c.observe(5), Some(5));
        assert_eq!(c.notified(4), None);
    }

    #[test]
    fn notification_mode_counts_notifications() {
        let mut c = Counter::Notifications(0);
        assert_eq!(c.notified(1), Some(1));
        assert_eq!(c.notified(0), None);
        assert_eq!(c.notified(2), Some(3));
        assert_eq!(c.observe(10), None);
    }

    #[test]
    fn registration_line_is_eventfd_then_control_fd() {
        assert_eq!(registration_line(7, 9), "7 9");
    }

    #[test]
    fn recheck_is_bounded() {
        let total: u64 = V1_RECHECK_MS.iter().sum();
        assert!(total <= 1_000, "{total} ms");
    }
}
