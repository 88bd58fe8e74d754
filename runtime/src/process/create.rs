//! `create`, parent side: reserve the ID, plan namespaces, compile seccomp,
//! set up the cgroup with its limits, fork, write id maps, run the
//! createRuntime hooks when the init asks, and record the state once the
//! init is ready. Any failure undoes everything it did.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::unistd::Pid;

use super::channel::{Channel, Msg};
use super::init::{self, InitContext};
use crate::credentials::CapSets;
use crate::error::{Context, Error, Result};
use crate::rootfs::{devices, MountContext};
use crate::state::{self, ContainerState, StateRoot, EXEC_FIFO};
use crate::{console, hooks, logging, namespaces, seccomp, spec as specfile, syscall, sysctl};

/// Options of `create` (and the create half of `run`).
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// Container ID.
    pub id: String,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// Where to write the init's PID.
    pub pid_file: Option<PathBuf>,
    /// Where to send the pty master when the process has a terminal.
    pub console_socket: Option<PathBuf>,
    /// Use MS_MOVE + chroot instead of pivot_root.
    pub no_pivot: bool,
    /// Pass fds 3..3+N to the process.
    pub preserve_fds: u32,
    /// Use the systemd cgroup driver.
    pub systemd_cgroup: bool,
}

/// Create the container; on success its init waits for `start`.
pub fn create(root: &StateRoot, o: &CreateOptions) -> Result<ContainerState> {
    let bundle = o
        .bundle
        .canonicalize()
        .ctx(|| format!("bundle {}", o.bundle.display()))?;
    let spec = specfile::load(&bundle)?;
    let rootfs = specfile::rootfs(&bundle, &spec)?;
    state::validate_id(&o.id)?;
    let dir = root.reserve(&o.id)?;
    let mut cleanup = Cleanup {
        root,
        id: &o.id,
        cgroup: None,
        pid: None,
        unmount: state::inherits_mount_namespace(&spec).then(|| rootfs.clone()),
        armed: true,
    };
    let r = create_in(root, o, &bundle, spec, rootfs, &dir, &mut cleanup);
    if r.is_ok() {
        cleanup.armed = false;
    }
    r
}

/// Undo a half-done create: kill the init, remove its cgroup and state.
struct Cleanup<'a> {
    root: &'a StateRoot,
    id: &'a str,
    cgroup: Option<carapace_cgroups::Manager>,
    pid: Option<i32>,
    /// The rootfs whose mounts the init made in the runtime's namespace.
    unmount: Option<PathBuf>,
    armed: bool,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(pid) = self.pid {
            if let Ok(fd) = syscall::pidfd_open(pid) {
                let _ = syscall::pidfd_send_signal(&fd, libc::SIGKILL);
                state::wait_exit(pid, std::time::Duration::from_secs(5));
            }
        }
        if let Some(cg) = &self.cgroup {
            let _ = cg.kill_all(libc::SIGKILL);
            if let Err(e) = cg.destroy() {
                logging::warn(&format!(
                    "remove cgroup of failed container {}: {e}",
                    self.id
                ));
            }
        }
        if let Some(rootfs) = &self.unmount {
            if let Err(e) = crate::rootfs::unmount_below(rootfs) {
                logging::warn(&format!(
                    "unmount the rootfs of failed container {}: {e}",
                    self.id
                ));
            }
        }
        let _ = self.root.remove(self.id);
    }
}

