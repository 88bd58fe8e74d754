//! CreateTask: the bundle's runtime, stdio, rootfs mounts and cgroup, then
//! `runtime create` (or `runtime restore` from a checkpoint's CRIU images,
//! which leaves the container created as well); plus the helpers every process-creating call shares.

use super::options::parse_options;
use super::*;

pub(super) fn read_pid(path: &Path) -> Result<i32> {
    let s = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("read pid file {}", path.display()), e))?;
    s.trim()
        .parse()
        .map_err(|_| Error::InvalidArgument(format!("pid file {} holds {s:?}", path.display())))
}

/// Reads the bundle's config.json once for everything the shim needs
/// from it; the runtime validates the rest.
fn read_bundle_spec(bundle: &Path) -> Result<serde_json::Value> {
    let path = bundle.join("config.json");
    let data = std::fs::read(&path).map_err(|e| {
        Error::InvalidArgument(format!(
            "bundle {} has no readable config.json: {e}",
            bundle.display()
        ))
    })?;
    serde_json::from_slice(&data)
        .map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))
}

/// Whether the spec leaves the container without a PID namespace of its
/// own (none requested, or one joined by path).
pub(super) fn shares_pid_namespace(spec: &serde_json::Value) -> bool {
    let own = spec
        .pointer("/linux/namespaces")
        .and_then(|n| n.as_array())
        .is_some_and(|ns| {
            ns.iter().any(|n| {
                n.get("type").and_then(|t| t.as_str()) == Some("pid")
                    && n.get("path")
                        .and_then(|p| p.as_str())
                        .is_none_or(str::is_empty)
            })
        });
    !own
}

/// The container's cgroup as its spec names it (`linux.cgroupsPath`, or
/// the runtime's default for the ID).
pub(super) fn container_cgroup(
    id: &str,
    spec: &serde_json::Value,
    systemd: bool,
) -> Option<carapace_cgroups::Manager> {
    let cgroups_path = spec.pointer("/linux/cgroupsPath").and_then(|p| p.as_str());
    match carapace_cgroups::Manager::new(cgroups_path, id, systemd) {
        Ok(m) => Some(m),
        Err(e) => {
            log::warn!("cgroup of {id}: {e}");
            None
        }
    }
}

/// Where console sockets go: a short path (sun_path is 108 bytes).
pub(super) fn console_dir() -> PathBuf {
    std::env::temp_dir()
}

/// Starts the stdio of a process around a runtime call that creates it:
/// pipes are made before the call, a pty arrives during it.
pub(super) async fn with_stdio<F, Fut>(spec: &IoSpec, call: F) -> Result<Arc<ProcessIo>>
where
    F: FnOnce(Option<PathBuf>, PassFds) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    if spec.terminal {
        let sock = ConsoleSocket::bind(&console_dir())?;
        let path = sock.path().to_path_buf();
        let recv = sock.receive();
        let created = call(Some(path), PassFds::default());
        tokio::pin!(recv);
        tokio::pin!(created);
        // The runtime connects during the call; the call may also fail
        // before it ever connects.
        let master = tokio::select! {
            r = &mut created => {
                r?;
                recv.await?
            }
            m = &mut recv => {
                let m = m?;
                created.await?;
                m
            }
        };
        stdio::start_console(spec, master)
    } else {
        let (fds, prepared) = stdio::prepare_pipes(spec)?;
        call(None, fds).await?;
        prepared.start()
    }
}

pub(super) fn mount_rootfs(
    bundle: &Path,
    mounts: &[containerd_shim_protos::api::Mount],
) -> Result<bool> {
    if mounts.is_empty() {
        return Ok(false);
    }
    let target = bundle.join("rootfs");
    std::fs::create_dir_all(&target)
        .map_err(|e| Error::io(format!("mkdir {}", target.display()), e))?;
    for m in mounts {
        containerd_shim::mount::mount_rootfs(
            Some(m.type_.as_str()).filter(|t| !t.is_empty()),
            Some(m.source.as_str()).filter(|s| !s.is_empty()),
            &m.options,
            &target,
        )
        .map_err(|e| {
            Error::io(
                format!("mount rootfs at {}", target.display()),
                std::io::Error::other(e),
            )
        })?;
    }
    Ok(true)
}

/// Unmounts `<bundle>/rootfs` if something is mounted there.
pub fn unmount_rootfs(bundle: &Path) {
    let target = bundle.join("rootfs");
    // Stacked mounts (several rootfs mounts) come off one by one.
    while nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH).is_ok() {}
}

