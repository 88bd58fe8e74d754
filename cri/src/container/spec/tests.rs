//! Table tests of whole specs, in the manner of containerd's
//! container_create_linux_test.go: a fixture pod, image and request,
//! changed per case, and the spec checked as the JSON a runtime reads.

use crate::error_kind::Kinded;
use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::*;

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n";
const GROUP: &str = "root:x:0:\napp:x:1000:\nextra:x:2000:app\n";

/// A pod with its own namespaces, an image with `Cmd ["sh"]`, an empty
/// request.
struct Fx {
    config: cri::ContainerConfig,
    sandbox: SandboxFacts,
    image: ImageFacts,
    target_pid: Option<u32>,
    devices: Vec<DeviceFacts>,
    seccomp_localhost: Option<String>,
    apparmor: super::security::AppArmorFacts,
    selinux: Option<crate::selinux::Contexts>,
    image_mounts: Vec<PathBuf>,
}

impl Fx {
    fn new() -> Fx {
        Fx {
            config: cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: "app".into(),
                    attempt: 0,
                }),
                ..Default::default()
            },
            sandbox: SandboxFacts {
                id: "pod1".into(),
                hostname: "pod-host".into(),
                netns: Some("/run/carapace/pods/pod1/ns/net".into()),
                ipc_ns: Some("/run/carapace/pods/pod1/ns/ipc".into()),
                uts_ns: Some("/run/carapace/pods/pod1/ns/uts".into()),
                user_ns: None,
                infra_pid: 4242,
                pod_dir: "/run/carapace/pods/pod1".into(),
                shm: Some("/run/carapace/pods/pod1/shm".into()),
                cgroup_parent: "/kubepods/besteffort/podabc".into(),
                systemd_cgroup: false,
                cgroup_v2: false,
                pod_security: None,
            },
            image: ImageFacts {
                image_name: "docker.io/library/busybox:latest".into(),
                config: json!({"Cmd": ["sh"], "Env": ["PATH=/usr/bin:/bin"]}),
                passwd: Some(PASSWD.into()),
                group: Some(GROUP.into()),
            },
            target_pid: None,
            devices: Vec::new(),
            seccomp_localhost: None,
            apparmor: Default::default(),
            selinux: None,
            image_mounts: Vec::new(),
        }
    }

    fn sc(&mut self) -> &mut cri::LinuxContainerSecurityContext {
        self.config
            .linux
            .get_or_insert_with(Default::default)
            .security_context
            .get_or_insert_with(Default::default)
    }

    fn ns_opts(&mut self) -> &mut cri::NamespaceOption {
        self.sc()
            .namespace_options
            .get_or_insert_with(Default::default)
    }

    fn res(&mut self) -> &mut cri::LinuxContainerResources {
        self.config
            .linux
            .get_or_insert_with(Default::default)
            .resources
            .get_or_insert_with(Default::default)
    }

    fn privileged_pod(&mut self) {
        self.sandbox.pod_security = Some(cri::LinuxSandboxSecurityContext {
            privileged: true,
            ..Default::default()
        });
    }

    fn image_key(&mut self, key: &str, v: Value) {
        self.image.config[key] = v;
    }

    fn mount(&mut self, container: &str, host: &str) -> &mut cri::Mount {
        self.config.mounts.push(cri::Mount {
            container_path: container.into(),
            host_path: host.into(),
            ..Default::default()
        });
        self.config.mounts.last_mut().expect("just pushed")
    }

    fn try_build(&self) -> Result<BuiltSpec, SpecError> {
        build(&SpecInput {
            id: "ctr1",
            config: &self.config,
            sandbox: &self.sandbox,
            image: &self.image,
            rootfs: "/var/lib/carapace/containers/ctr1/rootfs".into(),
            volumes_dir: "/var/lib/carapace/containers/ctr1/volumes".into(),
            image_mounts: self.image_mounts.clone(),
            target_pid: self.target_pid,
            devices: self.devices.clone(),
            seccomp_localhost: self.seccomp_localhost.clone(),
            host_caps: super::security::ALL_CAPS.to_vec(),
            apparmor: self.apparmor.clone(),
            selinux: self.selinux.clone(),
        })
    }

    fn built(&self) -> BuiltSpec {
        self.try_build().unwrap_or_else(|e| panic!("build: {e}"))
    }

    fn json(&self) -> Value {
        serde_json::to_value(&self.built().spec).expect("spec serializes")
    }

    fn err(&self) -> SpecError {
        match self.try_build() {
            Ok(_) => panic!("expected an error"),
            Err(e) => e,
        }
    }
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn dsts(spec: &Value) -> Vec<String> {
    spec["mounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .map(|m| m["destination"].as_str().expect("destination").to_string())
        .collect()
}

fn mounts_at<'a>(spec: &'a Value, dst: &str) -> Vec<&'a Value> {
    spec["mounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .filter(|m| m["destination"] == dst)
        .collect()
}

fn mount_at<'a>(spec: &'a Value, dst: &str) -> &'a Value {
    let m = mounts_at(spec, dst);
    assert_eq!(m.len(), 1, "mounts at {dst}: {m:?}");
    m[0]
}

fn namespaces(spec: &Value) -> Vec<(String, Option<String>)> {
    spec["linux"]["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .map(|n| {
            (
                n["type"].as_str().expect("type").to_string(),
                n["path"].as_str().map(String::from),
            )
        })
        .collect()
}

fn caps(spec: &Value, set: &str) -> BTreeSet<String> {
    strs(&spec["process"]["capabilities"][set])
        .into_iter()
        .collect()
}

#[test]
fn spec_round_trips_through_json() {
    let mut plain = Fx::new();
    plain.mount("/data", "/srv/data").propagation =
        cri::MountPropagation::PropagationHostToContainer as i32;
    let mut full = Fx::new();
    full.privileged_pod();
    full.sc().privileged = true;
    full.sc().run_as_user = Some(cri::Int64Value { value: 1000 });
    full.res().memory_limit_in_bytes = 1 << 20;
    full.res()
        .unified
        .insert("memory.high".into(), "1000000".into());
    full.ns_opts().userns_options = Some(userns(cri::NamespaceMode::Pod));
    full.sandbox.user_ns = Some("/run/carapace/pods/pod1/ns/user".into());
    full.sandbox.pod_security = Some(cri::LinuxSandboxSecurityContext {
        privileged: true,
        namespace_options: Some(cri::NamespaceOption {
            userns_options: Some(userns(cri::NamespaceMode::Pod)),
            ..Default::default()
        }),
        ..Default::default()
    });
    let mut seccomp = Fx::new();
    seccomp.sc().seccomp = Some(cri::SecurityProfile::default());
    for fx in [plain, full, seccomp] {
        let spec = fx.built().spec;
        let text = serde_json::to_string(&spec).expect("serialize");
        let back: Spec = serde_json::from_str(&text).expect("parse back");
        assert_eq!(back, spec);
    }
}

