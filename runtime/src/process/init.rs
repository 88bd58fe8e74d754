//! The container init: runs inside the new namespaces, builds the
//! container's filesystem and identity, reports `Ready`, blocks on the exec
//! FIFO until `start`, and then execs the user's program.

use std::ffi::CString;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};

use super::channel::{Channel, Msg};
use crate::credentials::{self, CapSets};
use crate::error::{Context, Error, Result};
use crate::namespaces::Plan;
use crate::rootfs::{self, devices::Device, MountContext};
use crate::seccomp::Filter;
use crate::{console, hooks, procfs, syscall, sysctl};

/// Everything the init needs, prepared by the parent before fork.
pub struct InitContext<'a> {
    /// The container's ID (for the state hooks receive).
    pub id: &'a str,
    /// The bundle path (for the state hooks receive).
    pub bundle: &'a Path,
    /// The container's spec.
    pub spec: &'a Spec,
    /// Its namespace plan.
    pub plan: &'a Plan,
    /// Mount setup inputs.
    pub mounts: MountContext,
    /// Device nodes to create.
    pub devices: Vec<Device>,
    /// O_PATH fd of the exec FIFO (None for `exec`).
    pub fifo: Option<OwnedFd>,
    /// Connected console socket when the process has a terminal.
    pub console: Option<OwnedFd>,
    /// Compiled seccomp filter.
    pub seccomp: Option<&'a Filter>,
    /// Capability sets, resolved.
    pub caps: CapSets,
    /// `--no-pivot`.
    pub no_pivot: bool,
    /// `--preserve-fds`: fds 3..3+N are passed to the process.
    pub preserve_fds: u32,
    /// Current oom_score_adj of the caller (lowest we may set without
    /// CAP_SYS_RESOURCE).
    pub caller_oom_score_adj: i32,
}

fn process(spec: &Spec) -> Result<&Process> {
    spec.process()
        .as_ref()
        .ok_or_else(|| Error::InvalidArgument("process is missing".into()))
}

/// Run the init; returns only on failure (the exit code), after reporting it.
pub fn run(ch: &Channel, cx: InitContext<'_>) -> i32 {
    match setup(ch, &cx) {
        Ok(exec) => {
            // After `Ready` the parent is gone; the only way to report is
            // the container's own stderr, as runc does.
            let e = finish(ch, &cx, exec);
            eprintln!("carapace-runtime init: {e}");
            127
        }
        Err(e) => super::child_fail(ch, &e),
    }
}

/// What to exec, resolved while still able to report errors.
pub struct Exec {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
}

