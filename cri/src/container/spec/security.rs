//! Capabilities, masked and read-only paths, and AppArmor, from the CRI
//! security context: containerd's `WithCapabilities`, `WithPrivileged`,
//! `WithoutAmbientCaps` (internal/cri/opts/spec_opts.go, pkg/oci) and its
//! masked/read-only path handling in `buildLinuxSpec`.

use k8s_cri::v1 as cri;
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

use super::SpecError;

/// The capabilities a container has unless its security context says
/// otherwise: containerd's `defaultUnixCaps` (Docker's default set).
pub const DEFAULT_CAPS: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Every capability (Linux 5.9's 41): what "ALL" and privileged grant.
/// containerd asks the kernel which it knows; Debian 12's kernel knows all
/// of these, and runtimes skip ones an older kernel lacks.
pub const ALL_CAPS: [Capability; 41] = [
    Capability::AuditControl,
    Capability::AuditRead,
    Capability::AuditWrite,
    Capability::BlockSuspend,
    Capability::Bpf,
    Capability::CheckpointRestore,
    Capability::Chown,
    Capability::DacOverride,
    Capability::DacReadSearch,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::IpcLock,
    Capability::IpcOwner,
    Capability::Kill,
    Capability::Lease,
    Capability::LinuxImmutable,
    Capability::MacAdmin,
    Capability::MacOverride,
    Capability::Mknod,
    Capability::NetAdmin,
    Capability::NetBindService,
    Capability::NetBroadcast,
    Capability::NetRaw,
    Capability::Perfmon,
    Capability::Setgid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::Setuid,
    Capability::SysAdmin,
    Capability::SysBoot,
    Capability::SysChroot,
    Capability::SysModule,
    Capability::SysNice,
    Capability::SysPacct,
    Capability::SysPtrace,
    Capability::SysRawio,
    Capability::SysResource,
    Capability::SysTime,
    Capability::SysTtyConfig,
    Capability::Syslog,
    Capability::WakeAlarm,
];

/// Paths masked when the request gives none (containerd's and runc's
/// defaults, which kubelet also sends for the Default proc mount).
pub const DEFAULT_MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths made read-only when the request gives none.
pub const DEFAULT_READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// A capability name as the CRI gives it, with or without `CAP_`, in any
/// case.
fn parse_cap(name: &str) -> Result<Capability, SpecError> {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map_err(|_| SpecError::UnknownCapability(name.to_string()))
}

/// The daemon's own bounding set, as runtime-spec capabilities: the most
/// a container can be given here. Read once; a set that cannot be read
/// falls back to every known capability.
pub fn host_capabilities() -> Vec<Capability> {
    static HOST: std::sync::OnceLock<Vec<Capability>> = std::sync::OnceLock::new();
    HOST.get_or_init(|| match caps::read(None, caps::CapSet::Bounding) {
        Ok(set) => ALL_CAPS
            .into_iter()
            .filter(|c| {
                set.iter()
                    .any(|h| parse_cap(&h.to_string()).is_ok_and(|p| p == *c))
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "read the daemon's bounding capabilities; assuming all");
            ALL_CAPS.to_vec()
        }
    })
    .clone()
}

fn is_all(name: &str) -> bool {
    name.eq_ignore_ascii_case("ALL")
}

/// The process capabilities.
///
/// Bounding, effective and permitted start as [`DEFAULT_CAPS`] (all of
/// them when privileged); then, as containerd applies them, "ALL" in the
/// add list grants every capability, "ALL" in the drop list removes every
/// one, and the named adds and drops follow — so `add: [ALL], drop:
/// [CHOWN]` is everything but CHOWN. Inheritable and ambient stay empty
/// (containerd clears them; CVE-2022-24769) except for the CRI's
/// `add_ambient_capabilities`, which go into every set as the CRI says.
/// A privileged container keeps every capability whatever it drops, as
/// with containerd's `WithPrivileged`.
pub fn capabilities(
    sc: Option<&cri::LinuxContainerSecurityContext>,
    privileged: bool,
    host: &[Capability],
) -> Result<LinuxCapabilities, SpecError> {
    let mut main: Capabilities = DEFAULT_CAPS.into_iter().collect();
    let mut ambient = Capabilities::new();
    if let Some(c) = sc.and_then(|s| s.capabilities.as_ref()) {
        if c.add_capabilities.iter().any(|n| is_all(n)) {
            main = host.iter().copied().collect();
        }
        if c.drop_capabilities.iter().any(|n| is_all(n)) {
            main.clear();
        }
        for n in c.add_capabilities.iter().filter(|n| !is_all(n)) {
            main.insert(parse_cap(n)?);
        }
        for n in &c.add_ambient_capabilities {
            let cap = parse_cap(n)?;
            main.insert(cap);
            ambient.insert(cap);
        }
        for n in c.drop_capabilities.iter().filter(|n| !is_all(n)) {
            let cap = parse_cap(n)?;
            main.remove(&cap);
            ambient.remove(&cap);
        }
    }
    if privileged {
        main = host.iter().copied().collect();
    }
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(main.clone()))
        .set_effective(Some(main.clone()))
        .set_permitted(Some(main))
        .set_inheritable(Some(ambient.clone()))
        .set_ambient(Some(ambient));
    Ok(caps)
}

