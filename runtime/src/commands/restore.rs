//! `restore`: make a container from a CRIU dump (runc's verb). The restored
//! processes are left stopped, in the created state: `start` releases them,
//! so a restored container goes through create and start as any other.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::wait::{waitpid, WaitStatus};

use crate::criu::{self, Inherit, RestoreOptions as CriuRestore};
use crate::error::{Context, Error, Result};
use crate::process::{create::write_pid_file, fork_child};
use crate::rootfs::{devices, resolve};
use crate::state::{self, ContainerState, StateRoot, RESTORED};
use crate::{spec as specfile, syscall};

/// Options of `restore`.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Container ID.
    pub id: String,
    /// Bundle directory (config.json and the rootfs, as for create).
    pub bundle: PathBuf,
    /// Where to write the restored init's PID.
    pub pid_file: Option<PathBuf>,
    /// The dump's images.
    pub images: PathBuf,
    /// Where CRIU's log and scratch files go (default: the images dir).
    pub work: Option<PathBuf>,
    /// Use the systemd cgroup driver.
    pub systemd_cgroup: bool,
    /// Restore established TCP connections.
    pub tcp_established: bool,
    /// Restore file locks.
    pub file_locks: bool,
}

/// Run `restore`.
pub fn run(root: &StateRoot, o: &RestoreOptions) -> Result<i32> {
    let bundle = o
        .bundle
        .canonicalize()
        .ctx(|| format!("bundle {}", o.bundle.display()))?;
    let spec = specfile::load(&bundle)?;
    let rootfs = specfile::rootfs(&bundle, &spec)?;
    state::validate_id(&o.id)?;
    criu::check_supported(&spec)?;
    let dpath = o.images.join(criu::DESCRIPTORS);
    let descriptors: Vec<String> = std::fs::read(&dpath)
        .ctx(|| format!("read {}", dpath.display()))
        .and_then(|b| {
            serde_json::from_slice(&b)
                .map_err(|e| Error::InvalidArgument(format!("{}: {e}", dpath.display())))
        })?;
    let dir = root.reserve(&o.id)?;
    let linux = spec.linux().clone().unwrap_or_default();
    let cg = carapace_cgroups::Manager::new(
        linux.cgroups_path().as_ref().and_then(|p| p.to_str()),
        &o.id,
        o.systemd_cgroup,
    )?;
    let mut resources = linux.resources().clone().unwrap_or_default();
    let spec_rules = resources.devices().clone().unwrap_or_default();
    resources.set_devices(Some(devices::cgroup_rules(&spec_rules)));
    let work = o.work.clone().unwrap_or_else(|| o.images.clone());
    let criu_root = dir.join("criu-root");
    let r = (|| -> Result<i32> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&work)
            .ctx(|| format!("mkdir {}", work.display()))?;
        make_mountpoints(&spec, &rootfs)?;
        // CRIU wants its root to be a mount point whose parent is not
        // overmounted (runc binds the rootfs the same way).
        std::fs::create_dir(&criu_root).ctx(|| format!("mkdir {}", criu_root.display()))?;
        mount(
            Some(&rootfs),
            &criu_root,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .ctx(|| format!("bind {} at {}", rootfs.display(), criu_root.display()))?;
        let pid_tmp = dir.join("restore.pid");
        let ropts = CriuRestore {
            images: o.images.clone(),
            work: work.clone(),
            root: criu_root.clone(),
            pid_file: pid_tmp.clone(),
            cgroup: cg.relative_path().to_string(),
            tcp_established: o.tcp_established,
            file_locks: o.file_locks,
        };
        let (args, inherit) = criu::restore_args(&spec, &ropts, &descriptors, 3);
        let pid = run_criu(&args, &inherit, &work, &pid_tmp, &cg, &resources)?;
        let st = ContainerState {
            id: o.id.clone(),
            pid,
            pid_start_time: syscall::process_start_time(pid).unwrap_or(0),
            bundle: bundle.clone(),
            rootfs: rootfs.clone(),
            created: state::now_rfc3339(),
            cgroup_path: Some(cg.relative_path().to_string()),
            systemd_cgroup: o.systemd_cgroup,
            config: spec.clone(),
        };
        let marker = dir.join(RESTORED);
        std::fs::write(&marker, b"").ctx(|| format!("write {}", marker.display()))?;
        root.save(&st)?;
        if let Some(pf) = &o.pid_file {
            write_pid_file(pf, pid)?;
        }
        Ok(0)
    })();
    // The restored mount namespace has its own copy of the root.
    let _ = umount2(&criu_root, MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir(&criu_root);
    if r.is_err() {
        let _ = cg.kill_all(libc::SIGKILL);
        let _ = cg.destroy();
        let _ = root.remove(&o.id);
    }
    r
}

