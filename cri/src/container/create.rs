//! CreateContainer: check the pod and image, reserve the name, record the
//! container, mount its root filesystem from the image's layers, build its
//! OCI spec, and have a shim of its own create the process — each step
//! recorded first, everything undone on failure.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_cri::v1 as cri;

use crate::clock::now_ns;
use crate::idmap;
use crate::sandbox::{Phase as PodPhase, SandboxRecord};
use crate::shim_client::{RuntimeOptions, Stdio};

use super::registry::{Container, Containers};
use super::spec::{self, DeviceFacts, DeviceKind, ImageFacts, SandboxFacts, SpecInput};
use super::userns::{pod_userns, PodUserns};
use super::{image_volume, logs, restore, ContainerError, ContainerRecord, Phase};

/// Reads a small file of the image (`/etc/passwd`) from the mounted rootfs
/// without following a symlink out of it: only a regular file under real
/// directories is read.
fn read_image_file(rootfs: &Path, rel: &str) -> Option<String> {
    let mut p = rootfs.to_path_buf();
    for part in rel.split('/').filter(|s| !s.is_empty()) {
        p.push(part);
        let md = std::fs::symlink_metadata(&p).ok()?;
        if md.file_type().is_symlink() {
            return None;
        }
    }
    let md = std::fs::symlink_metadata(&p).ok()?;
    if !md.is_file() || md.len() > 4 << 20 {
        return None;
    }
    std::fs::read_to_string(&p).ok()
}

/// The host facts of the devices a container gets (see [`DeviceFacts`]):
/// each CRI device (every device below it when its host path is a
/// directory), then, for a privileged container, every device of the
/// host's /dev.
fn device_facts(
    config: &cri::ContainerConfig,
    privileged: bool,
) -> Result<Vec<DeviceFacts>, ContainerError> {
    let mut out = Vec::new();
    for d in config.devices.iter() {
        let host = Path::new(&d.host_path);
        let md = std::fs::metadata(host).map_err(|e| ContainerError::io("stat device", host, e))?;
        if md.is_dir() {
            // The container path names the directory; below it, the same
            // relative paths as on the host.
            let base = if d.container_path.is_empty() {
                d.host_path.clone()
            } else {
                d.container_path.clone()
            };
            for (path, facts) in devices_below(host, &[]) {
                let rel = path.strip_prefix(host).unwrap_or(&path);
                out.push(DeviceFacts {
                    container_path: Path::new(&base).join(rel).display().to_string(),
                    permissions: d.permissions.clone(),
                    ..facts
                });
            }
            continue;
        }
        let facts = device_at(host, &md).ok_or_else(|| {
            ContainerError::InvalidArgument(format!("{} is not a device", d.host_path))
        })?;
        out.push(DeviceFacts {
            container_path: d.container_path.clone(),
            permissions: d.permissions.clone(),
            ..facts
        });
    }
    if privileged {
        // As runc's HostDevices: not the per-container pseudo-filesystems
        // and links, nor the console.
        let skip = [
            "pts",
            "shm",
            "fd",
            "mqueue",
            ".lxc",
            ".lxd-mounts",
            ".udev",
            "console",
        ];
        out.extend(
            devices_below(Path::new("/dev"), &skip)
                .into_iter()
                .map(|(_, f)| f),
        );
    }
    Ok(out)
}

/// The facts of the device node at `path` (its own path in the container,
/// `rwm`), or None if it is not a device.
fn device_at(path: &Path, md: &std::fs::Metadata) -> Option<DeviceFacts> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let kind = if md.file_type().is_char_device() {
        DeviceKind::Char
    } else if md.file_type().is_block_device() {
        DeviceKind::Block
    } else {
        return None;
    };
    let rdev = md.rdev();
    Some(DeviceFacts {
        host_path: path.to_path_buf(),
        container_path: String::new(),
        permissions: "rwm".into(),
        kind,
        major: nix::sys::stat::major(rdev) as i64,
        minor: nix::sys::stat::minor(rdev) as i64,
        file_mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
    })
}

