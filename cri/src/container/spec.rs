//! The OCI runtime spec (`config.json`) of a container: a pure function of
//! the CRI `ContainerConfig`, the image's config and facts about its pod,
//! laid out as containerd's CRI plugin lays it out (`buildLinuxSpec` in
//! internal/cri/server/container_create.go and the options in
//! internal/cri/opts), so containers behave under Carapace as under
//! containerd.
//!
//! Nothing here touches the host. What needs it is the caller's, passed in:
//! the image's /etc/passwd and /etc/group, the devices stat-ed, the PID of
//! a TARGET container, the contents of a localhost seccomp profile
//! ([`seccomp_localhost_ref`] says which). The caller also creates the
//! returned image volume directories and, as containerd does, any missing
//! CRI mount host path.
//!
//! One submodule per part of the spec: [`process`] (args, env, cwd),
//! [`user`], [`namespaces`], [`mounts`], [`resources`] (and devices),
//! [`security`] (capabilities, masked paths, AppArmor), [`seccomp`],
//! [`annotations`].
//!
//! Where this differs from containerd, on purpose:
//! * an unprivileged container whose request has no masked/read-only
//!   paths gets the default ones (containerd: none), except in a user
//!   namespace, where empty lists are kubelet's `Unmasked` proc mount;
//! * runc's default device cgroup rules are written into the spec, so
//!   every OCI runtime enforces the same ones;
//! * the request's annotations are passed on (as CRI-O does), minus keys
//!   OCI runtimes act on (`run.oci.*`, `org.criu.*`) and our own
//!   `io.kubernetes.cri.*`;
//! * unknown capability names and malformed users, devices and resource
//!   values are rejected here rather than by the runtime later;
//! * the pod's sysctls are not repeated: the CRI puts them on the pod,
//!   whose namespaces the sandbox set them in, and a container has no
//!   sysctls of its own;
//! * AppArmor and SELinux follow the node ([`security::AppArmorFacts`],
//!   [`SpecInput::selinux`]): where an LSM is off, AppArmor Localhost
//!   profiles are refused and SELinux options ignored, as containerd does.

use std::path::PathBuf;

use k8s_cri::v1 as cri;
use oci_spec::runtime::{Linux, Process, Root, Spec, User};

pub mod annotations;
pub mod error;
pub mod mounts;
pub mod namespaces;
pub mod process;
pub mod resources;
pub mod seccomp;
pub mod security;
pub mod user;

#[cfg(test)]
mod tests;

pub use error::SpecError;

/// The OCI runtime spec version the built specs declare.
pub const OCI_VERSION: &str = "1.1.0";

/// The stop signal when the image names none.
pub const DEFAULT_STOP_SIGNAL: &str = "SIGTERM";

/// Facts about the pod the container joins.
#[derive(Debug, Clone)]
pub struct SandboxFacts {
    /// The pod sandbox ID.
    pub id: String,
    /// The value of the container's `HOSTNAME` variable: the pod's
    /// hostname (the node's on the host network).
    pub hostname: String,
    /// The pod's pinned network namespace; None on the host network.
    pub netns: Option<PathBuf>,
    /// The pod's pinned IPC namespace; None with host IPC.
    pub ipc_ns: Option<PathBuf>,
    /// The pod's pinned UTS namespace; None on the host network.
    pub uts_ns: Option<PathBuf>,
    /// The pod's pinned user namespace; None for a pod in the host's.
    pub user_ns: Option<PathBuf>,
    /// The pod's infra process: its `/proc/<pid>/ns/pid` is the pod's PID
    /// namespace (for PID mode POD).
    pub infra_pid: u32,
    /// The pod directory holding its `hostname`, `hosts` and `resolv.conf`.
    pub pod_dir: PathBuf,
    /// The pod's /dev/shm tmpfs; None with host IPC (the host's /dev/shm
    /// is bound then).
    pub shm: Option<PathBuf>,
    /// The pod cgroup (containers go below it).
    pub cgroup_parent: String,
    /// The systemd cgroup driver: `cgroupsPath` is `slice:carapace:<id>`.
    pub systemd_cgroup: bool,
    /// The node runs cgroup v2 (containers get a cgroup namespace).
    pub cgroup_v2: bool,
    /// The pod's security context, for the checks the CRI makes against
    /// it (a privileged container needs a privileged pod; the user
    /// namespace must be the pod's). None is an unprivileged pod.
    pub pod_security: Option<cri::LinuxSandboxSecurityContext>,
}

/// The image's parts that matter.
#[derive(Debug, Clone)]
pub struct ImageFacts {
    /// The image as the request named it (an annotation of the spec).
    pub image_name: String,
    /// The image config's `config` object (`User`, `Env`, `Entrypoint`,
    /// `Cmd`, `WorkingDir`, `Volumes`, `StopSignal`…); null for none.
    pub config: serde_json::Value,
    /// The image rootfs's /etc/passwd, if it has one.
    pub passwd: Option<String>,
    /// The image rootfs's /etc/group, if it has one.
    pub group: Option<String>,
}