fn setup(ch: &Channel, cx: &InitContext<'_>) -> Result<Exec> {
    let spec = cx.spec;
    let p = process(spec)?;
    let linux = spec.linux().as_ref();
    nix::sys::prctl::set_dumpable(false).ctx(|| "PR_SET_DUMPABLE")?;
    if let Some(pid) = std::fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_str()?.parse().ok())
    {
        HOST_PID.store(pid, std::sync::atomic::Ordering::Relaxed);
    }
    // Without a mount namespace of its own (none listed: the spec says it
    // inherits the runtime's), the container's mounts are made in the
    // runtime's namespace, below the rootfs only, and it is entered by
    // chroot; `delete` unmounts them. A joined one is set up as our own.
    let inherited = !cx.plan.isolates(LinuxNamespaceType::Mount);
    let propagation = match linux.and_then(|l| l.rootfs_propagation().as_deref()) {
        None | Some("") => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        Some(w) => rootfs::options::propagation(w)
            .ok_or_else(|| Error::InvalidArgument(format!("rootfsPropagation {w:?}")))?,
    };
    // As runc: `/` gets the requested propagation before anything is
    // mounted, so a shared (Bidirectional) volume's bind joins the host's
    // peer group and mounts made in it reach the host; the rootfs's own
    // parent mount is made private there so pivot_root still works.
    let mounts = spec.mounts().clone().unwrap_or_default();
    let root = rootfs::prepare(&mounts, &cx.mounts, propagation, inherited)?;
    let has_dev = mounts
        .iter()
        .any(|m| m.destination() == Path::new("/dev") && m.typ().as_deref() != Some("bind"));
    if has_dev || !cx.devices.is_empty() {
        rootfs::devices::create(&root, &cx.devices, cx.plan.has_user())?;
    }
    if has_dev {
        rootfs::devices::symlinks(&root)?;
    }
    let hooks = spec.hooks().as_ref();
    let needs_runtime_hooks = hooks.is_some_and(|h| {
        h.prestart().as_ref().is_some_and(|v| !v.is_empty())
            || h.create_runtime().as_ref().is_some_and(|v| !v.is_empty())
    });
    if needs_runtime_hooks {
        ch.send(&Msg::RunCreateRuntimeHooks)?;
        match ch.expect("runtime")? {
            Msg::HooksDone => {}
            Msg::Error(e) => return Err(Error::Hook(e)),
            other => return Err(Error::Init(format!("unexpected {other:?}"))),
        }
    }
    if let Some(h) = hooks.and_then(|h| h.create_container().as_ref()) {
        let state = hook_state(cx, "creating");
        hooks::run("createContainer", h, &state)?;
    }
    drop(root);
    if inherited {
        rootfs::chroot(&cx.mounts.rootfs)?;
    } else {
        rootfs::pivot(&cx.mounts.rootfs, cx.no_pivot)?;
    }
    if let Some(sock) = &cx.console {
        let size = p
            .console_size()
            .map(|b| (b.height() as u16, b.width() as u16));
        console::setup(sock, size)?;
    } else {
        // A session of its own, as runc's init: the caller's session
        // leader is outside the container's PID namespace, which
        // checkpointing (CRIU) refuses, and a signal to the caller's
        // process group must not reach the container.
        nix::unistd::setsid().ctx(|| "setsid")?;
        reopen_dev_null()?;
    }
    // Sysctls first: a spec that also makes /proc/sys read-only (as
    // containerd's and CRI-O's do) must still get them.
    if let Some(s) = linux.and_then(|l| l.sysctl().as_ref()) {
        sysctl::apply(s)?;
    }
    if let Some(l) = linux {
        rootfs::mask_paths(l.masked_paths().as_deref().unwrap_or(&[]))?;
        rootfs::readonly_paths(l.readonly_paths().as_deref().unwrap_or(&[]))?;
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        rootfs::readonly_root()?;
    }
    // Shared and unbindable must hold for the new `/` itself: the rootfs
    // bind was made under a private parent (pivot_root needs that).
    if propagation.intersects(MsFlags::MS_SHARED | MsFlags::MS_UNBINDABLE) && !inherited {
        nix::mount::mount(None::<&str>, "/", None::<&str>, propagation, None::<&str>)
            .ctx(|| "set rootfs propagation")?;
    }
    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        if !cx.plan.isolates(LinuxNamespaceType::Uts) {
            return Err(Error::InvalidArgument(
                "hostname needs the container's own uts namespace".into(),
            ));
        }
        nix::unistd::sethostname(h).ctx(|| format!("sethostname {h}"))?;
    }
    if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        syscall::setdomainname(d).ctx(|| format!("setdomainname {d}"))?;
    }
    if let Some(adj) = p.oom_score_adj() {
        set_oom_score_adj(ch, adj, cx.caller_oom_score_adj)?;
    }
    if let Some(pers) = linux.and_then(|l| l.personality().as_ref()) {
        crate::lsm::apply_personality(pers)?;
    }
    common_identity(ch, p, cx.caps.clone(), cx.seccomp, cx.plan.has_user())?;
    let exec = resolve_exec(p)?;
    Ok(exec)
}

