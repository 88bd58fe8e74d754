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

/// The node has no AppArmor, so no profile is ever set; as containerd does
/// there, asking for a specific (localhost) profile fails loudly instead of
/// running the container unconfined, while RuntimeDefault and Unconfined
/// mean nothing to do.
pub fn check_apparmor(sc: Option<&cri::LinuxContainerSecurityContext>) -> Result<(), SpecError> {
    let Some(sc) = sc else {
        return Ok(());
    };
    if let Some(p) = &sc.apparmor {
        return match cri::security_profile::ProfileType::try_from(p.profile_type) {
            Ok(cri::security_profile::ProfileType::Localhost) => {
                Err(SpecError::ApparmorUnsupported(p.localhost_ref.clone()))
            }
            Ok(_) => Ok(()),
            Err(_) => Err(SpecError::InvalidApparmor(format!(
                "unknown profile type {}",
                p.profile_type
            ))),
        };
    }
    #[allow(deprecated)]
    let legacy = sc.apparmor_profile.as_str();
    match legacy {
        "" | "runtime/default" | "unconfined" => Ok(()),
        p if p.starts_with("localhost/") => Err(SpecError::ApparmorUnsupported(p.to_string())),
        p => Err(SpecError::InvalidApparmor(format!("invalid profile {p:?}"))),
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

    #[test]
    fn apparmor_localhost_fails_other_profiles_pass() {
        let with = |t: cri::security_profile::ProfileType| cri::LinuxContainerSecurityContext {
            apparmor: Some(cri::SecurityProfile {
                profile_type: t as i32,
                localhost_ref: "p".into(),
            }),
            ..Default::default()
        };
        use cri::security_profile::ProfileType as T;
        assert!(check_apparmor(Some(&with(T::RuntimeDefault))).is_ok());
        assert!(check_apparmor(Some(&with(T::Unconfined))).is_ok());
        let e = check_apparmor(Some(&with(T::Localhost))).expect_err("localhost");
        assert_eq!(e.kind(), crate::error_kind::ErrorKind::FailedPrecondition);
        #[allow(deprecated)]
        let legacy = |p: &str| cri::LinuxContainerSecurityContext {
            apparmor_profile: p.into(),
            ..Default::default()
        };
        assert!(check_apparmor(Some(&legacy("runtime/default"))).is_ok());
        assert!(check_apparmor(Some(&legacy("localhost/x"))).is_err());
        assert_eq!(
            check_apparmor(Some(&legacy("bogus")))
                .expect_err("bogus")
                .kind(),
            crate::error_kind::ErrorKind::InvalidArgument
        );
        assert!(check_apparmor(None).is_ok());
    }
}