/// A device node's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// A character device (`c`).
    Char,
    /// A block device (`b`).
    Block,
}

/// A device to create in the container, stat-ed on the host by the caller:
/// each CRI `Device` (every device below it when its host path is a
/// directory, as containerd does) and, for a privileged container, every
/// device of the host's /dev (containerd's `WithHostDevices`; host devices
/// come after the CRI ones, and the first entry of a path wins).
#[derive(Debug, Clone)]
pub struct DeviceFacts {
    /// The device on the host.
    pub host_path: PathBuf,
    /// Where it appears in the container ("" for the host path).
    pub container_path: String,
    /// cgroup permissions: a combination of `r`, `w`, `m`.
    pub permissions: String,
    /// Character or block.
    pub kind: DeviceKind,
    /// Major number.
    pub major: i64,
    /// Minor number.
    pub minor: i64,
    /// Permission bits of the node (`st_mode & 0o7777`).
    pub file_mode: u32,
    /// Owner of the node.
    pub uid: u32,
    /// Group of the node.
    pub gid: u32,
}

/// Everything a container's spec is made from.
#[derive(Debug, Clone)]
pub struct SpecInput<'a> {
    /// The container ID.
    pub id: &'a str,
    /// The CRI request's container config.
    pub config: &'a cri::ContainerConfig,
    /// The pod.
    pub sandbox: &'a SandboxFacts,
    /// The image.
    pub image: &'a ImageFacts,
    /// The mounted root filesystem (`root.path`).
    pub rootfs: PathBuf,
    /// Where image volumes get their host directories (one each).
    pub volumes_dir: PathBuf,
    /// The host dirs where the config's image mounts (CRI `Mount.image`)
    /// are mounted read-only, in the order of those mounts.
    pub image_mounts: Vec<PathBuf>,
    /// The PID of the target container for PID mode TARGET; None (or 0)
    /// when it is not running.
    pub target_pid: Option<u32>,
    /// The devices (see [`DeviceFacts`]).
    pub devices: Vec<DeviceFacts>,
    /// The localhost seccomp profile's contents, when
    /// [`seccomp_localhost_ref`] names one.
    pub seccomp_localhost: Option<String>,
    /// The capabilities the daemon itself may grant (its bounding set):
    /// what "ALL" and privileged mean, as containerd's
    /// WithAllCurrentCapabilities — inside a container or on a node
    /// without some capability, asking for more fails at capset.
    pub host_caps: Vec<oci_spec::runtime::Capability>,
    /// What the node's AppArmor offers.
    pub apparmor: security::AppArmorFacts,
    /// The SELinux policy's container contexts; None where SELinux is off
    /// (the request's `selinux_options` are then ignored, as containerd).
    pub selinux: Option<crate::selinux::Contexts>,
}

/// Who the container's process runs as; ContainerStatus reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// The uid.
    pub uid: u32,
    /// The primary gid.
    pub gid: u32,
    /// All groups of the process, the primary one included, sorted.
    pub additional_gids: Vec<u32>,
    /// The user's name in the image, when it has one.
    pub username: Option<String>,
}

/// A built spec and what the caller needs besides it.
#[derive(Debug, Clone)]
pub struct BuiltSpec {
    /// The OCI runtime spec.
    pub spec: Spec,
    /// The process's user and groups.
    pub user: ResolvedUser,
    /// The image volumes: (host directory to create, container path).
    pub volumes: Vec<(PathBuf, String)>,
    /// The image's StopSignal, or SIGTERM.
    pub stop_signal: String,
}

/// The localhost seccomp profile the caller must read (its absolute path
/// on the node) and pass as [`SpecInput::seccomp_localhost`], if any.
pub fn seccomp_localhost_ref(config: &cri::ContainerConfig) -> Result<Option<String>, SpecError> {
    seccomp::localhost_ref(config)
}

/// The image config, or an empty one for an image without.
fn image_config(v: &serde_json::Value) -> Result<oci_spec::image::Config, SpecError> {
    if v.is_null() {
        return Ok(Default::default());
    }
    serde_json::from_value(v.clone()).map_err(SpecError::BadImageConfig)
}