/// Every device node below `dir` (symlinks not followed; names in `skip`
/// left out at the top level), sorted by path. Nodes that vanish while
/// walking are ignored.
fn devices_below(dir: &Path, skip: &[&str]) -> Vec<(PathBuf, DeviceFacts)> {
    let mut out = Vec::new();
    let mut todo = vec![(dir.to_path_buf(), true)];
    while let Some((d, top)) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let name = e.file_name();
            if top && skip.iter().any(|s| name == *s) {
                continue;
            }
            let path = e.path();
            let Ok(md) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if md.is_dir() {
                todo.push((path, false));
            } else if let Some(f) = device_at(&path, &md) {
                out.push((path, f));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The PID of the container a TARGET pid namespace joins.
fn target_pid(cs: &Containers, config: &cri::ContainerConfig) -> Option<u32> {
    let opts = config
        .linux
        .as_ref()?
        .security_context
        .as_ref()?
        .namespace_options
        .as_ref()?;
    if opts.pid != cri::NamespaceMode::Target as i32 {
        return None;
    }
    let rec = cs.get(&opts.target_id).ok()?.record();
    (rec.phase == Phase::Running && rec.pid > 0).then_some(rec.pid)
}

/// The pod facts the spec builder needs.
fn sandbox_facts(cs: &Containers, pod: &SandboxRecord) -> SandboxFacts {
    let ns = pod.dir.join("ns");
    let own = |k: &str| {
        let p = ns.join(k);
        p.exists().then_some(p)
    };
    let hostname = crate::sandbox::run::pod_hostname(&pod.config);
    let shm = pod.dir.join("shm");
    SandboxFacts {
        id: pod.id.clone(),
        netns: pod.netns.clone(),
        ipc_ns: own("ipc"),
        uts_ns: own("uts"),
        user_ns: own("user"),
        infra_pid: pod.infra_pid,
        pod_dir: pod.dir.clone(),
        shm: own("ipc").map(|_| shm),
        cgroup_parent: pod.cgroup_parent.clone(),
        systemd_cgroup: cs.sandboxes.systemd_cgroups(),
        pod_security: pod
            .config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.clone()),
        hostname,
        cgroup_v2: matches!(
            carapace_cgroups::detect(),
            Ok(carapace_cgroups::Hierarchy::V2)
        ),
    }
}

/// Gives the volumes that ask for `selinux_relabel` the container's mount
/// label (only where SELinux is on: there is a label), refusing the
/// node's system directories.
fn relabel_volumes(
    config: &cri::ContainerConfig,
    mount_label: Option<&str>,
) -> Result<(), ContainerError> {
    let Some(label) = mount_label else {
        return Ok(());
    };
    for m in config.mounts.iter().filter(|m| m.selinux_relabel) {
        let path = Path::new(&m.host_path);
        if crate::selinux::relabel_refused(path) {
            return Err(ContainerError::InvalidArgument(format!(
                "mount {}: refusing to relabel {} for SELinux: it is a system directory",
                m.container_path, m.host_path
            )));
        }
        crate::selinux::relabel(path, label)
            .map_err(|e| ContainerError::io("relabel for SELinux", path, e))?;
    }
    Ok(())
}

/// The node's AppArmor as the spec needs it: the kernel's list of loaded
/// profiles read now (a Localhost profile may have been loaded since the
/// daemon started), and only for a request that names one (`localhost`).
fn apparmor_facts(
    node: &crate::apparmor::Node,
    localhost: bool,
) -> Result<spec::security::AppArmorFacts, ContainerError> {
    use crate::apparmor::Node;
    use spec::security::AppArmorFacts;
    Ok(match node {
        Node::Disabled => AppArmorFacts::Disabled,
        Node::Enabled { default } => AppArmorFacts::Enabled {
            default: default.clone().map_err(|e| e.to_string()),
            loaded: if localhost {
                crate::apparmor::loaded().map_err(|e| {
                    ContainerError::io(
                        "read the loaded AppArmor profiles",
                        std::path::Path::new("/sys/kernel/security/apparmor/profiles"),
                        e,
                    )
                })?
            } else {
                Default::default()
            },
        },
    })
}

/// Refuses recursive read-only mounts when the pod's runtime does not list
/// `rro` among its mount options, as containerd does: passing the option
/// on would fail late with the runtime's own words, or, with an older
/// runtime, leave submounts writable that the caller asked to protect.
async fn refuse_rro_without_support(
    pod: &SandboxRecord,
    config: &cri::ContainerConfig,
) -> Result<(), ContainerError> {
    if !config.mounts.iter().any(|m| m.recursive_read_only) {
        return Ok(());
    }
    let binary = pod.runtime_binary.clone();
    // `features` runs the runtime once per binary (then cached).
    let supported =
        tokio::task::spawn_blocking(move || crate::runtime_handler::rro_supported(&binary))
            .await
            .unwrap_or(false);
    if supported {
        return Ok(());
    }
    Err(ContainerError::FailedPrecondition(format!(
        "runtime handler {:?} ({}) does not support recursive read-only mounts",
        pod.runtime_handler,
        pod.runtime_binary.display()
    )))
}

/// Creates a container in pod `sandbox_id`; its ID.
pub async fn create(
    cs: &Arc<Containers>,
    sandbox_id: &str,
    config: cri::ContainerConfig,
) -> Result<String, ContainerError> {
    let meta = config.metadata.clone().ok_or_else(|| {
        ContainerError::InvalidArgument("container config has no metadata".into())
    })?;
    if meta.name.is_empty() {
        return Err(ContainerError::InvalidArgument(
            "container metadata name is empty".into(),
        ));
    }
    let image_name = config
        .image
        .as_ref()
        .map(|i| i.image.clone())
        .unwrap_or_default();
    if image_name.is_empty() {
        return Err(ContainerError::InvalidArgument(
            "container config names no image".into(),
        ));
    }
    // A checkpoint archive named as the image (CRI-O's convention, and
    // kubelet's for restoring): the container is restored from it.
    let restore = restore::open(cs, &image_name).await?;
    let mut config = config;
    let image_name = match &restore {
        Some(r) => {
            r.adopt_process(&mut config)?;
            r.base_image(cs)?
        }
        None => image_name,
    };
    let pod = cs
        .sandboxes
        .get(sandbox_id)
        .map_err(|_| ContainerError::NotFound(format!("pod sandbox {sandbox_id:?}")))?
        .record();
    if restore.is_some() {
        restore::check_pod(&pod, &config)?;
    }
    if pod.phase != PodPhase::Ready {
        return Err(ContainerError::FailedPrecondition(format!(
            "pod sandbox {} is not ready",
            pod.id
        )));
    }
    // Checked before anything is reserved or created: a refused log path
    // leaves nothing behind.
    let log_path = logs::confined_path(&pod.config.log_directory, &config.log_path)?;
    refuse_rro_without_support(&pod, &config).await?;
    // Until the container is inserted (and its chain IDs count as in
    // use), removing its image must not collect the layers.
    let lease = cs.images.lease().await;
    let image = cs
        .images
        .resolve(&image_name)?
        .ok_or_else(|| ContainerError::NotFound(format!("image {image_name:?}")))?;
    let image_volumes = image_volume::resolve(cs, &config)?;
    let id = crate::ids::new_id()
        .map_err(|e| ContainerError::io("read", crate::ids::RANDOM_SOURCE, e))?;
    let name = ContainerRecord::name_key(&config, &pod.config);
    cs.reserve_name(&name, &id)?;
    let stop_signal = image.runtime_config()["StopSignal"]
        .as_str()
        .unwrap_or("SIGTERM")
        .to_string();
    let mut rec = ContainerRecord {
        id: id.clone(),
        sandbox_id: pod.id.clone(),
        image_id: image.id.clone(),
        image_name,
        chain_ids: image
            .layers
            .iter()
            .map(|l| l.chain_id.clone())
            .chain(restore.iter().flat_map(|r| r.chain_ids.iter().cloned()))
            .collect(),
        phase: Phase::Creating,
        created_at: now_ns(),
        started_at: 0,
        finished_at: 0,
        exit_code: 0,
        reason: String::new(),
        message: String::new(),
        oom_killed: false,
        pid: 0,
        bundle: cs.state_dir.join(&id),
        data: cs.data_dir.join(&id),
        log_path,
        shim_address: String::new(),
        runtime_binary: pod.runtime_binary.clone(),
        runtime_root: pod.runtime_root.clone(),
        shim: pod.shim.clone(),
        cgroups_path: String::new(),
        stop_signal,
        uid: 0,
        gid: 0,
        additional_gids: Vec::new(),
        image_volumes: image_volumes
            .iter()
            .map(image_volume::Resolved::volume)
            .collect(),
        config,
    };
    let c = match cs.create(rec.clone()) {
        Ok(c) => c,
        Err(e) => {
            cs.release_name(&name, &id);
            return Err(e);
        }
    };
    drop(lease);
    if let Err(e) = cs.images.collect_owed(&cs.chain_ids_in_use()).await {
        tracing::warn!(error = %e, "deferred image garbage collection");
    }
    let op = c.op.lock().await;
    // Until it is Created, only this call (holding the op lock) writes the
    // record: its copy `rec` is the record.
    let built = build(
        cs,
        &c,
        &pod,
        &image,
        &image_volumes,
        restore.as_ref(),
        &mut rec,
    )
    .await;
    match built {
        Ok(()) => {
            cs.update(&c, |r| *r = rec)?;
            drop(op);
            tracing::info!(container = %id, pod = %pod.id, name = %name, "container created");
            Ok(id)
        }
        Err(e) => {
            tracing::warn!(container = %id, error = %e, "container creation failed; cleaning up");
            rec.phase = Phase::Removing;
            let _ = cs.update(&c, |r| *r = rec.clone());
            if let Err(te) = super::remove::teardown(cs, &rec).await {
                tracing::error!(container = %id, error = %te, "cleanup of failed container");
                return Err(e);
            }
            // teardown deleted the record (memory and disk) and its name.
            drop(op);
            Err(e)
        }
    }
}

/// The steps after the record exists.
async fn build(
    cs: &Containers,
    c: &Container,
    pod: &SandboxRecord,
    image: &crate::image::ImageRecord,
    image_volumes: &[image_volume::Resolved],
    restore: Option<&restore::Restore>,
    rec: &mut ContainerRecord,
) -> Result<(), ContainerError> {
    let rootfs_dir = rec.rootfs();
    // Root only (crate::private): the bundle holds the spec and the
    // rootfs; a user-namespaced pod's root may traverse to its rootfs.
    let pod_root_gid = pod_userns(pod)
        .as_ref()
        .map(crate::idmap::root_ids)
        .map(|(_, gid)| gid);
    crate::private::object_dir(&rec.bundle, pod_root_gid)
        .map_err(|e| ContainerError::io("create", &rec.bundle, e))?;
    crate::private::dir(&rec.data, crate::private::DIR_MODE)
        .map_err(|e| ContainerError::io("create", &rec.data, e))?;
    let mut lowers: Vec<PathBuf> = image
        .layers
        .iter()
        .rev()
        .map(|l| cs.images.layer_dir(&l.chain_id))
        .collect::<Result<_, _>>()?;
    // A restore: CRIU's images out of the archive, and the checkpointed
    // container's rootfs changes as the topmost lower layer.
    let restore_images = match restore {
        Some(r) => {
            let (images, diff) = r.unpack(&rec.data, cs.images.layer_limits()).await?;
            lowers.insert(0, diff);
            Some(images)
        }
        None => None,
    };
    let sandbox = sandbox_facts(cs, pod);
    // A pod in its own user namespace: the layers are stacked through
    // idmapped views (removed once the overlay holds them).
    let userns = match (&sandbox.user_ns, pod_userns(pod)) {
        (Some(path), Some(u)) => Some(PodUserns::open(path, u)?),
        (None, None) => None,
        _ => {
            return Err(ContainerError::FailedPrecondition(format!(
                "pod sandbox {} has lost its user namespace",
                pod.id
            )))
        }
    };
    let upper = rec.data.join("upper");
    let work = rec.data.join("work");
    let node = &cs.sandboxes.effects.node;
    // The mount label the spec will carry (the same computation), for
    // the rootfs's `context=`.
    let mount_label = spec::security::selinux_labels(
        cs.sandboxes.daemon.selinux.as_ref(),
        &sandbox,
        rec.config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref()),
    )
    .map(|(_, mount)| mount);
    let context = mount_label.as_deref();
    match &userns {
        Some(u) => {
            let views = rec.data.join("idmap");
            let mounted = match u.lowers(&lowers, &views).and_then(|l| {
                u.prepare_upper(&upper)?;
                Ok(l)
            }) {
                Ok(l) => node
                    .mount_rootfs(&l, &upper, &work, &rootfs_dir, context)
                    .await
                    .map_err(ContainerError::from),
                Err(e) => Err(e),
            };
            idmap::detach_all(&views)?;
            mounted?;
        }
        None => {
            node.mount_rootfs(&lowers, &upper, &work, &rootfs_dir, context)
                .await?
        }
    }
    let image_mounts = image_volume::mount(cs, rec, image_volumes, userns.as_ref()).await?;
    let facts = ImageFacts {
        config: image.runtime_config().clone(),
        passwd: read_image_file(&rootfs_dir, "etc/passwd"),
        group: read_image_file(&rootfs_dir, "etc/group"),
        image_name: rec.image_name.clone(),
    };
    let seccomp_localhost = match spec::seccomp_localhost_ref(&rec.config)? {
        Some(p) => Some(
            std::fs::read_to_string(&p)
                .map_err(|e| ContainerError::io("read seccomp profile", &p, e))?,
        ),
        None => None,
    };
    // Bind-mount sources that do not exist yet are made as directories,
    // as containerd does (kubelet's emptyDir paths, for one).
    for m in &rec.config.mounts {
        if !m.host_path.is_empty() && !Path::new(&m.host_path).exists() {
            std::fs::create_dir_all(&m.host_path)
                .map_err(|e| ContainerError::io("create mount source", &m.host_path, e))?;
        }
    }
    // CDI devices (CRI CDI_devices and cdi.k8s.io/* annotations): their
    // nodes join the container's devices, the rest edits the built spec.
    let cdi = cs
        .sandboxes
        .daemon
        .cdi
        .resolve(&crate::cdi::requested(&rec.config))
        .map_err(|e| ContainerError::InvalidArgument(e.to_string()))?;
    let mut devices = device_facts(
        &rec.config,
        rec.config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .is_some_and(|sc| sc.privileged),
    )?;
    devices.extend(
        cdi.device_facts()
            .map_err(|e| ContainerError::InvalidArgument(e.to_string()))?
            .into_iter()
            .map(|n| DeviceFacts {
                host_path: n.host_path,
                container_path: n.container_path,
                permissions: n.permissions,
                kind: if n.block {
                    DeviceKind::Block
                } else {
                    DeviceKind::Char
                },
                major: n.major,
                minor: n.minor,
                file_mode: n.file_mode,
                uid: n.uid,
                gid: n.gid,
            }),
    );
    let input = SpecInput {
        id: &rec.id,
        config: &rec.config,
        sandbox: &sandbox,
        image: &facts,
        rootfs: rootfs_dir.clone(),
        volumes_dir: rec.data.join("volumes"),
        image_mounts,
        target_pid: target_pid(cs, &rec.config),
        devices,
        seccomp_localhost,
        host_caps: spec::security::host_capabilities(),
        apparmor: apparmor_facts(
            &cs.sandboxes.daemon.apparmor,
            spec::security::asks_localhost_apparmor(
                rec.config
                    .linux
                    .as_ref()
                    .and_then(|l| l.security_context.as_ref()),
            ),
        )?,
        selinux: cs.sandboxes.daemon.selinux.clone(),
    };
    let mut built = spec::build(&input)?;
    cdi.apply(&mut built.spec);
    for g in &cdi.additional_gids {
        if *g != 0 && !built.user.additional_gids.contains(g) {
            built.user.additional_gids.push(*g);
        }
    }
    relabel_volumes(
        &rec.config,
        built
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.mount_label().as_deref()),
    )?;
    if let Some(u) = &userns {
        u.bind_idmapped(&mut built.spec, &rec.bundle.join("idmap"))?;
    }
    for (dir, _) in &built.volumes {
        std::fs::create_dir_all(dir).map_err(|e| ContainerError::io("create volume", dir, e))?;
    }
    rec.uid = built.user.uid;
    rec.gid = built.user.gid;
    rec.additional_gids = built.user.additional_gids.clone();
    rec.stop_signal = built.stop_signal.clone();
    rec.cgroups_path = built
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().clone())
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let config_json = rec.bundle.join("config.json");
    let text = serde_json::to_vec(&built.spec)
        .map_err(|e| ContainerError::InvalidArgument(format!("spec: {e}")))?;
    crate::private::write_file(&config_json, &text)
        .map_err(|e| ContainerError::io("write", &config_json, e))?;
    if !rec.log_path.as_os_str().is_empty() {
        logs::make_dirs(Path::new(&pod.config.log_directory), &rec.log_path)?;
    }
    let tasks = &cs.sandboxes.effects.tasks;
    let address = tasks
        .launch(&cs.sandboxes.launch(&rec.id, &rec.bundle, &rec.shim))
        .await?;
    rec.shim_address = address.clone();
    // Recorded before the shim is used: a crash from here on finds the
    // shim (and what the build made so far) to tear down.
    cs.update(c, |r| *r = rec.clone())?;
    // carapace-shim writes the CRI log itself and serves attach; a shim
    // v2 copies stdio into FIFOs the daemon reads.
    let fifos = if rec.shim.is_v2() {
        Some(super::fifo_io::prepare(
            &rec.bundle,
            rec.config.tty,
            rec.config.stdin,
        )?)
    } else {
        None
    };
    let stdio = match &fifos {
        Some(f) => f.stdio.clone(),
        None => {
            let log = if rec.log_path.as_os_str().is_empty() {
                String::new()
            } else {
                format!("crilog://{}", rec.log_path.display())
            };
            Stdio {
                stdin: if rec.config.stdin {
                    "attach:".into()
                } else {
                    String::new()
                },
                stdout: log.clone(),
                stderr: if rec.config.tty { String::new() } else { log },
                terminal: rec.config.tty,
            }
        }
    };
    rec.pid = tasks
        .create(
            &address,
            &rec.id,
            &rec.bundle,
            &stdio,
            &RuntimeOptions {
                binary: rec.runtime_binary.clone(),
                root: rec.runtime_root.clone(),
                systemd_cgroup: cs.sandboxes.systemd_cgroups(),
                restore_from: restore_images,
                runc_options: rec.shim.takes_runc_options(),
            },
        )
        .await?;
    if let Some(f) = fifos {
        cs.fifo_io.insert(
            &rec.id,
            super::fifo_io::Pump::start(&rec.id, f, &rec.log_path),
        );
    }
    rec.phase = Phase::Created;
    Ok(())
}