/// The steps create and exec share: rlimits, identity, capabilities,
/// no_new_privs, seccomp (early when no_new_privs is off: loading it then
/// needs CAP_SYS_ADMIN, which the identity switch may drop), cwd. With
/// no_new_privs the filter is loaded last, right before exec, by
/// `exec_now` (pass it `late_filter`): every process of the container, the
/// init and every exec, carries it either way.
pub fn common_identity(
    _ch: &Channel,
    p: &Process,
    caps: CapSets,
    seccomp: Option<&Filter>,
    userns: bool,
) -> Result<()> {
    credentials::set_rlimits(p.rlimits().as_deref().unwrap_or(&[]))?;
    crate::lsm::apply_io_priority(p)?;
    crate::lsm::apply_labels(p)?;
    let nnp = p.no_new_privileges().unwrap_or(false);
    if let Some(f) = seccomp {
        if !nnp {
            f.load()?;
        }
    }
    credentials::drop_bounding(&caps)?;
    // Read through a verified procfs fd: a fake file saying "deny" would
    // make us skip setgroups and keep the host's supplementary groups.
    let setgroups_denied = userns
        && match procfs::read_to_string(Path::new("/proc/self/setgroups")) {
            Ok(s) => s.trim() == "deny",
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        };
    credentials::set_user(p, setgroups_denied)?;
    credentials::set_caps(&caps)?;
    if nnp {
        credentials::set_no_new_privs()?;
    }
    nix::unistd::chdir(p.cwd()).ctx(|| format!("chdir to cwd {}", p.cwd().display()))?;
    // The cwd must be inside the container's root: a leaked host directory
    // fd as cwd (CVE-2024-21626) shows up as "(unreachable)".
    let cwd = nix::unistd::getcwd().ctx(|| "getcwd")?;
    if !cwd.is_absolute() || cwd.starts_with("(unreachable)") {
        return Err(Error::Init(format!(
            "cwd {} is outside the container",
            cwd.display()
        )));
    }
    Ok(())
}

/// The init's PID as the host sees it (what hook states carry), read from
/// the host's /proc before pivot_root; getpid() inside says 1.
static HOST_PID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// The OCI state hooks that run inside the container receive on stdin.
fn hook_state(cx: &InitContext<'_>, status: &str) -> serde_json::Value {
    serde_json::json!({
        "ociVersion": cx.spec.version(),
        "id": cx.id,
        "status": status,
        "pid": HOST_PID.load(std::sync::atomic::Ordering::Relaxed),
        "bundle": cx.bundle,
        "annotations": cx.spec.annotations().clone().unwrap_or_default(),
    })
}

fn set_oom_score_adj(ch: &Channel, want: i32, caller: i32) -> Result<()> {
    let path = Path::new("/proc/self/oom_score_adj");
    match procfs::write(path, &want.to_string()) {
        Ok(()) => Ok(()),
        Err(Error::Io { source, .. })
            if source.raw_os_error() == Some(libc::EACCES) && want < caller =>
        {
            // No CAP_SYS_RESOURCE: clamp to the lowest value we may set, as
            // containerd's restrict_oom_score_adj does.
            ch.send(&Msg::Warning(format!(
                "oom_score_adj {want} is below the caller's {caller} and CAP_SYS_RESOURCE is missing: using {caller}"
            )))?;
            procfs::write(path, &caller.to_string())
        }
        Err(e) => Err(e),
    }
}

/// Find the program in the process's PATH (or the default PATH) now, so a
/// missing binary fails `create`, not a later `start` (runc does the same).
pub fn resolve_exec(p: &Process) -> Result<Exec> {
    let args = p.args().clone().unwrap_or_default();
    let env: Vec<String> = p.env().clone().unwrap_or_default();
    let prog = args
        .first()
        .ok_or_else(|| Error::InvalidArgument("process.args is empty".into()))?;
    let path = if prog.contains('/') {
        PathBuf::from(prog)
    } else {
        let search = env
            .iter()
            .find_map(|kv| kv.strip_prefix("PATH="))
            .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        search
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(prog))
            .find(|c| is_executable(c))
            .ok_or_else(|| {
                Error::Init(format!(
                    "exec: {prog:?}: executable file not found in $PATH"
                ))
            })?
    };
    if !is_executable(&path) {
        return Err(Error::Init(format!(
            "exec: {}: no such executable file",
            path.display()
        )));
    }
    let c =
        |s: &str| CString::new(s).map_err(|_| Error::InvalidArgument(format!("NUL byte in {s:?}")));
    Ok(Exec {
        path: CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| Error::InvalidArgument("NUL byte in program path".into()))?,
        argv: args.iter().map(|a| c(a)).collect::<Result<_>>()?,
        envp: env.iter().map(|a| c(a)).collect::<Result<_>>()?,
    })
}

fn is_executable(p: &Path) -> bool {
    nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok() && p.is_file()
}

