//! RunPodSandbox: validate, reserve the name, record the pod, then make
//! its namespaces, shm, cgroup, network, files and infra process — each
//! step recorded first, and everything undone if any step fails.

use std::path::PathBuf;
use std::sync::Arc;

use k8s_cri::v1 as cri;

use crate::clock::now_ns;
use crate::namespaces::{Kind, Setup};
use crate::network;
use crate::runtime_handler::find_binary;
use crate::shim_client::ShimKind;

use super::record::{host_network, ns_options};
use super::registry::{Sandbox, Sandboxes};
use super::spec::{InfraSpec, OwnNamespaces};
use super::{
    cgroup, files, infra, remove, resources, stop, sysctl, Phase, SandboxError, SandboxRecord,
};

/// The pod's hostname: the config's, or (as containerd does when kubelet
/// sends none) the node's own.
pub fn pod_hostname(c: &cri::PodSandboxConfig) -> String {
    if !c.hostname.is_empty() {
        return c.hostname.clone();
    }
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Checks what kubelet must send: metadata with name, namespace and uid.
fn validate(c: &cri::PodSandboxConfig) -> Result<(), SandboxError> {
    let Some(m) = &c.metadata else {
        return Err(SandboxError::InvalidArgument(
            "pod sandbox config has no metadata".into(),
        ));
    };
    for (what, v) in [
        ("name", &m.name),
        ("namespace", &m.namespace),
        ("uid", &m.uid),
    ] {
        if v.is_empty() {
            return Err(SandboxError::InvalidArgument(format!(
                "pod sandbox metadata {what} is empty"
            )));
        }
    }
    Ok(())
}

/// Runs a new pod; its ID.
pub async fn run(
    s: &Arc<Sandboxes>,
    config: cri::PodSandboxConfig,
    runtime_handler: &str,
) -> Result<String, SandboxError> {
    validate(&config)?;
    // Pod limits are checked before anything is made.
    resources::of_config(&config)?;
    let cfg = &s.daemon.config;
    let handler_name = if runtime_handler.is_empty() {
        cfg.default_runtime_handler.clone()
    } else {
        runtime_handler.to_string()
    };
    let handler = cfg.runtime_handlers.get(&handler_name).ok_or_else(|| {
        SandboxError::InvalidArgument(format!(
            "no runtime handler {handler_name:?} is configured (have: {})",
            cfg.runtime_handlers
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let shim = match handler
        .shim_v2_binary()
        .map_err(SandboxError::FailedPrecondition)?
    {
        None => ShimKind::default(),
        Some(name) => ShimKind {
            binary: find_binary(&name).ok_or_else(|| {
                SandboxError::FailedPrecondition(format!(
                    "shim binary {} of handler {handler_name:?} not found",
                    name.display()
                ))
            })?,
            runc_options: handler.takes_runc_options(),
        },
    };
    // A runc shim with no `path` drives runc, as containerd's does.
    let runtime_path = if shim.is_v2() && handler.path.as_os_str().is_empty() {
        PathBuf::from(if shim.runc_options { "runc" } else { "" })
    } else {
        handler.path.clone()
    };
    let runtime_binary = if runtime_path.as_os_str().is_empty() {
        // A shim with its own runtime (Kata, gVisor): nothing to run here.
        runtime_path
    } else {
        find_binary(&runtime_path).ok_or_else(|| {
            SandboxError::FailedPrecondition(format!(
                "runtime binary {} of handler {handler_name:?} not found",
                runtime_path.display()
            ))
        })?
    };
    let opts = ns_options(&config);
    let host_net = host_network(&opts);
    let userns = crate::idmap::requested_userns(opts.userns_options.as_ref())
        .map_err(|e| SandboxError::InvalidArgument(format!("namespaces: {e}")))?
        .cloned();
    if userns.is_some() && shim.is_v2() {
        return Err(SandboxError::FailedPrecondition(format!(
            "runtime handler {handler_name:?} runs a shim v2: pods in a user namespace of \
             their own need a carapace-shim handler"
        )));
    }
    if userns.is_some()
        && (host_net
            || opts.ipc == cri::NamespaceMode::Node as i32
            || opts.pid == cri::NamespaceMode::Node as i32)
    {
        // As Kubernetes' own validation: the node's namespaces belong to
        // the node's user namespace.
        return Err(SandboxError::InvalidArgument(
            "a pod in its own user namespace cannot share the node's network, IPC or PID \
             namespace"
                .into(),
        ));
    }
    let mut own = Vec::new();
    if !host_net {
        own.extend([Kind::Net, Kind::Uts]);
    }
    if opts.ipc != cri::NamespaceMode::Node as i32 {
        own.push(Kind::Ipc);
    }
    let sysctls = config
        .linux
        .as_ref()
        .map(|l| sysctl::classify(&l.sysctls, &own))
        .transpose()
        .map_err(|e| SandboxError::InvalidArgument(e.to_string()))?
        .unwrap_or_default();
    let net_conf = if host_net {
        None
    } else {
        Some(network::find_conf(&cfg.cni.conf_dir).map_err(|e| {
            SandboxError::FailedPrecondition(format!("cni plugin not initialized: {e}"))
        })?)
    };

    let id =
        crate::ids::new_id().map_err(|e| SandboxError::io("read", crate::ids::RANDOM_SOURCE, e))?;
    let name = SandboxRecord::name_key(&config);
    s.reserve_name(&name, &id)?;
    let dir = s.paths.pods.join(&id);
    let pod_cgroup = cgroup::pod_path(
        config
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.as_str())
            .unwrap_or(""),
        &id,
        s.systemd_cgroups(),
    );
    let systemd = s.systemd_cgroups();
    let mut rec = SandboxRecord {
        id: id.clone(),
        runtime_handler: handler_name,
        runtime_binary,
        runtime_root: handler.root.clone(),
        shim,
        phase: Phase::Creating,
        created_at: now_ns(),
        netns: (!host_net).then(|| dir.join("ns").join(Kind::Net.name())),
        ips: Vec::new(),
        network_attached: false,
        cni_result: None,
        infra_cgroup: cgroup::child_path(&pod_cgroup, &id, systemd),
        cgroup_parent: pod_cgroup,
        cgroup_created: false,
        shim_address: String::new(),
        infra_pid: 0,
        exit: None,
        dir,
        config,
    };
    // Recorded before anything is made: a crash from here on is rolled
    // back on restart.
    let sb = match s.create(rec.clone()) {
        Ok(sb) => sb,
        Err(e) => {
            s.release_name(&name, &id);
            return Err(e);
        }
    };
    let op = sb.op.lock().await;
    let built = build(s, &sb, &mut rec, &own, sysctls, net_conf, userns).await;
    match built {
        Ok(()) => {
            drop(op);
            infra::watch(s.clone(), sb);
            tracing::info!(pod = %id, name = %name, ips = ?rec.ips, "pod sandbox ready");
            Ok(id)
        }
        Err(e) => {
            tracing::warn!(pod = %id, error = %e, "pod sandbox failed; cleaning up");
            // Undone from the record as stored, exactly as the next start
            // would after a crash here: every step was recorded first.
            let mut rec = match s.update(&sb, |r| r.phase = Phase::Removing) {
                Ok((now, ())) => now,
                Err(_) => sb.record(),
            };
            if let Err(te) = remove::teardown(s, &sb, &mut rec).await {
                // The record stays for RemovePodSandbox or the next start.
                tracing::error!(pod = %id, error = %te, "cleanup of failed pod sandbox");
            }
            Err(e)
        }
    }
}

/// The steps of RunPodSandbox after the record exists.
async fn build(
    s: &Sandboxes,
    sb: &Sandbox,
    rec: &mut SandboxRecord,
    own: &[Kind],
    sysctls: Vec<(Kind, String, String)>,
    net_conf: Option<network::NetworkConf>,
    userns: Option<cri::UserNamespace>,
) -> Result<(), SandboxError> {
    let hostname = pod_hostname(&rec.config);
    let host_net = rec.netns.is_none();
    let ns_dir = rec.dir.join("ns");
    let t = std::time::Instant::now();
    let pod_id = rec.id.clone();
    let step = |what: &str| tracing::debug!(pod = %pod_id, step = what, ms = t.elapsed().as_secs_f64() * 1e3, "RunPodSandbox step done");
    // The host IDs of the pod's root, who owns the pod's files.
    let owner = userns.as_ref().map(crate::idmap::root_ids);
    // Root only (crate::private): the pod's shm, namespace pins and files
    // are below; a user-namespaced pod's root may traverse it.
    crate::private::object_dir(&rec.dir, owner.map(|(_, gid)| gid))
        .map_err(|e| SandboxError::io("create", &rec.dir, e))?;
    let own_ns = userns.map(|userns| OwnNamespaces {
        userns,
        hostname: hostname.clone(),
        sysctls: sysctls
            .iter()
            .map(|(_, n, v)| (n.clone(), v.clone()))
            .collect(),
    });
    // A pod in its own user namespace has its namespaces made by its
    // infra, which enters that user namespace first (see OwnNamespaces).
    let node = &s.effects.node;
    let pinned = own_ns.is_none();
    if pinned {
        let setup = Setup {
            hostname: (!host_net).then(|| hostname.clone()),
            sysctls,
        };
        node.pin_namespaces(&ns_dir, own, &setup).await?;
    }
    step("namespaces");
    if own.contains(&Kind::Ipc) {
        node.mount_shm(&rec.dir.join("shm"), owner).await?;
    }
    step("shm");
    // Recorded before it is made, so a crash cannot leak it.
    let systemd = s.systemd_cgroups();
    let will_create = !node.cgroup_exists(&rec.cgroup_parent, systemd).await?;
    if will_create {
        rec.cgroup_created = true;
        s.update(sb, |r| r.cgroup_created = true)?;
        // kubelet sizes a cgroup of its own; one of ours is sized here.
        let limits = resources::of_config(&rec.config)?;
        node.make_cgroup(&rec.cgroup_parent, systemd, limits)
            .await?;
    }
    let pid_mode = ns_options(&rec.config).pid;
    let pinned_path = |k: Kind| (pinned && own.contains(&k)).then(|| ns_dir.join(k.name()));
    let spec = InfraSpec {
        binary: s.paths.infra.clone(),
        net: pinned_path(Kind::Net),
        ipc: pinned_path(Kind::Ipc),
        uts: pinned_path(Kind::Uts),
        new_pid: pid_mode != cri::NamespaceMode::Node as i32,
        cgroups_path: rec.infra_cgroup.clone(),
        own: own_ns,
        annotations: sandbox_annotations(rec),
        dev_tmpfs: rec.shim.is_v2(),
    };
    let pod_net = stop::pod_network(s, rec);
    let network = async {
        match &net_conf {
            Some(conf) => node
                .network_add(conf, &s.daemon.config.cni.bin_dirs, &pod_net)
                .await
                .map(Some),
            None => Ok(None),
        }
    };
    let (net_r, infra_r) = if spec.own.is_some() {
        // The network namespace is the infra's: it comes first, then is
        // pinned, then configured.
        let started = infra::start(s, sb, rec, &spec).await;
        let pinned = match started {
            Ok(()) => {
                node.adopt_namespaces(
                    &ns_dir,
                    rec.infra_pid,
                    &[Kind::User, Kind::Net, Kind::Ipc, Kind::Uts],
                )
                .await
            }
            Err(e) => Err(e),
        };
        if pinned.is_ok() && net_conf.is_some() {
            rec.network_attached = true;
            s.update(sb, |r| r.network_attached = true)?;
            (network.await, pinned)
        } else {
            (Ok(None), pinned)
        }
    } else {
        // The infra only joins the pinned namespaces; it does not need
        // the network configured. So CNI ADD and the infra's start run at
        // once: a pod is ready in the longer of the two, not their sum.
        if net_conf.is_some() {
            rec.network_attached = true;
            s.update(sb, |r| r.network_attached = true)?;
        }
        // The infra side records its shim address in its own copy
        // (network state is only written after both finish).
        let mut infra_rec = rec.clone();
        let r = tokio::join!(network, infra::start(s, sb, &mut infra_rec, &spec));
        rec.shim_address = infra_rec.shim_address;
        rec.infra_pid = infra_rec.infra_pid;
        r
    };
    match net_r {
        Ok(Some(added)) => {
            rec.ips = added.ips;
            rec.cni_result = Some(added.result);
        }
        Ok(None) => {}
        Err(e) => {
            // These are found before any plugin runs: no DEL is owed.
            if matches!(
                e,
                network::CniError::PluginNotFound { .. }
                    | network::CniError::BadConfig { .. }
                    | network::CniError::BadArg { .. }
            ) {
                rec.network_attached = false;
                s.update(sb, |r| r.network_attached = false)?;
            }
            return Err(e.into());
        }
    }
    s.update(sb, |r| {
        r.ips = rec.ips.clone();
        r.cni_result = rec.cni_result.clone();
        r.infra_pid = rec.infra_pid;
    })?;
    infra_r?;
    step("network and infra");
    write_files(rec, &hostname, host_net, owner)?;
    rec.phase = Phase::Ready;
    s.update(sb, |r| r.phase = Phase::Ready)?;
    step("ready");
    Ok(())
}

/// hostname, hosts and resolv.conf in the pod directory.
/// `owner`: the host IDs of the root of a pod in its own user namespace,
/// who must be able to change them (as containerd's do, they stay the
/// pod's to edit).
fn write_files(
    rec: &SandboxRecord,
    hostname: &str,
    host_net: bool,
    owner: Option<(u32, u32)>,
) -> Result<(), SandboxError> {
    let host_hosts = PathBuf::from("/etc/hosts");
    let host_resolv = PathBuf::from("/etc/resolv.conf");
    let read = |p: &PathBuf| files::read_host(p).map_err(|e| SandboxError::io("read", p, e));
    let hosts = files::hosts(host_net, &read(&host_hosts)?, hostname, &rec.ips);
    let resolv = files::resolv_conf(rec.config.dns_config.as_ref(), &read(&host_resolv)?);
    let host_name = if host_net {
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        hostname.to_string()
    };
    for (name, text) in [
        ("hostname", format!("{host_name}\n")),
        ("hosts", hosts),
        ("resolv.conf", resolv),
    ] {
        let p = rec.dir.join(name);
        std::fs::write(&p, text).map_err(|e| SandboxError::io("write", &p, e))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&p, Some(uid), Some(gid))
                .map_err(|e| SandboxError::io("chown", &p, e))?;
        }
    }
    Ok(())
}

/// containerd's sandbox annotations for the infra's spec: a shim v2 groups
/// the pod's containers with the sandbox task by them, and Kata and gVisor
/// read them to tell the sandbox from its containers.
fn sandbox_annotations(rec: &SandboxRecord) -> std::collections::BTreeMap<String, String> {
    use crate::cri_annotations as a;
    let meta = rec.config.metadata.clone().unwrap_or_default();
    [
        (a::CONTAINER_TYPE, a::CONTAINER_TYPE_SANDBOX.to_string()),
        (a::SANDBOX_ID, rec.id.clone()),
        (a::SANDBOX_NAME, meta.name),
        (a::SANDBOX_NAMESPACE, meta.namespace),
        (a::SANDBOX_UID, meta.uid),
        (a::SANDBOX_LOG_DIR, rec.config.log_directory.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}