/// `linux.maskedPaths` and `linux.readonlyPaths`: none when privileged;
/// else the request's lists, or the defaults when a list is empty.
///
/// containerd leaves an empty list empty; here an unprivileged container
/// gets the defaults, so one created without kubelet (crictl) is not left
/// with /proc/kcore readable — except in a user namespace, where kubelet
/// sends empty lists for the `Unmasked` proc mount (which it only allows
/// with a user namespace) and the namespace already fences /proc off.
pub fn masked_and_readonly(
    sc: Option<&cri::LinuxContainerSecurityContext>,
    privileged: bool,
    userns: bool,
) -> (Vec<String>, Vec<String>) {
    if privileged {
        return (Vec::new(), Vec::new());
    }
    let pick = |given: Option<&Vec<String>>, defaults: &[&str]| match given {
        Some(g) if !g.is_empty() => g.clone(),
        _ if userns => Vec::new(),
        _ => defaults.iter().map(|s| s.to_string()).collect(),
    };
    (
        pick(sc.map(|s| &s.masked_paths), &DEFAULT_MASKED_PATHS),
        pick(sc.map(|s| &s.readonly_paths), &DEFAULT_READONLY_PATHS),
    )
}

/// The container's SELinux (process label, mount label) where SELinux is
/// on (`contexts`): [`crate::selinux::container_labels`] with the pod's
/// and the container's options. The rootfs mount and the spec both take
/// them from here.
pub fn selinux_labels(
    contexts: Option<&crate::selinux::Contexts>,
    sandbox: &super::SandboxFacts,
    sc: Option<&cri::LinuxContainerSecurityContext>,
) -> Option<(String, String)> {
    crate::selinux::container_labels(
        contexts?,
        sandbox
            .pod_security
            .as_ref()
            .and_then(|s| s.selinux_options.as_ref()),
        sc.and_then(|s| s.selinux_options.as_ref()),
        &sandbox.id,
        sc.is_some_and(|s| s.privileged),
    )
}

/// What the node's AppArmor offers a container's spec: read by the caller
/// (the kernel's lists are files), decided here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AppArmorFacts {
    /// AppArmor is off: nothing is ever applied; Localhost is refused.
    #[default]
    Disabled,
    /// AppArmor is enforced.
    Enabled {
        /// Whether the default profile is loaded, or why not.
        default: Result<(), String>,
        /// The profiles the kernel has loaded.
        loaded: std::collections::BTreeSet<String>,
    },
}

/// What a request asks of AppArmor, from the `apparmor` field (preferred)
/// or the deprecated `apparmor_profile` string, as kubelet sends both.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AppArmorAsk {
    Unset,
    RuntimeDefault,
    Unconfined,
    Localhost(String),
}

fn apparmor_ask(sc: &cri::LinuxContainerSecurityContext) -> Result<AppArmorAsk, SpecError> {
    use cri::security_profile::ProfileType;
    let localhost = |name: &str| {
        let name = name.strip_prefix("localhost/").unwrap_or(name);
        if name.is_empty() {
            Err(SpecError::InvalidApparmor(
                "a Localhost profile needs its name (localhost_ref)".into(),
            ))
        } else {
            Ok(AppArmorAsk::Localhost(name.to_string()))
        }
    };
    if let Some(p) = &sc.apparmor {
        return match ProfileType::try_from(p.profile_type) {
            Ok(ProfileType::RuntimeDefault) => Ok(AppArmorAsk::RuntimeDefault),
            Ok(ProfileType::Unconfined) => Ok(AppArmorAsk::Unconfined),
            Ok(ProfileType::Localhost) => localhost(&p.localhost_ref),
            Err(_) => Err(SpecError::InvalidApparmor(format!(
                "unknown profile type {}",
                p.profile_type
            ))),
        };
    }
    #[allow(deprecated)]
    let legacy = sc.apparmor_profile.as_str();
    match legacy {
        "" => Ok(AppArmorAsk::Unset),
        "runtime/default" => Ok(AppArmorAsk::RuntimeDefault),
        "unconfined" => Ok(AppArmorAsk::Unconfined),
        p if p.starts_with("localhost/") => localhost(p),
        p => Err(SpecError::InvalidApparmor(format!("invalid profile {p:?}"))),
    }
}