/// Report ready, wait for `start` on the FIFO, run startContainer hooks,
/// load a no_new_privs seccomp filter, close leaked fds and exec.
fn finish(ch: &Channel, cx: &InitContext<'_>, exec: Exec) -> Error {
    let r = (|| -> Result<()> {
        ch.send(&Msg::Ready)?;
        if let Some(fifo) = &cx.fifo {
            // Still not dumpable: until exec, a process of the container's
            // uid could otherwise ptrace this unfiltered init. A process
            // may always reopen its own /proc/self/fd entries.
            let path = format!("/proc/self/fd/{}", fifo.as_raw_fd());
            let fd = nix::fcntl::open(
                path.as_str(),
                nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .ctx(|| "open the exec fifo")?;
            nix::unistd::write(&fd, b"0").ctx(|| "write the exec fifo")?;
            // Kept open (close-on-exec) until the execve: `start` reads to
            // the end of the FIFO, so it returns, and runs the poststart
            // hooks, only once the container's program is executing.
            let _ = fd.into_raw_fd();
        }
        if let Some(h) = cx
            .spec
            .hooks()
            .as_ref()
            .and_then(|h| h.start_container().as_ref())
        {
            let state = hook_state(cx, "running");
            hooks::run("startContainer", h, &state)?;
        }
        let p = process(cx.spec)?;
        exec_now(&exec, cx.preserve_fds, late_filter(p, cx.seccomp))
    })();
    match r {
        Ok(()) => Error::Init("exec returned".into()),
        Err(e) => e,
    }
}

/// The filter `common_identity` left for `exec_now` to load: the
/// container's, when the process has no_new_privs (then loading needs no
/// privilege, and the fewer syscalls run under it the better).
pub fn late_filter<'a>(p: &Process, filter: Option<&'a Filter>) -> Option<&'a Filter> {
    filter.filter(|_| p.no_new_privileges().unwrap_or(false))
}

/// Mark every fd but stdio and the preserved ones close-on-exec, load
/// `filter` if given, then exec.
pub fn exec_now(exec: &Exec, preserve_fds: u32, filter: Option<&Filter>) -> Result<()> {
    syscall::cloexec_from(3 + preserve_fds).ctx(|| "mark inherited fds close-on-exec")?;
    // The program starts with default signal actions and no blocked
    // signals, whatever this process had.
    syscall::default_signal_dispositions();
    let _ = nix::sys::signal::SigSet::all().thread_unblock();
    if let Some(f) = filter {
        f.load()?;
    }
    let e = nix::unistd::execve(&exec.path, &exec.argv, &exec.envp);
    e.map(|_| ()).ctx(|| format!("exec {:?}", exec.path))
}

/// Points each standard fd that is the caller's /dev/null at the
/// container's own /dev/null instead, as runc's init does: a file of the
/// host's mount namespace cannot be checkpointed (CRIU finds no mount of
/// the container's for it), and a null device is a null device.
fn reopen_dev_null() -> Result<()> {
    use std::os::fd::{AsRawFd, BorrowedFd};
    const NULL_RDEV: u64 = libc::makedev(1, 3);
    let mut own: Option<std::fs::File> = None;
    for fd in 0..3 {
        // SAFETY: 0..3 are open for the whole of init (the runtime hands
        // every one of them on); the borrow ends within this iteration.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let Ok(st) = nix::sys::stat::fstat(borrowed) else {
            continue;
        };
        if st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != NULL_RDEV {
            continue;
        }
        if own.is_none() {
            // A rootfs whose /dev/null cannot be opened (one with no /dev
            // mount, on a nodev filesystem, as the pod infra's may be)
            // keeps the caller's.
            let Ok(f) = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
            else {
                return Ok(());
            };
            let fst = nix::sys::stat::fstat(&f).ctx(|| "stat /dev/null")?;
            if fst.st_mode & libc::S_IFMT != libc::S_IFCHR || fst.st_rdev != NULL_RDEV {
                // An image's /dev/null that is not the null device: keep
                // the caller's rather than hand the process a file.
                return Ok(());
            }
            own = Some(f);
        }
        if let Some(f) = &own {
            // SAFETY: dup2 of an open file onto a standard fd.
            if unsafe { libc::dup2(f.as_raw_fd(), fd) } < 0 {
                return Err(nix::Error::last()).ctx(|| format!("dup2 /dev/null to fd {fd}"));
            }
        }
    }
    Ok(())
}
