//! The fork choreography that turns a spec into a running process:
//! `create` (the parent side, in `create`), the container init (`init`),
//! and `exec` into a running container (`exec`), talking over `channel`.
//!
//! Process tree while creating: the runtime CLI forks a child that joins
//! and creates namespaces, which forks the container init (so the init is
//! PID 1 of a new PID namespace) and exits at once. The init therefore is
//! nobody's child once the CLI exits: it is reaped by the nearest
//! subreaper, the caller's shim, as runc's is.

pub mod channel;
pub mod create;
pub mod exec;
pub mod init;

use std::path::Path;

use nix::sched::CloneFlags;
use nix::unistd::{ForkResult, Pid};
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType};

use crate::error::{Context, Error, Result};
use crate::namespaces::Plan;
use channel::{Channel, Msg};

/// Fork, running `child` in the child; it never returns there.
pub fn fork_child(child: impl FnOnce() -> i32) -> Result<Pid> {
    // SAFETY: the runtime CLI is single-threaded (no tokio, no threads
    // spawned before this point), so the child may allocate and run Rust
    // code freely until it execs or exits.
    match unsafe { nix::unistd::fork() }.ctx(|| "fork")? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => {
            let code = child();
            // SAFETY: leave without running the parent's atexit handlers or
            // flushing its stdio buffers a second time.
            unsafe { libc::_exit(code) }
        }
    }
}

/// The namespace-joining child: wait for the go-ahead, enter every
/// namespace of the plan, fork the process that lives in them, report its
/// host PID and exit. Returns the exit code for `_exit`.
pub fn stage1(
    ch: &Channel,
    plan: &Plan,
    time_offsets: Option<&str>,
    then: impl FnOnce() -> i32,
) -> i32 {
    let r = (|| -> Result<i32> {
        match ch.expect("runtime")? {
            Msg::Go => {}
            other => return Err(Error::Init(format!("unexpected {other:?}"))),
        }
        // Keep /proc/PID of our setup processes out of the container's reach.
        nix::sys::prctl::set_dumpable(false).ctx(|| "PR_SET_DUMPABLE")?;
        plan.join(true)?;
        if plan.has_user() && !plan.new.contains(CloneFlags::CLONE_NEWUSER) {
            // Joined a user namespace (a pod's): become its root, as runc
            // does, so the mount points we make in it (tmpfs /dev, owned
            // by that namespace) get an owner it can map.
            nix::unistd::setresgid(0.into(), 0.into(), 0.into())
                .ctx(|| "become root (gid 0) of the joined user namespace")?;
            nix::unistd::setresuid(0.into(), 0.into(), 0.into())
                .ctx(|| "become root (uid 0) of the joined user namespace")?;
        }
        if plan.new.contains(CloneFlags::CLONE_NEWUSER) {
            nix::sched::unshare(CloneFlags::CLONE_NEWUSER).ctx(|| "unshare user namespace")?;
            ch.send(&Msg::UserNsReady)?;
            match ch.expect("runtime")? {
                Msg::UserNsMapped => {}
                Msg::Error(e) => return Err(Error::Init(e)),
                other => return Err(Error::Init(format!("unexpected {other:?}"))),
            }
            // Become root of the new namespace (if mapped) so files we create
            // are owned by the container's root.
            let _ = nix::unistd::setresgid(0.into(), 0.into(), 0.into());
            let _ = nix::unistd::setresuid(0.into(), 0.into(), 0.into());
        }
        plan.join(false)?;
        let rest = plan.new - CloneFlags::CLONE_NEWUSER;
        if !rest.is_empty() {
            nix::sched::unshare(rest).ctx(|| format!("unshare namespaces {rest:?}"))?;
        }
        if let Some(offsets) = time_offsets {
            crate::procfs::write(Path::new("/proc/self/timens_offsets"), offsets)?;
        }
        // The init shares our end of the channel. It must not speak
        // (`Ready`, hook requests) before the parent knows its PID, or the
        // parent would see `Ready` first: hold it on a pipe until
        // `InitPid` is sent.
        let (hold_r, hold_w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx(|| "pipe for the init")?;
        let hold_w_raw = std::os::fd::AsRawFd::as_raw_fd(&hold_w);
        let pid = fork_child(|| {
            // The child's copy of the write end: closed so that stage1's
            // death reads as end-of-file here.
            let _ = nix::unistd::close(hold_w_raw);
            let mut b = [0u8; 1];
            // Only the byte means "go": end-of-file means stage1 died
            // before reporting us, and the parent reports that failure.
            loop {
                match nix::unistd::read(&hold_r, &mut b) {
                    Ok(1) => break,
                    Err(nix::errno::Errno::EINTR) => continue,
                    _ => return 1,
                }
            }
            then()
        })?;
        drop(hold_r);
        let sent = ch.send(&Msg::InitPid(pid.as_raw()));
        let _ = nix::unistd::write(&hold_w, &[1]);
        drop(hold_w);
        sent?;
        Ok(0)
    })();
    match r {
        Ok(c) => c,
        Err(e) => {
            let _ = ch.send(&Msg::Error(e.to_string()));
            1
        }
    }
}

/// Close the parent's end of the channel, then reap stage 1. In that
/// order: a stage 1 still waiting for a message (the parent failed before
/// sending it) reads end-of-file and exits, so the wait cannot hang.
pub fn reap_stage1(ch: Channel, stage1: Pid) {
    drop(ch);
    let _ = nix::sys::wait::waitpid(stage1, None);
}

/// Write the uid/gid maps of a child's new user namespace.
pub fn write_id_maps(pid: Pid, uids: &[LinuxIdMapping], gids: &[LinuxIdMapping]) -> Result<()> {
    let fmt = |m: &[LinuxIdMapping]| {
        m.iter()
            .map(|x| format!("{} {} {}\n", x.container_id(), x.host_id(), x.size()))
            .collect::<String>()
    };
    crate::procfs::write(Path::new(&format!("/proc/{pid}/uid_map")), &fmt(uids))?;
    crate::procfs::write(Path::new(&format!("/proc/{pid}/gid_map")), &fmt(gids))?;
    Ok(())
}

/// Time namespace offsets in the format of /proc/PID/timens_offsets.
pub fn time_offsets(spec: &oci_spec::runtime::Spec, plan: &Plan) -> Option<String> {
    if !plan
        .new
        .contains(crate::namespaces::flag(LinuxNamespaceType::Time))
    {
        return None;
    }
    let offs = spec.linux().as_ref()?.time_offsets().as_ref()?;
    let mut s = String::new();
    for (clock, o) in offs {
        s.push_str(&format!(
            "{clock} {} {}\n",
            o.secs().unwrap_or(0),
            o.nanosecs().unwrap_or(0)
        ));
    }
    Some(s)
}

/// Report an error from inside a child and return the exit code.
pub fn child_fail(ch: &Channel, e: &Error) -> i32 {
    let _ = ch.send(&Msg::Error(e.to_string()));
    1
}
