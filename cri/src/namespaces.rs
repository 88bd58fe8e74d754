//! A pod sandbox's shared namespaces (network, IPC, UTS), created by the
//! daemon and pinned by bind-mounting their nsfs files under the pod's
//! state directory, so they outlive every process of the pod — a crashed
//! infra process does not lose the pod's network — and survive a daemon
//! restart (they are found again by path).
//!
//! Network, IPC and UTS namespaces belong to a thread, not a process, so
//! each is made on a short-lived thread of its own: the daemon's other
//! threads never change namespace.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

/// A namespace kind a pod shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Network: interfaces, addresses, routes, ports.
    Net,
    /// System V IPC and POSIX message queues.
    Ipc,
    /// Hostname and domain name.
    Uts,
    /// Users and groups: a pod with `userns_options` mode POD has one of
    /// its own, which owns its other namespaces. Made by the pod's infra
    /// process (a multi-threaded daemon cannot enter a new one) and
    /// pinned from it ([`Pinned::adopt`]).
    User,
}

/// Every kind, in the order they are looked for and unpinned.
/// Every kind a pod may pin, in the order they are unpinned.
pub const ALL: [Kind; 4] = [Kind::Net, Kind::Ipc, Kind::Uts, Kind::User];

impl Kind {
    /// The name under /proc/PID/ns and of the pin file.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Net => "net",
            Kind::Ipc => "ipc",
            Kind::Uts => "uts",
            Kind::User => "user",
        }
    }

    fn flag(self) -> CloneFlags {
        match self {
            Kind::Net => CloneFlags::CLONE_NEWNET,
            Kind::Ipc => CloneFlags::CLONE_NEWIPC,
            Kind::Uts => CloneFlags::CLONE_NEWUTS,
            Kind::User => CloneFlags::CLONE_NEWUSER,
        }
    }
}

/// Why namespaces could not be made, found or removed.
#[derive(Debug, thiserror::Error)]
pub enum NsError {
    /// A system call failed.
    #[error("{what} {path}: {errno}")]
    Sys {
        /// What was being done.
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The kernel's answer.
        errno: nix::errno::Errno,
    },
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A pin file is not a namespace (after a restart, say).
    #[error("{0} is not a pinned namespace")]
    NotPinned(PathBuf),
    /// The helper thread died.
    #[error("namespace thread panicked")]
    Thread,
}

/// What a new pod's namespaces start with.
#[derive(Clone, Debug, Default)]
pub struct Setup {
    /// The pod's hostname, set in its new UTS namespace.
    pub hostname: Option<String>,
    /// Namespaced sysctls to set in the new namespace of their kind
    /// (`net.*` in the network namespace, IPC ones in the IPC namespace),
    /// by dotted name. Each is written while the helper thread is in the
    /// new namespace: /proc/sys resolves to the opener's namespaces.
    pub sysctls: Vec<(Kind, String, String)>,
}

/// Namespaces pinned under one directory: `<dir>/net`, `<dir>/ipc`,
/// `<dir>/uts`, as many as the pod has of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pinned {
    dir: PathBuf,
    kinds: Vec<Kind>,
}

impl Pinned {
    /// Creates new namespaces of `kinds` and pins them in `dir` (created
    /// if needed). The network namespace gets `lo` up; the UTS namespace
    /// the hostname of `setup`. On failure nothing stays pinned.
    pub fn create(dir: &Path, kinds: &[Kind], setup: &Setup) -> Result<Pinned, NsError> {
        Pinned::pin_each(dir, kinds, |k| pin_new(dir, k, setup))
    }

    /// Pins the namespaces of `kinds` that process `pid` (a pod's infra,
    /// which made them) is in, at `dir/<kind>` as [`Pinned::create`] does;
    /// the network namespace gets `lo` up. On failure nothing stays pinned.
    pub fn adopt(dir: &Path, pid: u32, kinds: &[Kind]) -> Result<Pinned, NsError> {
        Pinned::pin_each(dir, kinds, |k| {
            let src = PathBuf::from(format!("/proc/{pid}/ns/{}", k.name()));
            pin_at(&src, &dir.join(k.name()))?;
            if k == Kind::Net {
                in_netns(&dir.join(k.name()), loopback_up)?;
            }
            Ok(())
        })
    }