/// Builds the container's spec (see the module doc for where each part
/// comes from).
pub fn build(input: &SpecInput<'_>) -> Result<BuiltSpec, SpecError> {
    let config = input.config;
    let sb = input.sandbox;
    let image = image_config(&input.image.config)?;
    let sc = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref());
    let privileged = sc.is_some_and(|s| s.privileged);
    if privileged && !sb.pod_security.as_ref().is_some_and(|p| p.privileged) {
        return Err(SpecError::PrivilegedNotAllowed);
    }
    let readonly_rootfs = sc.is_some_and(|s| s.readonly_rootfs);

    let no_strings = Vec::new();
    let args = process::args(
        config,
        image.entrypoint().as_ref().unwrap_or(&no_strings),
        image.cmd().as_ref().unwrap_or(&no_strings),
    )?;
    let env = process::env(
        &sb.hostname,
        image.env().as_ref().unwrap_or(&no_strings),
        &config.envs,
    );
    let cwd = process::cwd(config, image.working_dir().as_deref())?;
    let user = user::resolve(
        sc,
        image.user().as_deref().unwrap_or_default(),
        input.image.passwd.as_deref(),
        input.image.group.as_deref(),
    )?;

    let ns = namespaces::namespaces(input, privileged)?;
    let userns = namespaces::userns(
        sc.and_then(|s| s.namespace_options.as_ref())
            .and_then(|o| o.userns_options.as_ref()),
    )?;
    let plan = mounts::plan(
        input,
        image.volumes().as_ref().unwrap_or(&no_strings),
        privileged,
        readonly_rootfs,
        userns,
    )?;
    let res = resources::resources(
        config.linux.as_ref().and_then(|l| l.resources.as_ref()),
        &input.devices,
        privileged,
    )?;
    let caps = security::capabilities(sc, privileged, &input.host_caps)?;
    let (masked, readonly) = security::masked_and_readonly(sc, privileged, userns.is_some());
    let apparmor = security::apparmor_profile(sc, privileged, &input.apparmor)?;
    let (selinux_label, mount_label) =
        match security::selinux_labels(input.selinux.as_ref(), sb, sc) {
            Some((process, mount)) => (Some(process), Some(mount)),
            None => (None, None),
        };
    let seccomp = seccomp::seccomp(
        sc,
        privileged,
        caps.bounding().as_ref().unwrap_or(&Default::default()),
        input.seccomp_localhost.as_deref(),
    )?;

    let mut oci_user = User::default();
    oci_user
        .set_uid(user.uid)
        .set_gid(user.gid)
        .set_additional_gids(Some(user.additional_gids.clone()));
    let mut proc_ = Process::default();
    proc_
        .set_terminal(Some(config.tty))
        .set_console_size(None)
        .set_user(oci_user)
        .set_args(Some(args))
        .set_env(Some(env))
        .set_cwd(PathBuf::from(cwd))
        .set_capabilities(Some(caps))
        // containerd removes the default rlimits: the process inherits
        // the shim's, which the daemon's service unit sets.
        .set_rlimits(None)
        .set_no_new_privileges(sc.is_some_and(|s| s.no_new_privs).then_some(true))
        .set_apparmor_profile(apparmor)
        .set_selinux_label(selinux_label)
        .set_oom_score_adj(res.oom_score_adj);

    let mut root = Root::default();
    root.set_path(input.rootfs.clone())
        .set_readonly(Some(readonly_rootfs));

    let cgroups_path = (!sb.cgroup_parent.is_empty()).then(|| {
        PathBuf::from(crate::sandbox::cgroup::child_path(
            &sb.cgroup_parent,
            input.id,
            sb.systemd_cgroup,
        ))
    });
    let mut linux = Linux::default();
    linux
        .set_uid_mappings((!ns.uid_mappings.is_empty()).then_some(ns.uid_mappings))
        .set_gid_mappings((!ns.gid_mappings.is_empty()).then_some(ns.gid_mappings))
        .set_sysctl(None)
        .set_resources(Some(res.resources))
        .set_cgroups_path(cgroups_path)
        .set_namespaces(Some(ns.list))
        .set_devices((!res.devices.is_empty()).then_some(res.devices))
        .set_seccomp(seccomp)
        .set_rootfs_propagation(plan.rootfs_propagation)
        .set_masked_paths(Some(masked))
        .set_readonly_paths(Some(readonly))
        .set_mount_label(mount_label);

    let mut spec = Spec::default();
    spec.set_version(OCI_VERSION.to_string())
        .set_root(Some(root))
        .set_mounts(Some(plan.mounts))
        .set_process(Some(proc_))
        // The container shares the pod's UTS namespace (or the host's).
        .set_hostname(None)
        .set_domainname(None)
        .set_hooks(None)
        .set_annotations(Some(annotations::annotations(
            config,
            &sb.id,
            &input.image.image_name,
        )))
        .set_linux(Some(linux));

    // The container's own stop signal (KEP 4960, ContainerConfig
    // stop_signal) over the image's, over SIGTERM.
    let requested = cri::Signal::try_from(config.stop_signal)
        .ok()
        .filter(|s| *s != cri::Signal::RuntimeDefault)
        .map(|s| s.as_str_name());
    let stop_signal = requested
        .or(image
            .stop_signal()
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty()))
        .unwrap_or(DEFAULT_STOP_SIGNAL)
        .to_string();
    Ok(BuiltSpec {
        spec,
        user,
        volumes: plan.volumes,
        stop_signal,
    })
}
