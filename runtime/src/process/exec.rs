//! `exec`: run a new process inside a running container. A child joins the
//! container's cgroup and every namespace of its init, forks the process
//! (so it lands in the container's PID namespace), which takes the
//! process's identity and seccomp filter and execs. The channel is
//! close-on-exec: end-of-file means the exec succeeded.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

use nix::sys::wait::{waitpid, WaitStatus};
use oci_spec::runtime::Process;

use super::channel::{Channel, Msg};
use super::init;
use crate::credentials::CapSets;
use crate::error::{Context, Error, Result};
use crate::state::{ContainerState, Status};
use crate::{console, namespaces, seccomp};

/// Options of `exec`.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// Where to write the new process's PID.
    pub pid_file: Option<PathBuf>,
    /// Where to send the pty master when the process has a terminal.
    pub console_socket: Option<PathBuf>,
    /// Return once the process runs instead of waiting for it.
    pub detach: bool,
    /// Pass fds 3..3+N.
    pub preserve_fds: u32,
}

/// Start `p` in the container; returns its exit code when not detached, 0
/// when detached.
pub fn exec(st: &ContainerState, status: Status, p: &Process, o: &ExecOptions) -> Result<i32> {
    if !matches!(status, Status::Running | Status::Created) {
        return Err(Error::WrongState {
            id: st.id.clone(),
            status: status.to_string(),
            what: "cannot exec in it".into(),
        });
    }
    let terminal = p.terminal().unwrap_or(false);
    console::check(terminal, o.console_socket.as_deref())?;
    let plan = namespaces::plan_for_exec(st.pid)?;
    // A container in our own mount namespace was entered by chroot, which
    // no namespace join repeats: enter its root the same way.
    let root = if !plan.isolates(oci_spec::runtime::LinuxNamespaceType::Mount) {
        let path = format!("/proc/{}/root", st.pid);
        Some(std::fs::File::open(&path).ctx(|| format!("open {path}"))?)
    } else {
        None
    };
    let caps = CapSets::from_spec(p.capabilities().as_ref())?;
    let filter = st
        .config
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .map(seccomp::compile)
        .transpose()?;
    let console_fd = o
        .console_socket
        .as_deref()
        .map(console::connect)
        .transpose()?;
    let cg = st.cgroups()?;
    if !o.detach {
        block_forwarded_signals();
        // The exec'd process is our grandchild; become its reaper so we can
        // wait for it once the middle child exits.
        nix::sys::prctl::set_child_subreaper(true)
            .map_err(|e| Error::Init(format!("PR_SET_CHILD_SUBREAPER: {e}")))?;
    }
    let (parent_ch, child_ch) = Channel::pair()?;
    let userns = plan.has_user();
    let exec_child = || -> i32 {
        let r = (|| -> Result<()> {
            if let Some(dir) = &root {
                nix::unistd::fchdir(dir).ctx(|| "fchdir to the container's root")?;
                nix::unistd::chroot(".").ctx(|| "chroot to the container's root")?;
                nix::unistd::chdir("/").ctx(|| "chdir /")?;
            }
            if let Some(sock) = &console_fd {
                let size = p
                    .console_size()
                    .map(|b| (b.height() as u16, b.width() as u16));
                console::setup(sock, size)?;
            } else {
                // Its own session, as runc's (see init's).
                nix::unistd::setsid().ctx(|| "setsid")?;
            }
            init::common_identity(&child_ch, p, caps.clone(), filter.as_ref(), userns)?;
            let exec = init::resolve_exec(p)?;
            init::exec_now(&exec, o.preserve_fds, init::late_filter(p, filter.as_ref()))
        })();
        match r {
            Ok(()) => 0,
            Err(e) => super::child_fail(&child_ch, &e),
        }
    };
    let parent_fd = parent_ch.raw_fd();
    let stage1 = super::fork_child(|| {
        Channel::close_inherited(parent_fd);
        super::stage1(&child_ch, &plan, None, exec_child)
    })?;
    drop(child_ch);
    let mut pid = None;
    let r = (|| -> Result<()> {
        cg.add_process(stage1.as_raw())?;
        parent_ch.send(&Msg::Go)?;
        loop {
            match parent_ch.recv()? {
                None => break,
                Some(Msg::InitPid(p)) => pid = Some(p),
                Some(Msg::Error(e)) => return Err(Error::Init(e)),
                Some(Msg::Warning(w)) => crate::logging::warn(&w),
                Some(other) => return Err(Error::Init(format!("unexpected message {other:?}"))),
            }
        }
        Ok(())
    })();
    super::reap_stage1(parent_ch, stage1);
    if let Err(e) = r {
        if let Some(p) = pid {
            let _ = waitpid(nix::unistd::Pid::from_raw(p), None);
        }
        return Err(e);
    }
    let pid =
        pid.ok_or_else(|| Error::Init("exec child exited before starting the process".into()))?;
    if let Some(pf) = &o.pid_file {
        super::create::write_pid_file(pf, pid)?;
    }
    if o.detach {
        return Ok(0);
    }
    wait_forwarding(nix::unistd::Pid::from_raw(pid))
}

static FORWARD_TO: AtomicI32 = AtomicI32::new(0);

/// The signals a foreground `run`/`exec` passes on to its process.
const FORWARDED: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

fn forwarded_set() -> SigSet {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    set
}

/// Hold the forwarded signals until `wait_forwarding` knows whom to pass
/// them to: without this, a signal that arrives after the process started
/// but before the handlers exist would kill the runtime instead. The
/// container's process clears its mask right before exec.
pub fn block_forwarded_signals() {
    let _ = forwarded_set().thread_block();
}

extern "C" fn forward(sig: libc::c_int) {
    let pid = FORWARD_TO.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Wait for `pid` (our child via subreaping), forwarding the signals a
/// foreground `run`/`exec` receives to it (as runc does), reaping anything
/// else that is reparented to us, and turn its end into a shell-style exit
/// code.
pub fn wait_forwarding(pid: nix::unistd::Pid) -> Result<i32> {
    FORWARD_TO.store(pid.as_raw(), Ordering::Relaxed);
    let act = SigAction::new(
        SigHandler::Handler(forward),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for s in FORWARDED {
        // SAFETY: the handler only calls kill with an atomic pid.
        let _ = unsafe { sigaction(s, &act) };
    }
    // Signals that arrived since `block_forwarded_signals` are delivered
    // (and forwarded) now.
    let _ = forwarded_set().thread_unblock();
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(p, code)) if p == pid => return Ok(code),
            Ok(WaitStatus::Signaled(p, sig, _)) if p == pid => return Ok(128 + sig as i32),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::ECHILD) => return Ok(255),
            Err(e) => return Err(Error::Init(format!("wait for {pid}: {e}"))),
        }
    }
}