fn create_in(
    root: &StateRoot,
    o: &CreateOptions,
    bundle: &Path,
    spec: oci_spec::runtime::Spec,
    rootfs: PathBuf,
    dir: &Path,
    cleanup: &mut Cleanup<'_>,
) -> Result<ContainerState> {
    let linux = spec.linux().clone().unwrap_or_default();
    let process = spec
        .process()
        .clone()
        .ok_or_else(|| Error::InvalidArgument("process is missing".into()))?;
    crate::lsm::check_supported(&spec)?;
    let terminal = process.terminal().unwrap_or(false);
    console::check(terminal, o.console_socket.as_deref())?;
    let plan = namespaces::plan_for_spec(linux.namespaces().as_deref().unwrap_or(&[]))?;
    if let Some(s) = linux.sysctl() {
        sysctl::validate(s, &plan)?;
    }
    if plan.new.contains(nix::sched::CloneFlags::CLONE_NEWUSER)
        && (linux.uid_mappings().as_ref().is_none_or(|m| m.is_empty())
            || linux.gid_mappings().as_ref().is_none_or(|m| m.is_empty()))
    {
        return Err(Error::InvalidArgument(
            "a new user namespace needs linux.uidMappings and linux.gidMappings".into(),
        ));
    }
    for m in spec.mounts().iter().flatten() {
        crate::rootfs::validate_mount(m)?;
    }
    let caps = CapSets::from_spec(process.capabilities().as_ref())?;
    let filter = linux.seccomp().as_ref().map(seccomp::compile).transpose()?;
    let devs = devices::from_spec(linux.devices().as_deref().unwrap_or(&[]))?;

    // cgroup: resolved now, made with its limits once the first process
    // exists (a systemd scope cannot exist without one) and before that
    // process goes on.
    let cg = carapace_cgroups::Manager::new(
        linux.cgroups_path().as_ref().and_then(|p| p.to_str()),
        &o.id,
        o.systemd_cgroup,
    )?;
    cleanup.cgroup = Some(cg.clone());
    let mut resources = linux.resources().clone().unwrap_or_default();
    let spec_rules = resources.devices().clone().unwrap_or_default();
    resources.set_devices(Some(devices::cgroup_rules(&spec_rules)));

    let fifo_path = dir.join(EXEC_FIFO);
    nix::unistd::mkfifo(&fifo_path, nix::sys::stat::Mode::from_bits_truncate(0o622))
        .ctx(|| format!("mkfifo {}", fifo_path.display()))?;
    // mkfifo applies the umask; the init may be any user (or a user
    // namespace's root), so make it writable for all as runc does.
    std::fs::set_permissions(
        &fifo_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o622),
    )
    .ctx(|| format!("chmod {}", fifo_path.display()))?;
    let fifo: OwnedFd = nix::fcntl::open(
        &fifo_path,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(|| format!("open {}", fifo_path.display()))?;
    let console_fd = o
        .console_socket
        .as_deref()
        .map(console::connect)
        .transpose()?;

    let mut st = ContainerState {
        id: o.id.clone(),
        pid: 0,
        pid_start_time: 0,
        bundle: bundle.to_path_buf(),
        rootfs: rootfs.clone(),
        created: state::now_rfc3339(),
        cgroup_path: Some(cg.relative_path().to_string()),
        systemd_cgroup: o.systemd_cgroup,
        config: spec.clone(),
    };
    root.save(&st)?;

    let caller_oom = std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let offsets = super::time_offsets(&spec, &plan);
    let (parent_ch, child_ch) = Channel::pair()?;
    let cx = InitContext {
        id: &o.id,
        bundle,
        spec: &spec,
        plan: &plan,
        mounts: MountContext {
            rootfs: rootfs.clone(),
            userns: plan.has_user(),
            cgroupns: plan.isolates(oci_spec::runtime::LinuxNamespaceType::Cgroup),
            cgroup_v2: cg.hierarchy() == carapace_cgroups::Hierarchy::V2,
            cgroup_path: cg.relative_path().to_string(),
            mount_label: linux
                .mount_label()
                .clone()
                .filter(|l| !l.is_empty() && crate::lsm::selinux_enabled()),
        },
        devices: devs,
        fifo: Some(fifo),
        console: console_fd,
        seccomp: filter.as_ref(),
        caps,
        no_pivot: o.no_pivot,
        preserve_fds: o.preserve_fds,
        caller_oom_score_adj: caller_oom,
    };
    let parent_fd = parent_ch.raw_fd();
    let stage1 = super::fork_child(|| {
        Channel::close_inherited(parent_fd);
        super::stage1(&child_ch, &plan, offsets.as_deref(), || {
            init::run(&child_ch, cx)
        })
    })?;
    drop(child_ch);
    let r = drive(
        root, &mut st, &parent_ch, stage1, &linux, &resources, cleanup,
    );
    super::reap_stage1(parent_ch, stage1);
    r?;
    if let Some(pf) = &o.pid_file {
        write_pid_file(pf, st.pid)?;
    }
    Ok(st)
}

fn drive(
    root: &StateRoot,
    st: &mut ContainerState,
    ch: &Channel,
    stage1: Pid,
    linux: &oci_spec::runtime::Linux,
    resources: &oci_spec::runtime::LinuxResources,
    cleanup: &mut Cleanup<'_>,
) -> Result<()> {
    if let Some(cg) = &cleanup.cgroup {
        cg.start(stage1.as_raw(), resources)?;
    }
    ch.send(&Msg::Go)?;
    loop {
        match ch.expect("container init")? {
            Msg::UserNsReady => {
                let r = super::write_id_maps(
                    stage1,
                    linux.uid_mappings().as_deref().unwrap_or(&[]),
                    linux.gid_mappings().as_deref().unwrap_or(&[]),
                );
                match r {
                    Ok(()) => ch.send(&Msg::UserNsMapped)?,
                    Err(e) => {
                        let _ = ch.send(&Msg::Error(e.to_string()));
                        return Err(e);
                    }
                }
            }
            Msg::InitPid(pid) => {
                cleanup.pid = Some(pid);
                st.pid = pid;
                st.pid_start_time = syscall::process_start_time(pid).unwrap_or(0);
            }
            Msg::RunCreateRuntimeHooks => {
                root.save(st)?;
                let hs = st.config.hooks().clone().unwrap_or_default();
                let state = st.hook_state(state::Status::Creating);
                let r = hooks::run("prestart", hs.prestart().as_deref().unwrap_or(&[]), &state)
                    .and_then(|_| {
                        hooks::run(
                            "createRuntime",
                            hs.create_runtime().as_deref().unwrap_or(&[]),
                            &state,
                        )
                    });
                match r {
                    Ok(()) => ch.send(&Msg::HooksDone)?,
                    Err(e) => {
                        let _ = ch.send(&Msg::Error(e.to_string()));
                        return Err(e);
                    }
                }
            }
            Msg::Warning(w) => logging::warn(&w),
            Msg::Ready => break,
            Msg::Error(e) => return Err(Error::Init(e)),
            other => return Err(Error::Init(format!("unexpected message {other:?}"))),
        }
    }
    if st.pid == 0 {
        return Err(Error::Init("init reported ready without a pid".into()));
    }
    root.save(st)
}

/// Write the PID file atomically, as runc does (temp file + rename).
pub fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let tmp = path.with_extension("carapace-tmp");
    std::fs::write(&tmp, pid.to_string()).ctx(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).ctx(|| format!("rename to {}", path.display()))
}