#[test]
fn minimal_container_gets_containerds_defaults() {
    let fx = Fx::new();
    let b = fx.built();
    let s = serde_json::to_value(&b.spec).expect("json");
    assert_eq!(s["ociVersion"], OCI_VERSION);
    assert_eq!(
        s["root"],
        json!({"path": "/var/lib/carapace/containers/ctr1/rootfs", "readonly": false})
    );
    assert_eq!(s["process"]["args"], json!(["sh"]));
    assert_eq!(s["process"]["cwd"], "/");
    assert_eq!(s["process"]["terminal"], false);
    assert_eq!(
        s["process"]["env"],
        json!(["PATH=/usr/bin:/bin", "HOSTNAME=pod-host"])
    );
    assert_eq!(
        s["process"]["user"],
        json!({"uid": 0, "gid": 0, "additionalGids": [0]})
    );
    assert!(s["process"].get("rlimits").is_none());
    assert!(s["process"].get("noNewPrivileges").is_none());
    assert!(s["process"].get("oomScoreAdj").is_none());
    assert!(s["process"].get("apparmorProfile").is_none());
    assert!(s.get("hostname").is_none());
    assert!(s.get("hooks").is_none());
    assert!(s["linux"].get("sysctl").is_none());
    assert!(s["linux"].get("seccomp").is_none());
    assert!(s["linux"].get("rootfsPropagation").is_none());
    assert_eq!(
        s["linux"]["cgroupsPath"],
        "/kubepods/besteffort/podabc/ctr1"
    );
    assert_eq!(caps(&s, "bounding").len(), 14);
    assert_eq!(b.stop_signal, "SIGTERM");
    assert!(b.volumes.is_empty());
    assert_eq!(
        b.user,
        ResolvedUser {
            uid: 0,
            gid: 0,
            additional_gids: vec![0],
            username: Some("root".into())
        }
    );
}

#[test]
fn args_cwd_tty_and_env_come_from_request_and_image() {
    let mut fx = Fx::new();
    fx.image_key("Entrypoint", json!(["/entry"]));
    fx.image_key("WorkingDir", json!("/work"));
    assert_eq!(fx.json()["process"]["args"], json!(["/entry", "sh"]));
    assert_eq!(fx.json()["process"]["cwd"], "/work");
    fx.config.args = vec!["-x".into()];
    assert_eq!(fx.json()["process"]["args"], json!(["/entry", "-x"]));
    fx.config.command = vec!["/bin/true".into()];
    fx.config.args.clear();
    fx.config.working_dir = "/tmp".into();
    fx.config.tty = true;
    fx.config.envs = vec![cri::KeyValue {
        key: "PATH".into(),
        value: "/opt".into(),
    }];
    let s = fx.json();
    assert_eq!(s["process"]["args"], json!(["/bin/true"]));
    assert_eq!(s["process"]["cwd"], "/tmp");
    assert_eq!(s["process"]["terminal"], true);
    assert_eq!(
        s["process"]["env"],
        json!(["PATH=/opt", "HOSTNAME=pod-host"])
    );

    let mut none = Fx::new();
    none.image.config = Value::Null;
    let e = none.err();
    assert!(matches!(e, SpecError::NoCommand));
    assert_eq!(e.kind(), crate::error_kind::ErrorKind::InvalidArgument);
}

#[test]
fn malformed_image_config_is_a_failed_precondition() {
    let mut fx = Fx::new();
    fx.image_key("Env", json!("not a list"));
    let e = fx.err();
    assert!(matches!(e, SpecError::BadImageConfig(_)));
    assert_eq!(e.kind(), crate::error_kind::ErrorKind::FailedPrecondition);
}

#[test]
fn stop_signal_is_the_images_or_sigterm() {
    let mut fx = Fx::new();
    for (sig, want) in [
        (json!("SIGQUIT"), "SIGQUIT"),
        (json!(""), "SIGTERM"),
        (Value::Null, "SIGTERM"),
    ] {
        fx.image_key("StopSignal", sig);
        assert_eq!(fx.built().stop_signal, want);
    }
}

#[test]
fn user_comes_from_security_context_or_image() {
    // (image User, run_as_user, run_as_username, run_as_group, uid, gid, gids)
    type Case<'a> = (
        &'a str,
        Option<i64>,
        &'a str,
        Option<i64>,
        u32,
        u32,
        &'a [u32],
    );
    let table: &[Case] = &[
        ("", None, "", None, 0, 0, &[0]),
        ("app", None, "", None, 1000, 1000, &[1000, 2000]),
        ("1000:5", None, "", None, 1000, 5, &[5, 2000]),
        ("app", Some(0), "", None, 0, 0, &[0]),
        ("", Some(1000), "", Some(7), 1000, 7, &[7, 2000]),
        ("", None, "app", None, 1000, 1000, &[1000, 2000]),
        ("", Some(3000), "", None, 3000, 0, &[0]),
    ];
    for (img, uid, name, gid, want_uid, want_gid, gids) in table {
        let mut fx = Fx::new();
        fx.image_key("User", json!(img));
        fx.sc().run_as_user = uid.map(|value| cri::Int64Value { value });
        fx.sc().run_as_username = name.to_string();
        fx.sc().run_as_group = gid.map(|value| cri::Int64Value { value });
        let b = fx.built();
        let s = serde_json::to_value(&b.spec).expect("json");
        let case = format!("image={img:?} uid={uid:?} name={name:?} gid={gid:?}");
        assert_eq!(s["process"]["user"]["uid"], *want_uid, "{case}");
        assert_eq!(s["process"]["user"]["gid"], *want_gid, "{case}");
        assert_eq!(
            s["process"]["user"]["additionalGids"],
            json!(gids),
            "{case}"
        );
        assert_eq!((b.user.uid, b.user.gid), (*want_uid, *want_gid), "{case}");
        assert_eq!(b.user.additional_gids, gids.to_vec(), "{case}");
    }
}