/// Mount points of the spec's bind mounts that the rootfs lacks (a rootfs
/// made afresh from the image plus the dump's changes may not have the
/// ones the first create added), except below a tmpfs the dump restores
/// whole.
fn make_mountpoints(spec: &oci_spec::runtime::Spec, rootfs: &Path) -> Result<()> {
    let tmpfs: Vec<PathBuf> = spec
        .mounts()
        .iter()
        .flatten()
        .filter(|m| m.typ().as_deref() == Some("tmpfs"))
        .map(|m| m.destination().clone())
        .collect();
    let root: OwnedFd = nix::fcntl::open(
        rootfs,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(|| format!("open {}", rootfs.display()))?;
    for (dest, source) in criu::bind_mounts(spec) {
        let d = Path::new(&dest);
        if tmpfs.iter().any(|t| d.starts_with(t) && d != t) {
            continue;
        }
        let kind = if std::fs::metadata(&source)
            .map(|m| m.is_dir())
            .unwrap_or(true)
        {
            resolve::Kind::Dir
        } else {
            resolve::Kind::File
        };
        resolve::ensure_in_root(&root, d, kind)?;
    }
    Ok(())
}

/// Forks CRIU, puts it in the container's cgroup (with its limits) before
/// it restores anything, so every restored process starts there, and
/// waits for it. Returns the restored init's PID.
fn run_criu(
    args: &[String],
    inherit: &[Inherit],
    work: &Path,
    pid_file: &Path,
    cg: &carapace_cgroups::Manager,
    resources: &oci_spec::runtime::LinuxResources,
) -> Result<i32> {
    let pidns_joined = inherit
        .iter()
        .any(|i| matches!(i, Inherit::Namespace { pid: true, .. }));
    let mut files: Vec<(OwnedFd, i32)> = Vec::new();
    for i in inherit {
        match i {
            Inherit::Stdio { from, fd } => {
                let dup = nix::unistd::dup(std_fd(*from)).ctx(|| format!("dup fd {from}"))?;
                files.push((dup, *fd));
            }
            Inherit::Namespace { path, fd, .. } => {
                let f = std::fs::File::open(path).ctx(|| format!("open namespace {path}"))?;
                files.push((OwnedFd::from(f), *fd));
            }
        }
    }
    let out_path = work.join("criu.out");
    let out = std::fs::File::create(&out_path).ctx(|| format!("create {}", out_path.display()))?;
    let bin = CString::new(criu::binary().into_os_string().into_encoded_bytes())
        .map_err(|_| Error::InvalidArgument("criu path has a NUL".into()))?;
    let mut argv = vec![bin.clone()];
    for a in args {
        argv.push(
            CString::new(a.as_str())
                .map_err(|_| Error::InvalidArgument(format!("NUL in {a:?}")))?,
        );
    }
    let (go_r, go_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx(|| "pipe")?;
    let go_w_raw = go_w.as_raw_fd();
    let child = fork_child(|| {
        // SAFETY: closes the child's copy of the write end, so that a
        // parent giving up (dropping its own) means EOF here.
        unsafe { libc::close(go_w_raw) };
        let mut b = [0u8; 1];
        if !matches!(nix::unistd::read(&go_r, &mut b), Ok(1)) {
            return 1;
        }
        // Move every passed fd to a number above all targets first, so
        // that no dup2 overwrites a source still to be placed.
        let mut moved = Vec::new();
        for (f, target) in &files {
            // SAFETY: F_DUPFD_CLOEXEC of an open fd onto a free number >= 100.
            let n = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 100) };
            if n < 0 {
                return 1;
            }
            moved.push((n, *target));
        }
        // SAFETY: only dup2/open of fds this child owns, then exec.
        unsafe {
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            if null < 0 || libc::dup2(null, 0) < 0 {
                return 1;
            }
            if libc::dup2(out.as_raw_fd(), 1) < 0 || libc::dup2(out.as_raw_fd(), 2) < 0 {
                return 1;
            }
            for (n, target) in &moved {
                // dup2 clears CLOEXEC on the target.
                if libc::dup2(*n, *target) < 0 {
                    return 1;
                }
            }
        }
        let _ = nix::unistd::execvp(&bin, &argv);
        127
    })?;
    drop(go_r);
    let placed = cg.start(child.as_raw(), resources);
    if let Err(e) = placed {
        drop(go_w);
        let _ = waitpid(child, None);
        return Err(e.into());
    }
    nix::unistd::write(&go_w, b"g").ctx(|| "release criu")?;
    drop(go_w);
    let status = waitpid(child, None).ctx(|| "wait for criu")?;
    let log = work.join("restore.log");
    match status {
        WaitStatus::Exited(_, 0) => {}
        WaitStatus::Exited(_, 127) => {
            return Err(Error::Criu(format!(
                "cannot run {} (is CRIU installed?)",
                criu::binary().display()
            )))
        }
        other => {
            let errors = criu::log_errors(&log);
            // CRIU restores every process under its old PID: in a PID
            // namespace joined (a pod's), those may be taken.
            let hint = if errors.contains("File exists") && pidns_joined {
                " (the checkpointed processes' PIDs are taken in the PID namespace joined: \
                 restore into a pod whose PID namespace does not hold them)"
            } else {
                ""
            };
            return Err(Error::Criu(format!(
                "criu restore failed ({other:?}): {errors}{hint}"
            )));
        }
    }
    let s = std::fs::read_to_string(pid_file).ctx(|| format!("read {}", pid_file.display()))?;
    s.trim()
        .parse()
        .map_err(|_| Error::Criu(format!("criu wrote {s:?} as the restored PID")))
}

/// One of the standard fds, borrowed for a dup.
fn std_fd(fd: i32) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: 0..3 stay open for the whole runtime process.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}