/// Whether the request names a Localhost AppArmor profile: only then does
/// the caller need the kernel's list of loaded profiles.
pub fn asks_localhost_apparmor(sc: Option<&cri::LinuxContainerSecurityContext>) -> bool {
    sc.is_some_and(|sc| matches!(apparmor_ask(sc), Ok(AppArmorAsk::Localhost(_))))
}

/// The AppArmor profile the container's processes run under (the spec's
/// `process.apparmorProfile`), as containerd decides it: RuntimeDefault,
/// and no request at all for an unprivileged container, mean the default
/// profile; Unconfined and a privileged container without a request mean
/// none; a Localhost profile must be loaded. Where AppArmor is off, nothing
/// is applied and a Localhost profile is refused rather than ignored.
pub fn apparmor_profile(
    sc: Option<&cri::LinuxContainerSecurityContext>,
    privileged: bool,
    node: &AppArmorFacts,
) -> Result<Option<String>, SpecError> {
    let ask = match sc {
        Some(sc) => apparmor_ask(sc)?,
        None => AppArmorAsk::Unset,
    };
    let (default, loaded) = match node {
        AppArmorFacts::Disabled => {
            return match ask {
                AppArmorAsk::Localhost(name) => Err(SpecError::ApparmorUnsupported(name)),
                _ => Ok(None),
            }
        }
        AppArmorFacts::Enabled { default, loaded } => (default, loaded),
    };
    let runtime_default = || match default {
        Ok(()) => Ok(Some(crate::apparmor::DEFAULT_PROFILE.to_string())),
        Err(why) => Err(SpecError::ApparmorNotLoaded(why.clone())),
    };
    match ask {
        AppArmorAsk::Unset if privileged => Ok(None),
        AppArmorAsk::Unset | AppArmorAsk::RuntimeDefault => runtime_default(),
        AppArmorAsk::Unconfined => Ok(None),
        AppArmorAsk::Localhost(name) if loaded.contains(&name) => Ok(Some(name)),
        AppArmorAsk::Localhost(name) => Err(SpecError::ApparmorNotLoaded(format!(
            "the AppArmor profile {name:?} is not loaded on this node"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error_kind::Kinded;
    use std::collections::BTreeSet;

    fn caps_of(
        add: &[&str],
        drop: &[&str],
        ambient: &[&str],
        privileged: bool,
    ) -> LinuxCapabilities {
        let sc = cri::LinuxContainerSecurityContext {
            capabilities: Some(cri::Capability {
                add_capabilities: add.iter().map(|s| s.to_string()).collect(),
                drop_capabilities: drop.iter().map(|s| s.to_string()).collect(),
                add_ambient_capabilities: ambient.iter().map(|s| s.to_string()).collect(),
            }),
            ..Default::default()
        };
        capabilities(Some(&sc), privileged, &ALL_CAPS).expect("caps")
    }

    fn names(c: &Option<Capabilities>) -> BTreeSet<String> {
        c.iter().flatten().map(|c| format!("CAP_{c}")).collect()
    }

    fn set(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn all_and_privileged_grant_only_what_the_host_holds() {
        let host: Vec<Capability> = ALL_CAPS
            .into_iter()
            .filter(|c| *c != Capability::SysResource)
            .collect();
        let add_all = cri::LinuxContainerSecurityContext {
            capabilities: Some(cri::Capability {
                add_capabilities: vec!["ALL".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        for (sc, privileged) in [(Some(&add_all), false), (None, true)] {
            let c = capabilities(sc, privileged, &host).expect("caps");
            let got = names(c.bounding());
            assert_eq!(got.len(), 40);
            assert!(!got.contains("CAP_SYS_RESOURCE"));
            assert!(got.contains("CAP_SYS_ADMIN"));
        }
    }

    #[test]
    fn host_capabilities_are_a_subset_of_the_known() {
        let host = host_capabilities();
        assert!(!host.is_empty());
        assert!(host.iter().all(|c| ALL_CAPS.contains(c)));
    }

    #[test]
    fn defaults_are_containerds_fourteen() {
        let c = capabilities(None, false, &ALL_CAPS).expect("caps");
        assert_eq!(names(c.bounding()).len(), 14);
        assert!(names(c.bounding()).contains("CAP_NET_BIND_SERVICE"));
        assert!(!names(c.bounding()).contains("CAP_SYS_ADMIN"));
        assert_eq!(names(c.bounding()), names(c.effective()));
        assert_eq!(names(c.bounding()), names(c.permitted()));
        assert!(names(c.inheritable()).is_empty());
        assert!(names(c.ambient()).is_empty());
    }

    #[test]
    fn add_and_drop_apply_in_containerds_order() {
        // (add, drop, expected count, must contain, must not contain)
        type Strs = &'static [&'static str];
        let table: &[(Strs, Strs, usize, Strs, Strs)] = &[
            (&["SYS_ADMIN"], &[], 15, &["CAP_SYS_ADMIN"], &[]),
            (&["cap_net_admin"], &[], 15, &["CAP_NET_ADMIN"], &[]),
            (
                &[],
                &["CHOWN", "CAP_KILL"],
                12,
                &[],
                &["CAP_CHOWN", "CAP_KILL"],
            ),
            (&["ALL"], &[], 41, &["CAP_SYS_ADMIN", "CAP_BPF"], &[]),
            (&["all"], &["CHOWN"], 40, &["CAP_SYS_ADMIN"], &["CAP_CHOWN"]),
            (
                &["NET_ADMIN"],
                &["ALL"],
                1,
                &["CAP_NET_ADMIN"],
                &["CAP_CHOWN"],
            ),
            (&[], &["ALL"], 0, &[], &["CAP_KILL"]),
            (&["ALL"], &["ALL"], 0, &[], &[]),
        ];
        for (add, drop, n, has, hasnt) in table {
            let c = caps_of(add, drop, &[], false);
            let b = names(c.bounding());
            assert_eq!(b.len(), *n, "add={add:?} drop={drop:?}: {b:?}");
            assert!(set(has).is_subset(&b), "add={add:?} drop={drop:?}");
            assert!(set(hasnt).is_disjoint(&b), "add={add:?} drop={drop:?}");
            assert_eq!(b, names(c.effective()));
            assert_eq!(b, names(c.permitted()));
            assert!(names(c.ambient()).is_empty());
        }
    }

    #[test]
    fn ambient_capabilities_go_into_every_set() {
        let c = caps_of(&[], &[], &["NET_ADMIN"], false);
        for s in [
            c.bounding(),
            c.effective(),
            c.permitted(),
            c.inheritable(),
            c.ambient(),
        ] {
            assert!(names(s).contains("CAP_NET_ADMIN"));
        }
        assert_eq!(names(c.ambient()).len(), 1);
        let c = caps_of(&[], &["NET_ADMIN"], &["NET_ADMIN"], false);
        assert!(names(c.ambient()).is_empty());
    }

    #[test]
    fn privileged_has_every_capability_despite_drops() {
        let c = caps_of(&[], &["ALL"], &[], true);
        assert_eq!(names(c.bounding()).len(), 41);
        assert_eq!(names(c.permitted()).len(), 41);
    }

    #[test]
    fn unknown_capability_is_invalid() {
        let sc = cri::LinuxContainerSecurityContext {
            capabilities: Some(cri::Capability {
                add_capabilities: vec!["FLY".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        let e = capabilities(Some(&sc), false, &ALL_CAPS).expect_err("unknown");
        assert!(matches!(&e, SpecError::UnknownCapability(n) if n == "FLY"));
        assert_eq!(e.kind(), crate::error_kind::ErrorKind::InvalidArgument);
    }

    #[test]
    fn masked_paths_follow_privilege_request_and_userns() {
        let given = cri::LinuxContainerSecurityContext {
            masked_paths: vec!["/m".into()],
            readonly_paths: vec!["/r".into()],
            ..Default::default()
        };
        let empty = cri::LinuxContainerSecurityContext::default();
        let (m, r) = masked_and_readonly(Some(&given), false, false);
        assert_eq!((m, r), (vec!["/m".to_string()], vec!["/r".to_string()]));
        let (m, r) = masked_and_readonly(Some(&empty), false, false);
        assert_eq!(m.len(), 11);
        assert!(m.contains(&"/proc/kcore".to_string()));
        assert_eq!(r.len(), 5);
        assert_eq!(masked_and_readonly(None, false, false).0.len(), 11);
        assert_eq!(
            masked_and_readonly(Some(&empty), false, true),
            (vec![], vec![])
        );
        assert_eq!(
            masked_and_readonly(Some(&given), true, false),
            (vec![], vec![])
        );
    }

    /// Every way a request names a profile, on a node without AppArmor and
    /// on one with it (default loaded or not), as containerd decides.
    #[test]
    fn apparmor_profiles_follow_the_request_and_the_node() {
        use crate::error_kind::ErrorKind;
        use cri::security_profile::ProfileType as T;
        let new = |t: T, r: &str| cri::LinuxContainerSecurityContext {
            apparmor: Some(cri::SecurityProfile {
                profile_type: t as i32,
                localhost_ref: r.into(),
            }),
            ..Default::default()
        };
        #[allow(deprecated)]
        let legacy = |p: &str| cri::LinuxContainerSecurityContext {
            apparmor_profile: p.into(),
            ..Default::default()
        };
        let enabled = |default: Result<(), String>| AppArmorFacts::Enabled {
            default,
            loaded: ["carapace-default", "k8s-deny-write"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        let on = enabled(Ok(()));
        let off = AppArmorFacts::Disabled;
        let default = Some("carapace-default".to_string());
        let deny = Some("k8s-deny-write".to_string());
        // (request, privileged, node, expected profile or error kind)
        type Want = Result<Option<String>, ErrorKind>;
        let rows: Vec<(
            Option<cri::LinuxContainerSecurityContext>,
            bool,
            &AppArmorFacts,
            Want,
        )> = vec![
            (None, false, &on, Ok(default.clone())),
            (None, true, &on, Ok(None)),
            (
                Some(new(T::RuntimeDefault, "")),
                false,
                &on,
                Ok(default.clone()),
            ),
            (
                Some(new(T::RuntimeDefault, "")),
                true,
                &on,
                Ok(default.clone()),
            ),
            (Some(new(T::Unconfined, "")), false, &on, Ok(None)),
            (
                Some(new(T::Localhost, "k8s-deny-write")),
                false,
                &on,
                Ok(deny.clone()),
            ),
            (
                Some(new(T::Localhost, "localhost/k8s-deny-write")),
                false,
                &on,
                Ok(deny.clone()),
            ),
            (
                Some(new(T::Localhost, "not-loaded")),
                false,
                &on,
                Err(ErrorKind::FailedPrecondition),
            ),
            (
                Some(new(T::Localhost, "")),
                false,
                &on,
                Err(ErrorKind::InvalidArgument),
            ),
            (
                Some(legacy("runtime/default")),
                false,
                &on,
                Ok(default.clone()),
            ),
            (Some(legacy("unconfined")), false, &on, Ok(None)),
            (
                Some(legacy("localhost/k8s-deny-write")),
                false,
                &on,
                Ok(deny.clone()),
            ),
            (
                Some(legacy("localhost/not-loaded")),
                false,
                &on,
                Err(ErrorKind::FailedPrecondition),
            ),
            (
                Some(legacy("bogus")),
                false,
                &on,
                Err(ErrorKind::InvalidArgument),
            ),
            (None, false, &off, Ok(None)),
            (Some(new(T::RuntimeDefault, "")), false, &off, Ok(None)),
            (
                Some(new(T::Localhost, "k8s-deny-write")),
                false,
                &off,
                Err(ErrorKind::FailedPrecondition),
            ),
            (
                Some(legacy("localhost/x")),
                false,
                &off,
                Err(ErrorKind::FailedPrecondition),
            ),
            (
                Some(legacy("bogus")),
                false,
                &off,
                Err(ErrorKind::InvalidArgument),
            ),
        ];
        for (i, (sc, privileged, node, want)) in rows.iter().enumerate() {
            let got = apparmor_profile(sc.as_ref(), *privileged, node).map_err(|e| e.kind());
            assert_eq!(&got, want, "row {i}: {sc:?} privileged={privileged}");
        }
        // Only a Localhost request needs the kernel's list read.
        assert!(asks_localhost_apparmor(Some(&new(T::Localhost, "p"))));
        assert!(asks_localhost_apparmor(Some(&legacy("localhost/p"))));
        assert!(!asks_localhost_apparmor(Some(&new(T::RuntimeDefault, ""))));
        assert!(!asks_localhost_apparmor(None));
        // The new field wins over the deprecated one.
        #[allow(deprecated)]
        let both = cri::LinuxContainerSecurityContext {
            apparmor_profile: "localhost/k8s-deny-write".into(),
            ..new(T::Unconfined, "")
        };
        assert_eq!(apparmor_profile(Some(&both), false, &on).ok(), Some(None));
        // A default profile that failed to load fails RuntimeDefault, never
        // runs it unconfined.
        let broken = enabled(Err("apparmor_parser is not installed".into()));
        let e = apparmor_profile(None, false, &broken).expect_err("no default");
        assert_eq!(e.kind(), ErrorKind::FailedPrecondition);
        assert!(e.to_string().contains("apparmor_parser"), "{e}");
    }
}