#[test]
fn user_errors_map_to_grpc_codes() {
    let mut fx = Fx::new();
    fx.image_key("User", json!("ghost"));
    assert_eq!(
        fx.err().kind(),
        crate::error_kind::ErrorKind::FailedPrecondition
    );
    let mut fx = Fx::new();
    fx.sc().run_as_group = Some(cri::Int64Value { value: 5 });
    assert!(matches!(fx.err(), SpecError::GroupWithoutUser(5)));
    let mut fx = Fx::new();
    fx.sc().run_as_user = Some(cri::Int64Value { value: 1000 });
    fx.sc().supplemental_groups = vec![3000];
    fx.sc().supplemental_groups_policy = cri::SupplementalGroupsPolicy::Strict as i32;
    assert_eq!(fx.built().user.additional_gids, vec![1000, 3000]);
    fx.sc().supplemental_groups_policy = cri::SupplementalGroupsPolicy::Merge as i32;
    assert_eq!(fx.built().user.additional_gids, vec![1000, 2000, 3000]);
}

#[test]
fn namespaces_follow_the_pod_and_pid_mode() {
    let pod_ns = |kind: &str| {
        (
            kind.to_string(),
            Some(format!("/run/carapace/pods/pod1/ns/{kind}")),
        )
    };
    let net = (
        "network".to_string(),
        Some("/run/carapace/pods/pod1/ns/net".to_string()),
    );
    let mnt = ("mount".to_string(), None);
    // (pid mode, target pid, expected pid entry)
    type Case = (
        cri::NamespaceMode,
        Option<u32>,
        Option<(String, Option<String>)>,
    );
    let table: &[Case] = &[
        (
            cri::NamespaceMode::Pod,
            None,
            Some(("pid".into(), Some("/proc/4242/ns/pid".into()))),
        ),
        (
            cri::NamespaceMode::Container,
            None,
            Some(("pid".into(), None)),
        ),
        (cri::NamespaceMode::Node, None, None),
        (
            cri::NamespaceMode::Target,
            Some(77),
            Some(("pid".into(), Some("/proc/77/ns/pid".into()))),
        ),
    ];
    for (mode, target, pid) in table {
        let mut fx = Fx::new();
        fx.ns_opts().pid = *mode as i32;
        fx.ns_opts().target_id = "other".into();
        fx.target_pid = *target;
        let mut want = vec![mnt.clone()];
        want.extend(pid.clone());
        want.extend([net.clone(), pod_ns("ipc"), pod_ns("uts")]);
        assert_eq!(namespaces(&fx.json()), want, "pid mode {mode:?}");
    }
}

#[test]
fn host_namespaces_are_left_out_and_cgroupns_is_v2_only() {
    let mut fx = Fx::new();
    fx.sandbox.netns = None;
    fx.sandbox.ipc_ns = None;
    fx.sandbox.uts_ns = None;
    fx.ns_opts().pid = cri::NamespaceMode::Node as i32;
    assert_eq!(namespaces(&fx.json()), vec![("mount".to_string(), None)]);
    fx.sandbox.cgroup_v2 = true;
    assert_eq!(
        namespaces(&fx.json()),
        vec![("mount".to_string(), None), ("cgroup".to_string(), None)]
    );
    fx.privileged_pod();
    fx.sc().privileged = true;
    assert_eq!(namespaces(&fx.json()), vec![("mount".to_string(), None)]);
}

#[test]
fn pid_namespace_errors() {
    let mut fx = Fx::new();
    fx.ns_opts().pid = cri::NamespaceMode::Target as i32;
    fx.ns_opts().target_id = "other".into();
    for pid in [None, Some(0)] {
        fx.target_pid = pid;
        let e = fx.err();
        assert!(matches!(&e, SpecError::TargetNotRunning(t) if t == "other"));
        assert_eq!(e.kind(), crate::error_kind::ErrorKind::FailedPrecondition);
    }
    fx.ns_opts().target_id.clear();
    fx.target_pid = Some(5);
    assert_eq!(
        fx.err().kind(),
        crate::error_kind::ErrorKind::InvalidArgument
    );

    let mut fx = Fx::new();
    fx.sandbox.infra_pid = 0;
    assert!(matches!(fx.err(), SpecError::SandboxNotRunning(_)));
    fx.ns_opts().pid = cri::NamespaceMode::Container as i32;
    assert!(fx.try_build().is_ok());
    fx.ns_opts().pid = 9;
    assert_eq!(
        fx.err().kind(),
        crate::error_kind::ErrorKind::InvalidArgument
    );
}

fn userns(mode: cri::NamespaceMode) -> cri::UserNamespace {
    let m = vec![cri::IdMapping {
        host_id: 200000,
        container_id: 0,
        length: 65536,
    }];
    cri::UserNamespace {
        mode: mode as i32,
        uids: m.clone(),
        gids: m,
    }
}

#[test]
fn pod_user_namespace_is_joined_and_idmaps_image_volumes() {
    let mut fx = Fx::new();
    fx.ns_opts().userns_options = Some(userns(cri::NamespaceMode::Pod));
    // A pod without a pinned user namespace has none to join.
    assert!(matches!(fx.err(), SpecError::InvalidNamespaces(_)));
    fx.sandbox.user_ns = Some("/run/carapace/pods/pod1/ns/user".into());
    fx.image.config["Volumes"] = json!({"/data": {}});
    let s = fx.json();
    assert_eq!(
        namespaces(&s).last(),
        Some(&(
            "user".to_string(),
            Some("/run/carapace/pods/pod1/ns/user".to_string())
        ))
    );
    let mapping = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    assert_eq!(s["linux"]["uidMappings"], mapping);
    assert_eq!(s["linux"]["gidMappings"], mapping);
    assert_eq!(mount_at(&s, "/data")["uidMappings"], mapping);
    // The pod's files and shm are owned by the pod's root instead.
    for dst in [
        "/etc/hosts",
        "/etc/resolv.conf",
        "/etc/hostname",
        "/dev/shm",
    ] {
        assert!(mount_at(&s, dst).get("uidMappings").is_none(), "{dst}");
    }
    // Empty masked/readonly lists mean Unmasked in a user namespace.
    assert_eq!(s["linux"]["maskedPaths"], json!([]));

    // NODE means the host's user namespace.
    fx.ns_opts().userns_options = Some(userns(cri::NamespaceMode::Node));
    let s = fx.json();
    assert!(!namespaces(&s).iter().any(|(t, _)| t == "user"));
    assert!(s["linux"].get("uidMappings").is_none());
}