impl TaskService {
    pub(super) async fn do_create(
        &self,
        req: api::CreateTaskRequest,
    ) -> Result<api::CreateTaskResponse> {
        check_name("container", &req.id)?;
        let bundle = PathBuf::from(&req.bundle);
        let restore_from =
            Some(PathBuf::from(&req.checkpoint)).filter(|p| !p.as_os_str().is_empty());
        if let Some(images) = &restore_from {
            if req.terminal {
                return Err(Error::InvalidArgument(
                    "a container with a terminal cannot be restored from a checkpoint".into(),
                ));
            }
            if !images.is_absolute() || !images.join("inventory.img").is_file() {
                return Err(Error::InvalidArgument(format!(
                    "checkpoint {} is not a directory of CRIU images",
                    images.display()
                )));
            }
        }
        let spec = read_bundle_spec(&bundle)?;
        let opts = parse_options(req.options.as_ref())?;
        let choice = RuntimeChoice::from_options(opts.as_ref(), &self.inner.namespace);
        let io_spec = IoSpec::checked(&req.stdin, &req.stdout, &req.stderr, req.terminal)?;
        let mut st = self.inner.state.lock().await;
        if let Some(c) = &st.container {
            return Err(Error::AlreadyExists(format!(
                "this shim already holds container {:?}",
                c.id
            )));
        }
        choice.save(&bundle)?;
        let cli = choice.cli(&bundle);
        if restore_from.is_some() && !cli.restores_created() {
            return Err(Error::Unimplemented(format!(
                "restore from a checkpoint needs carapace-runtime, not {}",
                cli.binary().display()
            )));
        }
        let rootfs_mounted = mount_rootfs(&bundle, &req.rootfs)?;
        let pid_file = bundle.join("init.pid");
        let created = with_stdio(&io_spec, |console, fds| {
            let cli = cli.clone();
            let id = req.id.clone();
            let bundle = bundle.clone();
            let pid_file = pid_file.clone();
            let restore_from = restore_from.clone();
            async move {
                match restore_from {
                    // Stopped in the created state; Start continues it.
                    Some(images) => {
                        let work = bundle.join("criu-restore");
                        cli.restore(&id, &bundle, &pid_file, &images, &work, fds)
                            .await
                    }
                    None => {
                        cli.create(&id, &bundle, &pid_file, console.as_deref(), fds)
                            .await
                    }
                }
            }
        })
        .await;
        let io = match created {
            Ok(io) => io,
            Err(e) => {
                if rootfs_mounted {
                    unmount_rootfs(&bundle);
                }
                return Err(e);
            }
        };
        let pid = read_pid(&pid_file)?;
        let cgroup = container_cgroup(&req.id, &spec, choice.systemd_cgroup);
        let mut init = Proc::new("", io_spec.clone());
        init.pid = pid;
        init.io = Some(io);
        if let Some(e) = take_early(&mut st.early_exits, pid) {
            init.set_exited(e);
        }
        st.container = Some(Container {
            id: req.id.clone(),
            bundle: bundle.clone(),
            cli,
            init,
            execs: HashMap::new(),
            rootfs_mounted,
            kill_all_on_exit: shares_pid_namespace(&spec),
            cgroup: cgroup.clone(),
        });
        drop(st);
        if let Some(mgr) = cgroup {
            self.watch_oom(&req.id, mgr);
        }
        self.publish(
            topics::TASK_CREATE_EVENT_TOPIC,
            TaskCreate {
                container_id: req.id.clone(),
                bundle: req.bundle.clone(),
                rootfs: req.rootfs.clone(),
                io: Some(TaskIO {
                    stdin: req.stdin.clone(),
                    stdout: req.stdout.clone(),
                    stderr: req.stderr.clone(),
                    terminal: req.terminal,
                    ..Default::default()
                })
                .into(),
                pid: u32::try_from(pid).unwrap_or(0),
                ..Default::default()
            },
        )
        .await;
        Ok(api::CreateTaskResponse {
            pid: u32::try_from(pid).unwrap_or(0),
            ..Default::default()
        })
    }

    /// Reports every OOM kill in the container's cgroup as TaskOOM.
    pub(super) fn watch_oom(&self, id: &str, mgr: carapace_cgroups::Manager) {
        let mut rx = match crate::oom::watch(mgr) {
            Ok(rx) => rx,
            Err(e) => {
                log::warn!("no OOM watch for {id}: {e}");
                return;
            }
        };
        let inner = self.inner.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            while rx.recv().await.is_some() {
                publish(
                    &inner,
                    topics::TASK_OOM_EVENT_TOPIC,
                    TaskOOM {
                        container_id: id.clone(),
                        ..Default::default()
                    },
                )
                .await;
            }
        });
    }
}