    /// Runs `pin` for each of `kinds` in `dir` (created if needed); on the
    /// first failure unpins what was pinned and returns it.
    fn pin_each(
        dir: &Path,
        kinds: &[Kind],
        mut pin: impl FnMut(Kind) -> Result<(), NsError>,
    ) -> Result<Pinned, NsError> {
        std::fs::create_dir_all(dir).map_err(|source| NsError::Io {
            what: "create namespace directory",
            path: dir.to_path_buf(),
            source,
        })?;
        let mut done = Pinned {
            dir: dir.to_path_buf(),
            kinds: Vec::new(),
        };
        for &k in kinds {
            match pin(k) {
                Ok(()) => done.kinds.push(k),
                Err(e) => {
                    let _ = done.remove();
                    return Err(e);
                }
            }
        }
        Ok(done)
    }

    /// Finds the namespaces a previous run pinned in `dir` (daemon restart):
    /// each existing pin file must still be an nsfs mount.
    pub fn open(dir: &Path) -> Result<Pinned, NsError> {
        let mut kinds = Vec::new();
        for k in ALL {
            let p = dir.join(k.name());
            if !p.exists() {
                continue;
            }
            if !is_nsfs(&p)? {
                return Err(NsError::NotPinned(p));
            }
            kinds.push(k);
        }
        Ok(Pinned {
            dir: dir.to_path_buf(),
            kinds,
        })
    }

    /// The pin file of `kind`, if this pod has its own: the path handed to
    /// CNI (`CNI_NETNS`) and to the runtime's `linux.namespaces[].path`.
    pub fn path(&self, kind: Kind) -> Option<PathBuf> {
        self.kinds
            .contains(&kind)
            .then(|| self.dir.join(kind.name()))
    }

    /// The kinds pinned.
    pub fn kinds(&self) -> &[Kind] {
        &self.kinds
    }

    /// Unpins every namespace (they die with their last process) and
    /// removes the pin files. Idempotent: missing pins are fine.
    pub fn remove(&self) -> Result<(), NsError> {
        Self::unpin_all(&self.dir)
    }