#[test]
fn user_namespace_errors() {
    let mut fx = Fx::new();
    fx.ns_opts().userns_options = Some(userns(cri::NamespaceMode::Container));
    assert_eq!(
        fx.err().kind(),
        crate::error_kind::ErrorKind::InvalidArgument
    );
    let mut no_maps = userns(cri::NamespaceMode::Pod);
    no_maps.gids.clear();
    fx.ns_opts().userns_options = Some(no_maps);
    assert_eq!(
        fx.err().kind(),
        crate::error_kind::ErrorKind::InvalidArgument
    );
    // One range each, mapping container root.
    let mut two = userns(cri::NamespaceMode::Pod);
    let extra = cri::IdMapping {
        container_id: 65536,
        host_id: 500000,
        length: 10,
    };
    two.uids.push(extra);
    fx.ns_opts().userns_options = Some(two);
    assert_eq!(
        fx.err().kind(),
        crate::error_kind::ErrorKind::InvalidArgument
    );
    let mut rootless = userns(cri::NamespaceMode::Pod);
    rootless.uids[0].container_id = 1;
    fx.ns_opts().userns_options = Some(rootless);
    assert_eq!(
        fx.err().kind(),
        crate::error_kind::ErrorKind::InvalidArgument
    );
    fx.sandbox.user_ns = Some("/run/carapace/pods/pod1/ns/user".into());
    // The container's user namespace must be its pod's.
    fx.ns_opts().userns_options = Some(userns(cri::NamespaceMode::Pod));
    fx.sandbox.pod_security = Some(Default::default());
    assert!(matches!(fx.err(), SpecError::InvalidNamespaces(_)));
    fx.sandbox.pod_security = Some(cri::LinuxSandboxSecurityContext {
        namespace_options: Some(cri::NamespaceOption {
            userns_options: Some(userns(cri::NamespaceMode::Pod)),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert!(fx.try_build().is_ok());
}

const DEFAULT_DSTS: [&str; 10] = [
    "/proc",
    "/dev",
    "/dev/pts",
    "/dev/mqueue",
    "/sys",
    "/sys/fs/cgroup",
    "/etc/hostname",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/dev/shm",
];

#[test]
fn default_mounts_and_pod_files() {
    let s = Fx::new().json();
    assert_eq!(dsts(&s), DEFAULT_DSTS);
    assert_eq!(
        *mount_at(&s, "/dev/pts"),
        json!({
            "destination": "/dev/pts", "type": "devpts", "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]
        })
    );
    assert_eq!(
        strs(&mount_at(&s, "/sys")["options"])
            .last()
            .map(String::as_str),
        Some("ro")
    );
    assert_eq!(
        strs(&mount_at(&s, "/sys/fs/cgroup")["options"]),
        ["nosuid", "noexec", "nodev", "relatime", "ro"]
    );
    for (dst, src) in [
        ("/etc/hostname", "/run/carapace/pods/pod1/hostname"),
        ("/etc/hosts", "/run/carapace/pods/pod1/hosts"),
        ("/etc/resolv.conf", "/run/carapace/pods/pod1/resolv.conf"),
        ("/dev/shm", "/run/carapace/pods/pod1/shm"),
    ] {
        assert_eq!(
            *mount_at(&s, dst),
            json!({"destination": dst, "type": "bind", "source": src,
                   "options": ["rbind", "rprivate", "rw"]}),
            "{dst}"
        );
    }
}

#[test]
fn readonly_rootfs_makes_pod_files_readonly_but_not_shm() {
    let mut fx = Fx::new();
    fx.sc().readonly_rootfs = true;
    let s = fx.json();
    assert_eq!(s["root"]["readonly"], true);
    for dst in ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"] {
        assert_eq!(strs(&mount_at(&s, dst)["options"])[2], "ro", "{dst}");
    }
    assert_eq!(strs(&mount_at(&s, "/dev/shm")["options"])[2], "rw");
}

#[test]
fn host_ipc_binds_the_hosts_dev_shm() {
    let mut fx = Fx::new();
    fx.sandbox.shm = None;
    fx.sandbox.ipc_ns = None;
    assert_eq!(mount_at(&fx.json(), "/dev/shm")["source"], "/dev/shm");
}

#[test]
fn cri_mounts_replace_pod_files_and_defaults() {
    let mut fx = Fx::new();
    fx.mount("/etc/hosts/", "/custom/hosts");
    fx.mount("/dev/shm", "/custom/shm");
    fx.mount("/proc", "/custom/proc");
    let s = fx.json();
    assert_eq!(mount_at(&s, "/etc/hosts/")["source"], "/custom/hosts");
    assert!(mounts_at(&s, "/etc/hosts").is_empty());
    assert_eq!(mount_at(&s, "/dev/shm")["source"], "/custom/shm");
    assert_eq!(mount_at(&s, "/proc")["type"], "bind");

    // A /dev mount drops every default below /dev, not the pod's shm.
    let mut fx = Fx::new();
    fx.mount("/dev", "/custom/dev");
    let d = dsts(&fx.json());
    assert_eq!(
        d,
        [
            "/proc",
            "/sys",
            "/sys/fs/cgroup",
            "/dev",
            "/etc/hostname",
            "/etc/hosts",
            "/etc/resolv.conf",
            "/dev/shm"
        ]
    );
}

#[test]
fn mount_propagation_sets_rootfs_propagation() {
    use cri::MountPropagation as P;
    // (propagations of the CRI mounts, their options, rootfsPropagation)
    let table: &[(&[P], &[&str], Option<&str>)] = &[
        (&[P::PropagationPrivate], &["rprivate"], None),
        (
            &[P::PropagationHostToContainer],
            &["rslave"],
            Some("rslave"),
        ),
        (
            &[P::PropagationBidirectional],
            &["rshared"],
            Some("rshared"),
        ),
        (
            &[P::PropagationBidirectional, P::PropagationHostToContainer],
            &["rshared", "rslave"],
            Some("rshared"),
        ),
        (
            &[P::PropagationHostToContainer, P::PropagationBidirectional],
            &["rslave", "rshared"],
            Some("rshared"),
        ),
    ];
    for (props, opts, rootfs) in table {
        let mut fx = Fx::new();
        for (i, p) in props.iter().enumerate() {
            fx.mount(&format!("/m{i}"), &format!("/h{i}")).propagation = *p as i32;
        }
        let s = fx.json();
        for (i, o) in opts.iter().enumerate() {
            assert_eq!(
                strs(&mount_at(&s, &format!("/m{i}"))["options"]),
                ["rbind", o, "rw"],
                "{props:?}"
            );
        }
        assert_eq!(
            s["linux"]["rootfsPropagation"].as_str(),
            *rootfs,
            "{props:?}"
        );
    }
}

#[test]
fn readonly_and_recursive_readonly_mounts() {
    let mut fx = Fx::new();
    fx.mount("/ro", "/h/ro").readonly = true;
    let m = fx.mount("/rro", "/h/rro");
    m.readonly = true;
    m.recursive_read_only = true;
    let s = fx.json();
    assert_eq!(
        strs(&mount_at(&s, "/ro")["options"]),
        ["rbind", "rprivate", "ro"]
    );
    assert_eq!(
        strs(&mount_at(&s, "/rro")["options"]),
        ["rbind", "rprivate", "rro"]
    );

    let mut fx = Fx::new();
    fx.mount("/rro", "/h").recursive_read_only = true;
    assert_eq!(
        fx.err().kind(),
        crate::error_kind::ErrorKind::InvalidArgument
    );
    let mut fx = Fx::new();
    let m = fx.mount("/rro", "/h");
    m.readonly = true;
    m.recursive_read_only = true;
    m.propagation = cri::MountPropagation::PropagationHostToContainer as i32;
    assert_eq!(
        fx.err().kind(),
        crate::error_kind::ErrorKind::InvalidArgument
    );
}

#[test]
fn malformed_mounts_are_rejected() {
    // (container path, host path, image mount, code)
    let table: &[(&str, &str, bool, crate::error_kind::ErrorKind)] = &[
        (
            "",
            "/h",
            false,
            crate::error_kind::ErrorKind::InvalidArgument,
        ),
        (
            "rel",
            "/h",
            false,
            crate::error_kind::ErrorKind::InvalidArgument,
        ),
        (
            "/c",
            "",
            false,
            crate::error_kind::ErrorKind::InvalidArgument,
        ),
        (
            "/c",
            "rel",
            false,
            crate::error_kind::ErrorKind::InvalidArgument,
        ),
        // An image mount the caller did not mount first: our bug.
        ("/c", "", true, crate::error_kind::ErrorKind::Internal),
        (
            "/c",
            "/h",
            true,
            crate::error_kind::ErrorKind::InvalidArgument,
        ),
        (
            "rel",
            "",
            true,
            crate::error_kind::ErrorKind::InvalidArgument,
        ),
    ];
    for (c, h, image, code) in table {
        let mut fx = Fx::new();
        fx.mount(c, h).image = image.then(|| cri::ImageSpec {
            image: "sha256:abc".into(),
            ..Default::default()
        });
        assert_eq!(fx.err().kind(), *code, "{c:?} {h:?}");
    }
}

#[test]
fn image_mounts_bind_their_mounted_image_read_only_without_privileges() {
    let mut fx = Fx::new();
    fx.mount("/data", "/h/data");
    for dst in ["/models", "/tools"] {
        fx.mount(dst, "").image = Some(cri::ImageSpec {
            image: "sha256:abc".into(),
            ..Default::default()
        });
    }
    fx.image_mounts = vec![
        "/run/c/ctr1/image-volumes/0".into(),
        "/run/c/ctr1/image-volumes/1".into(),
    ];
    let b = fx.built();
    let mounts = b.spec.mounts().clone().unwrap_or_default();
    for (dst, src) in [
        ("/models", "/run/c/ctr1/image-volumes/0"),
        ("/tools", "/run/c/ctr1/image-volumes/1"),
    ] {
        let m = mounts
            .iter()
            .find(|m| m.destination() == std::path::Path::new(dst))
            .unwrap_or_else(|| panic!("no mount at {dst}: {mounts:?}"));
        assert_eq!(m.source().as_deref(), Some(std::path::Path::new(src)));
        let opts = m.options().clone().unwrap_or_default();
        for want in ["rbind", "rprivate", "ro", "nosuid", "nodev"] {
            assert!(
                opts.iter().any(|o| o == want),
                "{dst}: {want} missing from {opts:?}"
            );
        }
        assert!(!opts.iter().any(|o| o == "noexec"), "{opts:?}");
    }
    let data = mounts
        .iter()
        .find(|m| m.destination() == std::path::Path::new("/data"))
        .expect("the host mount");
    assert!(!data
        .options()
        .clone()
        .unwrap_or_default()
        .iter()
        .any(|o| o == "nosuid"));
}

#[test]
fn image_volumes_get_host_dirs_unless_a_cri_mount_covers_them() {
    let mut fx = Fx::new();
    fx.image_key(
        "Volumes",
        json!({"/var/cache": {}, "/data": {}, "logs": {}}),
    );
    let b = fx.built();
    let vol = |n: &str| PathBuf::from(format!("/var/lib/carapace/containers/ctr1/volumes/{n}"));
    assert_eq!(
        b.volumes,
        vec![
            (vol("data"), "/data".to_string()),
            (vol("logs"), "/logs".to_string()),
            (vol("var_cache"), "/var/cache".to_string()),
        ]
    );
    let s = serde_json::to_value(&b.spec).expect("json");
    assert_eq!(
        *mount_at(&s, "/var/cache"),
        json!({"destination": "/var/cache", "type": "bind",
               "source": "/var/lib/carapace/containers/ctr1/volumes/var_cache",
               "options": ["rbind", "rprivate", "rw"]})
    );

    fx.mount("/data/", "/srv/data");
    let b = fx.built();
    assert_eq!(b.volumes.len(), 2);
    assert!(b.volumes.iter().all(|(_, c)| c != "/data"));
    let s = serde_json::to_value(&b.spec).expect("json");
    assert_eq!(mount_at(&s, "/data/")["source"], "/srv/data");
    assert!(mounts_at(&s, "/data").is_empty());

    let mut fx = Fx::new();
    fx.image_key("Volumes", json!({"/": {}}));
    assert_eq!(
        fx.err().kind(),
        crate::error_kind::ErrorKind::InvalidArgument
    );
}

#[test]
fn mounts_are_sorted_parents_first_keeping_order_otherwise() {
    let mut fx = Fx::new();
    fx.mount("/a/b/c", "/h/abc");
    fx.mount("/z", "/h/z");
    fx.mount("/a", "/h/a");
    fx.mount("/a/b", "/h/ab");
    fx.image_key("Volumes", json!({"/a/b/v": {}}));
    let d = dsts(&fx.json());
    assert_eq!(
        d[6..],
        [
            "/z",
            "/a",
            "/a/b",
            "/etc/hostname",
            "/etc/hosts",
            "/etc/resolv.conf",
            "/dev/shm",
            "/a/b/c",
            "/a/b/v"
        ]
    );
}

fn device(host: &str, container: &str, perms: &str, major: i64, minor: i64) -> DeviceFacts {
    DeviceFacts {
        host_path: host.into(),
        container_path: container.into(),
        permissions: perms.into(),
        kind: DeviceKind::Char,
        major,
        minor,
        file_mode: 0o666,
        uid: 0,
        gid: 5,
    }
}

#[test]
fn devices_are_created_and_allowed() {
    let mut fx = Fx::new();
    fx.devices = vec![
        device("/dev/fuse", "/dev/fuse", "rwm", 10, 229),
        device("/dev/kvm", "", "rw", 10, 232),
        device("/dev/other", "/dev/fuse", "r", 1, 1),
    ];
    let s = fx.json();
    assert_eq!(
        s["linux"]["devices"],
        json!([
            {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
             "fileMode": 0o666, "uid": 0, "gid": 5},
            {"path": "/dev/kvm", "type": "c", "major": 10, "minor": 232,
             "fileMode": 0o666, "uid": 0, "gid": 5},
        ])
    );
    let rules = s["linux"]["resources"]["devices"]
        .as_array()
        .expect("rules");
    assert_eq!(rules[0], json!({"allow": false, "access": "rwm"}));
    assert!(rules
        .contains(&json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"})));
    assert!(rules.contains(&json!({"allow": true, "type": "c", "major": 136, "access": "rwm"})));
    assert!(rules.contains(
        &json!({"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rwm"})
    ));
    assert!(rules
        .contains(&json!({"allow": true, "type": "c", "major": 10, "minor": 232, "access": "rw"})));
    assert!(!rules
        .contains(&json!({"allow": true, "type": "c", "major": 1, "minor": 1, "access": "r"})));

    for bad in ["", "rwx"] {
        fx.devices = vec![device("/dev/fuse", "", bad, 10, 229)];
        assert_eq!(
            fx.err().kind(),
            crate::error_kind::ErrorKind::InvalidArgument,
            "{bad:?}"
        );
    }
    fx.devices = vec![device("/dev/fuse", "fuse", "rw", 10, 229)];
    assert_eq!(
        fx.err().kind(),
        crate::error_kind::ErrorKind::InvalidArgument
    );
}

#[test]
fn privileged_allows_all_devices() {
    let mut fx = Fx::new();
    fx.privileged_pod();
    fx.sc().privileged = true;
    fx.devices = vec![device("/dev/sda", "", "rwm", 8, 0)];
    fx.devices[0].kind = DeviceKind::Block;
    let s = fx.json();
    assert_eq!(
        s["linux"]["resources"]["devices"],
        json!([{"allow": true, "access": "rwm"}])
    );
    assert_eq!(s["linux"]["devices"][0]["type"], "b");
}

#[test]
fn resources_map_to_cgroup_settings() {
    // (field setter, expected linux.resources excerpt, expected oomScoreAdj)
    type Set = fn(&mut cri::LinuxContainerResources);
    let table: &[(Set, Value, Option<i64>)] = &[
        (|_| {}, json!({}), Some(0)),
        (
            |r| {
                r.cpu_shares = 512;
                r.cpu_quota = 50000;
                r.cpu_period = 100000;
                r.cpuset_cpus = "0-1".into();
                r.cpuset_mems = "0".into();
            },
            json!({"cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0"}}),
            Some(0),
        ),
        (|r| r.cpu_quota = 0, json!({}), Some(0)),
        (
            |r| r.memory_limit_in_bytes = 1 << 30,
            json!({"memory": {"limit": 1073741824i64, "swap": 1073741824i64}}),
            Some(0),
        ),
        (
            |r| {
                r.memory_limit_in_bytes = 1 << 30;
                r.memory_swap_limit_in_bytes = 2 << 30;
            },
            json!({"memory": {"limit": 1073741824i64, "swap": 2147483648i64}}),
            Some(0),
        ),
        (
            |r| {
                r.hugepage_limits = vec![cri::HugepageLimit {
                    page_size: "2MB".into(),
                    limit: 4194304,
                }];
            },
            json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]}),
            Some(0),
        ),
        (
            |r| {
                r.unified.insert("memory.high".into(), "123".into());
            },
            json!({"unified": {"memory.high": "123"}}),
            Some(0),
        ),
        (|r| r.oom_score_adj = -998, json!({}), Some(-998)),
    ];
    for (i, (set, want, oom)) in table.iter().enumerate() {
        let mut fx = Fx::new();
        set(fx.res());
        let s = fx.json();
        let mut got = s["linux"]["resources"].clone();
        got.as_object_mut().expect("resources").remove("devices");
        assert_eq!(got, *want, "case {i}");
        assert_eq!(s["process"]["oomScoreAdj"].as_i64(), *oom, "case {i}");
    }
    // Without a resources message there is no oomScoreAdj.
    assert!(Fx::new().json()["process"].get("oomScoreAdj").is_none());
}

#[test]
fn out_of_range_resources_are_invalid() {
    type Set = fn(&mut cri::LinuxContainerResources);
    let table: &[Set] = &[
        |r| r.cpu_shares = -2,
        |r| r.cpu_period = -1,
        |r| r.oom_score_adj = 1001,
        |r| r.oom_score_adj = i64::MIN,
        |r| {
            r.hugepage_limits = vec![cri::HugepageLimit {
                page_size: "1GB".into(),
                limit: u64::MAX,
            }]
        },
        |r| {
            r.hugepage_limits = vec![cri::HugepageLimit {
                page_size: String::new(),
                limit: 1,
            }]
        },
    ];
    for (i, set) in table.iter().enumerate() {
        let mut fx = Fx::new();
        set(fx.res());
        let e = fx.err();
        assert!(matches!(e, SpecError::InvalidResources(_)), "case {i}: {e}");
        assert_eq!(e.kind(), crate::error_kind::ErrorKind::InvalidArgument);
    }
}

#[test]
fn privileged_versus_unprivileged() {
    let unpriv = Fx::new().json();
    let mut fx = Fx::new();
    fx.privileged_pod();
    fx.sc().privileged = true;
    fx.sc().seccomp = Some(cri::SecurityProfile::default());
    fx.sc().masked_paths = vec!["/proc/kcore".into()];
    let priv_ = fx.json();

    assert_eq!(caps(&unpriv, "bounding").len(), 14);
    assert_eq!(caps(&priv_, "bounding").len(), 41);
    assert_eq!(caps(&priv_, "effective").len(), 41);
    assert!(caps(&priv_, "bounding").contains("CAP_SYS_ADMIN"));
    assert_eq!(
        unpriv["linux"]["maskedPaths"].as_array().map(Vec::len),
        Some(11)
    );
    assert_eq!(
        unpriv["linux"]["readonlyPaths"].as_array().map(Vec::len),
        Some(5)
    );
    assert_eq!(priv_["linux"]["maskedPaths"], json!([]));
    assert_eq!(priv_["linux"]["readonlyPaths"], json!([]));
    for (s, mode) in [(&unpriv, "ro"), (&priv_, "rw")] {
        for dst in ["/sys", "/sys/fs/cgroup"] {
            assert_eq!(
                strs(&mount_at(s, dst)["options"])
                    .last()
                    .map(String::as_str),
                Some(mode),
                "{dst}"
            );
        }
    }
    assert!(priv_["linux"].get("seccomp").is_none());
    assert!(priv_["process"].get("noNewPrivileges").is_none());

    // A privileged container needs a privileged pod.
    let mut fx = Fx::new();
    fx.sc().privileged = true;
    assert!(matches!(fx.err(), SpecError::PrivilegedNotAllowed));
    fx.sandbox.pod_security = Some(Default::default());
    assert_eq!(
        fx.err().kind(),
        crate::error_kind::ErrorKind::InvalidArgument
    );
}

#[test]
fn capabilities_add_and_drop_all() {
    let mut fx = Fx::new();
    fx.sc().capabilities = Some(cri::Capability {
        add_capabilities: vec!["ALL".into()],
        drop_capabilities: vec!["NET_RAW".into(), "CAP_MKNOD".into()],
        add_ambient_capabilities: vec![],
    });
    let s = fx.json();
    assert_eq!(caps(&s, "bounding").len(), 39);
    assert!(!caps(&s, "permitted").contains("CAP_NET_RAW"));
    assert!(caps(&s, "ambient").is_empty());
    fx.sc().capabilities = Some(cri::Capability {
        add_capabilities: vec!["SYS_PTRACE".into()],
        drop_capabilities: vec!["ALL".into()],
        add_ambient_capabilities: vec![],
    });
    assert_eq!(
        caps(&fx.json(), "effective"),
        BTreeSet::from(["CAP_SYS_PTRACE".to_string()])
    );
}

#[test]
fn masked_and_readonly_paths_from_the_request() {
    let mut fx = Fx::new();
    fx.sc().masked_paths = vec!["/proc/x".into()];
    fx.sc().readonly_paths = vec!["/proc/y".into()];
    let s = fx.json();
    assert_eq!(s["linux"]["maskedPaths"], json!(["/proc/x"]));
    assert_eq!(s["linux"]["readonlyPaths"], json!(["/proc/y"]));
}

#[test]
fn no_new_privs_sets_no_new_privileges() {
    let mut fx = Fx::new();
    fx.sc().no_new_privs = true;
    assert_eq!(fx.json()["process"]["noNewPrivileges"], true);
}

const LOCAL_PROFILE: &str = r#"{"defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [{"names": ["sethostname"], "action": "SCMP_ACT_ERRNO"}]}"#;

#[test]
fn seccomp_profile_types() {
    use cri::security_profile::ProfileType as T;
    let profile = |t: T, r: &str| {
        Some(cri::SecurityProfile {
            profile_type: t as i32,
            localhost_ref: r.into(),
        })
    };
    // (seccomp, deprecated path, localhost content, expected defaultAction)
    type Case = (
        Option<cri::SecurityProfile>,
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
    );
    let table: &[Case] = &[
        (None, "", None, None),
        (profile(T::Unconfined, ""), "", None, None),
        (
            profile(T::RuntimeDefault, ""),
            "",
            None,
            Some("SCMP_ACT_ERRNO"),
        ),
        (
            profile(T::Localhost, "/p.json"),
            "",
            Some(LOCAL_PROFILE),
            Some("SCMP_ACT_ALLOW"),
        ),
        (None, "runtime/default", None, Some("SCMP_ACT_ERRNO")),
        (None, "docker/default", None, Some("SCMP_ACT_ERRNO")),
        (None, "unconfined", None, None),
        (
            None,
            "localhost//p.json",
            Some(LOCAL_PROFILE),
            Some("SCMP_ACT_ALLOW"),
        ),
        // The SecurityProfile wins over the deprecated path.
        (profile(T::Unconfined, ""), "runtime/default", None, None),
    ];
    for (sp, path, content, want) in table {
        let mut fx = Fx::new();
        fx.sc().seccomp = sp.clone();
        #[allow(deprecated)]
        {
            fx.sc().seccomp_profile_path = path.to_string();
        }
        fx.seccomp_localhost = content.map(String::from);
        let s = fx.json();
        assert_eq!(
            s["linux"]["seccomp"]["defaultAction"].as_str(),
            *want,
            "{sp:?} {path:?}"
        );
    }
}

#[test]
fn seccomp_errors_and_localhost_ref() {
    use cri::security_profile::ProfileType as T;
    let mut fx = Fx::new();
    fx.sc().seccomp = Some(cri::SecurityProfile {
        profile_type: T::Localhost as i32,
        localhost_ref: "/profiles/p.json".into(),
    });
    assert_eq!(
        seccomp_localhost_ref(&fx.config).expect("ref").as_deref(),
        Some("/profiles/p.json")
    );
    let e = fx.err();
    assert!(matches!(&e, SpecError::SeccompProfileMissing(p) if p == "/profiles/p.json"));
    assert_eq!(e.kind(), crate::error_kind::ErrorKind::FailedPrecondition);
    fx.seccomp_localhost = Some("{not json".into());
    assert_eq!(
        fx.err().kind(),
        crate::error_kind::ErrorKind::InvalidArgument
    );
    fx.seccomp_localhost = Some(LOCAL_PROFILE.into());
    let syscalls = &fx.json()["linux"]["seccomp"]["syscalls"];
    assert_eq!(syscalls[0]["names"], json!(["sethostname"]));

    // Privileged containers need no profile.
    fx.privileged_pod();
    fx.sc().privileged = true;
    fx.seccomp_localhost = None;
    assert_eq!(seccomp_localhost_ref(&fx.config).expect("ref"), None);
    assert!(fx.try_build().is_ok());

    let table: &[(Option<cri::SecurityProfile>, &str)] = &[
        (
            Some(cri::SecurityProfile {
                profile_type: T::RuntimeDefault as i32,
                localhost_ref: "/p".into(),
            }),
            "",
        ),
        (
            Some(cri::SecurityProfile {
                profile_type: T::Localhost as i32,
                localhost_ref: String::new(),
            }),
            "",
        ),
        (
            Some(cri::SecurityProfile {
                profile_type: 9,
                localhost_ref: String::new(),
            }),
            "",
        ),
        (None, "bogus"),
        (None, "localhost/"),
    ];
    for (sp, path) in table {
        let mut fx = Fx::new();
        fx.sc().seccomp = sp.clone();
        #[allow(deprecated)]
        {
            fx.sc().seccomp_profile_path = path.to_string();
        }
        let e = fx.err();
        assert!(
            matches!(e, SpecError::InvalidSeccomp(_)),
            "{sp:?} {path:?}: {e}"
        );
    }
}

#[test]
fn runtime_default_seccomp_follows_added_capabilities() {
    let mut fx = Fx::new();
    fx.sc().seccomp = Some(cri::SecurityProfile::default());
    let allows_mount = |s: &Value| {
        s["linux"]["seccomp"]["syscalls"]
            .as_array()
            .expect("syscalls")
            .iter()
            .any(|r| {
                r["action"] == "SCMP_ACT_ALLOW" && strs(&r["names"]).contains(&"mount".to_string())
            })
    };
    assert!(!allows_mount(&fx.json()));
    fx.sc().capabilities = Some(cri::Capability {
        add_capabilities: vec!["SYS_ADMIN".into()],
        ..Default::default()
    });
    assert!(allows_mount(&fx.json()));
}

#[test]
fn apparmor_localhost_is_refused_without_apparmor_and_applied_with_it() {
    let mut fx = Fx::new();
    fx.sc().apparmor = Some(cri::SecurityProfile {
        profile_type: cri::security_profile::ProfileType::Localhost as i32,
        localhost_ref: "k8s-profile".into(),
    });
    assert!(matches!(fx.err(), SpecError::ApparmorUnsupported(_)));
    fx.apparmor = super::security::AppArmorFacts::Enabled {
        default: Ok(()),
        loaded: ["k8s-profile".to_string()].into_iter().collect(),
    };
    assert_eq!(fx.json()["process"]["apparmorProfile"], "k8s-profile");
    fx.sc().apparmor = Some(cri::SecurityProfile::default());
    assert_eq!(fx.json()["process"]["apparmorProfile"], "carapace-default");
    fx.apparmor = super::security::AppArmorFacts::Disabled;
    assert!(fx.json()["process"].get("apparmorProfile").is_none());
}

/// Where SELinux is on, the process and mount labels are the policy's
/// contexts at the pod's level, with the request's options laid over
/// them; a privileged container gets none; where SELinux is off the
/// options are ignored.
#[test]
fn selinux_labels_follow_the_node_and_the_options() {
    let mut fx = Fx::new();
    fx.sc().selinux_options = Some(cri::SeLinuxOption {
        r#type: "custom_t".into(),
        ..Default::default()
    });
    let j = fx.json();
    assert!(j["process"].get("selinuxLabel").is_none(), "{j}");
    assert!(j["linux"].get("mountLabel").is_none(), "{j}");
    fx.selinux = Some(crate::selinux::Contexts::default());
    let level = crate::selinux::pod_level(&fx.sandbox.id);
    let j = fx.json();
    assert_eq!(
        j["process"]["selinuxLabel"],
        format!("system_u:system_r:custom_t:{level}")
    );
    assert_eq!(
        j["linux"]["mountLabel"],
        format!("system_u:object_r:container_file_t:{level}")
    );
}

#[test]
fn cgroups_path_follows_the_driver() {
    // (parent, systemd, expected)
    let table: &[(&str, bool, Option<&str>)] = &[
        ("/kubepods/pod1", false, Some("/kubepods/pod1/ctr1")),
        ("/kubepods/pod1/", false, Some("/kubepods/pod1/ctr1")),
        (
            "kubepods-pod1.slice",
            true,
            Some("kubepods-pod1.slice:carapace:ctr1"),
        ),
        ("", false, None),
    ];
    for (parent, systemd, want) in table {
        let mut fx = Fx::new();
        fx.sandbox.cgroup_parent = parent.to_string();
        fx.sandbox.systemd_cgroup = *systemd;
        assert_eq!(
            fx.json()["linux"]["cgroupsPath"].as_str(),
            *want,
            "{parent}"
        );
    }
}

#[test]
fn annotations_carry_the_request_and_cri_keys() {
    let mut fx = Fx::new();
    for (k, v) in [
        ("team", "a"),
        ("io.kubernetes.cri.sandbox-id", "spoofed"),
        ("run.oci.hooks.stdout", "/etc/shadow"),
        ("org.criu.config", "/x"),
    ] {
        fx.config.annotations.insert(k.into(), v.into());
    }
    let s = fx.json();
    assert_eq!(
        s["annotations"],
        json!({
            "team": "a",
            "io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.sandbox-id": "pod1",
            "io.kubernetes.cri.container-name": "app",
            "io.kubernetes.cri.image-name": "docker.io/library/busybox:latest",
        })
    );
}

#[test]
fn error_codes_are_invalid_argument_or_failed_precondition() {
    let invalid = [
        SpecError::NoCommand,
        SpecError::RelativeWorkingDir("x".into()),
        SpecError::GroupWithoutUser(1),
        SpecError::UnknownCapability("X".into()),
        SpecError::InvalidSeccomp("x".into()),
        SpecError::InvalidApparmor("x".into()),
        SpecError::InvalidNamespaces("x".into()),
        SpecError::PrivilegedNotAllowed,
        SpecError::InvalidResources("x".into()),
    ];
    for e in invalid {
        assert_eq!(
            e.kind(),
            crate::error_kind::ErrorKind::InvalidArgument,
            "{e}"
        );
        assert_eq!(tonic::Status::from(e).code(), tonic::Code::InvalidArgument);
    }
    let precondition = [
        SpecError::UnknownUser("x".into()),
        SpecError::UnknownGroup("x".into()),
        SpecError::SeccompProfileMissing("/p".into()),
        SpecError::ApparmorUnsupported("p".into()),
        SpecError::TargetNotRunning("c".into()),
        SpecError::SandboxNotRunning("p".into()),
    ];
    for e in precondition {
        assert_eq!(
            e.kind(),
            crate::error_kind::ErrorKind::FailedPrecondition,
            "{e}"
        );
    }
}