    /// Unpins whatever is pinned under `dir` and removes every pin file,
    /// whatever state a crash left them in: a pin file made but not yet
    /// mounted beside pins that are mounted (where [`Pinned::open`]
    /// refuses) must not keep the mounted ones alive.
    pub fn unpin_all(dir: &Path) -> Result<(), NsError> {
        let mut first_err = None;
        for k in ALL {
            let p = dir.join(k.name());
            if let Err(e) = unpin(&p) {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Whether `p` is an nsfs file (a pinned namespace).
fn is_nsfs(p: &Path) -> Result<bool, NsError> {
    let st = nix::sys::statfs::statfs(p).map_err(|errno| NsError::Sys {
        what: "statfs",
        path: p.to_path_buf(),
        errno,
    })?;
    Ok(st.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}

fn unpin(p: &Path) -> Result<(), NsError> {
    if !p.exists() {
        return Ok(());
    }
    // Several mounts may be stacked if a pin was retried: take them all.
    while matches!(is_nsfs(p), Ok(true)) {
        nix::mount::umount2(p, MntFlags::MNT_DETACH).map_err(|errno| NsError::Sys {
            what: "unmount namespace pin",
            path: p.to_path_buf(),
            errno,
        })?;
    }
    match std::fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NsError::Io {
            what: "remove namespace pin",
            path: p.to_path_buf(),
            source,
        }),
    }
}

/// Bind-mounts the namespace file `src` at `target` (created).
fn pin_at(src: &Path, target: &Path) -> Result<(), NsError> {
    std::fs::File::create(target).map_err(|source| NsError::Io {
        what: "create namespace pin",
        path: target.to_path_buf(),
        source,
    })?;
    let r = nix::mount::mount(
        Some(src),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|errno| NsError::Sys {
        what: "pin namespace at",
        path: target.to_path_buf(),
        errno,
    });
    if r.is_err() {
        let _ = std::fs::remove_file(target);
    }
    r
}

/// Runs `f` on a thread of its own inside the network namespace pinned at
/// `netns` (a network namespace belongs to a thread, so the daemon's other
/// threads stay where they are).
fn in_netns(
    netns: &Path,
    f: impl FnOnce() -> Result<(), NsError> + Send + 'static,
) -> Result<(), NsError> {
    let file = std::fs::File::open(netns).map_err(|source| NsError::Io {
        what: "open network namespace",
        path: netns.to_path_buf(),
        source,
    })?;
    let path = netns.to_path_buf();
    std::thread::spawn(move || {
        nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).map_err(|errno| NsError::Sys {
            what: "enter network namespace",
            path,
            errno,
        })?;
        f()
        // The thread ends here, and its namespace with it.
    })
    .join()
    .map_err(|_| NsError::Thread)?
}

/// Makes one new namespace on a thread of its own and bind-mounts it at
/// `<dir>/<kind>`.
fn pin_new(dir: &Path, kind: Kind, setup: &Setup) -> Result<(), NsError> {
    let target = dir.join(kind.name());
    let hostname = setup.hostname.clone();
    let sysctls: Vec<(String, String)> = setup
        .sysctls
        .iter()
        .filter(|(k, _, _)| *k == kind)
        .map(|(_, n, v)| (n.clone(), v.clone()))
        .collect();
    std::thread::spawn(move || -> Result<(), NsError> {
        nix::sched::unshare(kind.flag()).map_err(|errno| NsError::Sys {
            what: "unshare",
            path: PathBuf::from(kind.name()),
            errno,
        })?;
        match kind {
            Kind::Net => loopback_up()?,
            Kind::Uts => {
                if let Some(h) = &hostname {
                    nix::unistd::sethostname(h).map_err(|errno| NsError::Sys {
                        what: "sethostname",
                        path: PathBuf::from(h),
                        errno,
                    })?;
                }
            }
            Kind::Ipc | Kind::User => {}
        }
        for (name, value) in &sysctls {
            let path = PathBuf::from(format!("/proc/sys/{}", name.replace('.', "/")));
            std::fs::write(&path, value).map_err(|source| NsError::Io {
                what: "set sysctl",
                path,
                source,
            })?;
        }
        let src = PathBuf::from(format!(
            "/proc/self/task/{}/ns/{}",
            nix::unistd::gettid(),
            kind.name()
        ));
        pin_at(&src, &target)
        // The thread ends here; its namespace lives on in the pin.
    })
    .join()
    .map_err(|_| NsError::Thread)?
}

/// Brings `lo` up in the calling thread's network namespace.
fn loopback_up() -> Result<(), NsError> {
    let lo = PathBuf::from("lo");
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|errno| NsError::Sys {
        what: "socket for",
        path: lo.clone(),
        errno,
    })?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS and SIOCSIFFLAGS read and write one ifreq we
    // own, on a socket we own.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) };
    if r < 0 {
        return Err(NsError::Sys {
            what: "get flags of",
            path: lo,
            errno: nix::errno::Errno::last(),
        });
    }
    // SAFETY: the flags member of the union is the one SIOCGIFFLAGS filled.
    unsafe {
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    // SAFETY: as above.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) };
    if r < 0 {
        return Err(NsError::Sys {
            what: "bring up",
            path: lo,
            errno: nix::errno::Errno::last(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_paths_are_named_for_their_kind() {
        let p = Pinned {
            dir: PathBuf::from("/run/carapace/pods/x/ns"),
            kinds: vec![Kind::Net, Kind::Uts],
        };
        assert_eq!(
            p.path(Kind::Net),
            Some(PathBuf::from("/run/carapace/pods/x/ns/net"))
        );
        assert_eq!(p.path(Kind::Ipc), None);
    }
}
