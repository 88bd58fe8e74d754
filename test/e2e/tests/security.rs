//! What a container's config makes of it, seen from inside: env, command,
//! working dir, user, group and supplemental groups; capabilities added
//! and dropped (read from /proc/self/status), privileged; a read-only
//! rootfs; seccomp RuntimeDefault blocking what the default profile blocks;
//! a pod's shared PID namespace versus private ones; tty output logged as
//! stdout; a container killed over its memory limit reported OOMKilled;
//! supplemental groups merged from the image or not (Strict); recursive
//! read-only mounts, and their refusal for a runtime without them.

use std::path::Path;

use carapace_e2e::workload::BUSYBOX;
use carapace_e2e::workload::{
    busybox_container as container, busybox_pod as setup_with, create, pull, run, run_pod, sh,
    status, wait_exited, Rt,
};
use carapace_e2e::{daemon_bin, pod_config, require_registry, start_with_script_handler, Daemon};
use k8s_cri::v1 as cri;

/// User `app` (1000:1000), also listed in group `staff` (50).
const NONROOT: &str = "127.0.0.1:5000/test/nonroot:latest";

/// A daemon with busybox pulled and one running pod.
async fn setup(name: &str) -> (Daemon, Rt, String, cri::PodSandboxConfig) {
    setup_with(name, |_| {}).await
}

/// The effective capability mask of the container's processes.
async fn cap_eff(rt: &mut Rt, id: &str) -> u64 {
    let (code, out, err) = sh(rt, id, "grep CapEff /proc/self/status").await;
    assert_eq!(code, 0, "{err}");
    let hex = out.split_whitespace().nth(1).expect("CapEff value");
    u64::from_str_radix(hex, 16).expect("hex mask")
}

const CAP_CHOWN: u64 = 1 << 0;
const CAP_NET_ADMIN: u64 = 1 << 12;
const CAP_NET_RAW: u64 = 1 << 13;
const CAP_SYS_ADMIN: u64 = 1 << 21;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_command_workdir_and_user_come_from_the_config() {
    let (_d, mut rt, pod, pc) = setup("who").await;
    let mut c = container(
        "who",
        &["sleep", "300"],
        cri::LinuxContainerSecurityContext {
            run_as_user: Some(cri::Int64Value { value: 1000 }),
            run_as_group: Some(cri::Int64Value { value: 3000 }),
            supplemental_groups: vec![4000],
            ..Default::default()
        },
    );
    c.envs = vec![cri::KeyValue {
        key: "FOO".into(),
        value: "bar baz".into(),
    }];
    c.working_dir = "/tmp".into();
    let id = run(&mut rt, &pod, &pc, c).await;
    let (code, out, err) = sh(&mut rt, &id, "echo \"$FOO\"; pwd; id -u; id -g; id -G").await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..4], ["bar baz", "/tmp", "1000", "3000"], "{out}");
    let groups: Vec<&str> = lines[4].split_whitespace().collect();
    assert!(
        groups.contains(&"4000"),
        "supplemental group missing: {out}"
    );
    // The init process itself, not only execs: its status file.
    let (_, init, _) = sh(
        &mut rt,
        &id,
        "grep -E '^(Uid|Gid|Groups)' /proc/$(pidof sleep)/status",
    )
    .await;
    assert!(init.contains("Uid:\t1000"), "{init}");
    assert!(init.contains("Gid:\t3000"), "{init}");
    assert!(init.contains("4000"), "{init}");
    let user = status(&mut rt, &id)
        .await
        .user
        .and_then(|u| u.linux)
        .expect("effective user reported");
    assert_eq!((user.uid, user.gid), (1000, 3000));
    assert!(user.supplemental_groups.contains(&4000), "{user:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_are_added_dropped_or_all_when_privileged() {
    // A privileged container needs a privileged pod, as in containerd.
    let (_d, mut rt, pod, pc) = setup_with("caps", |pc| {
        if let Some(sc) = pc.linux.as_mut().and_then(|l| l.security_context.as_mut()) {
            sc.privileged = true;
        }
    })
    .await;
    let caps = |add: &[&str], drop: &[&str]| cri::LinuxContainerSecurityContext {
        capabilities: Some(cri::Capability {
            add_capabilities: add.iter().map(|s| s.to_string()).collect(),
            drop_capabilities: drop.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let default = run(
        &mut rt,
        &pod,
        &pc,
        container("default", &["sleep", "300"], caps(&[], &[])),
    )
    .await;
    let eff = cap_eff(&mut rt, &default).await;
    assert!(
        eff & CAP_CHOWN != 0 && eff & CAP_NET_RAW != 0,
        "default set: {eff:x}"
    );
    assert!(
        eff & (CAP_NET_ADMIN | CAP_SYS_ADMIN) == 0,
        "default set too wide: {eff:x}"
    );

    let changed = run(
        &mut rt,
        &pod,
        &pc,
        container(
            "changed",
            &["sleep", "300"],
            caps(&["NET_ADMIN"], &["CHOWN"]),
        ),
    )
    .await;
    let eff2 = cap_eff(&mut rt, &changed).await;
    assert_eq!(eff2, (eff | CAP_NET_ADMIN) & !CAP_CHOWN, "{eff2:x}");
    // Dropping CHOWN is felt: chown to another user fails.
    let (code, _, _) = sh(&mut rt, &changed, "touch /tmp/f && chown 1:1 /tmp/f").await;
    assert_ne!(code, 0, "chown worked without CAP_CHOWN");

    let only = run(
        &mut rt,
        &pod,
        &pc,
        container("only", &["sleep", "300"], caps(&["CAP_NET_RAW"], &["ALL"])),
    )
    .await;
    assert_eq!(cap_eff(&mut rt, &only).await, CAP_NET_RAW);

    let privileged = run(
        &mut rt,
        &pod,
        &pc,
        container(
            "privileged",
            &["sleep", "300"],
            cri::LinuxContainerSecurityContext {
                privileged: true,
                ..Default::default()
            },
        ),
    )
    .await;
    // Everything the daemon (root, like this test) may pass on.
    let own = std::fs::read_to_string("/proc/self/status").expect("own status");
    let bnd = own
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .map(|h| u64::from_str_radix(h.trim(), 16).expect("hex"))
        .expect("CapBnd");
    assert_eq!(cap_eff(&mut rt, &privileged).await, bnd);
    // Host devices only for the privileged one: one the host has that is
    // not in the default device set.
    let dev = ["/dev/loop0", "/dev/kmsg", "/dev/mem", "/dev/vda"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("a host device to look for");
    let (code, _, _) = sh(&mut rt, &privileged, &format!("test -e {dev}")).await;
    assert_eq!(code, 0, "privileged container lacks host device {dev}");
    let (code, _, _) = sh(&mut rt, &default, &format!("test -e {dev}")).await;
    assert_ne!(code, 0, "unprivileged container sees {dev}");
    // sysfs: read-only unless privileged.
    for (id, ro) in [(&default, true), (&privileged, false)] {
        let (code, out, _) = sh(&mut rt, id, "grep ' /sys ' /proc/self/mounts").await;
        assert_eq!(code, 0);
        let opts = out.split_whitespace().nth(3).unwrap_or("");
        assert_eq!(
            opts.split(',').any(|o| o == "ro"),
            ro,
            "container {id}: sysfs mounted {opts}: {out}"
        );
    }
}

/// The Status features kubelet reads before it sends the fields they
/// gate (and critest before it runs the checks below).
async fn features(rt: &mut Rt) -> (Vec<cri::RuntimeHandlerFeatures>, cri::RuntimeFeatures) {
    let st = rt
        .status(cri::StatusRequest { verbose: false })
        .await
        .expect("status")
        .into_inner();
    (
        st.runtime_handlers
            .into_iter()
            .map(|h| h.features.expect("handler features"))
            .collect(),
        st.features.expect("runtime features"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supplemental_groups_merge_the_images_unless_strict() {
    let (d, mut rt, pod, pc) = setup("groups").await;
    let (_, f) = features(&mut rt).await;
    assert!(f.supplemental_groups_policy, "{f:?}");
    pull(&d, NONROOT).await;
    let mut ids = Vec::new();
    for policy in [
        cri::SupplementalGroupsPolicy::Merge,
        cri::SupplementalGroupsPolicy::Strict,
    ] {
        let mut c = container(
            policy.as_str_name(),
            &["sleep", "300"],
            cri::LinuxContainerSecurityContext {
                supplemental_groups: vec![4000],
                supplemental_groups_policy: policy as i32,
                ..Default::default()
            },
        );
        // The image's user `app` is listed in its /etc/group's `staff` (50).
        c.image = Some(cri::ImageSpec {
            image: NONROOT.into(),
            ..Default::default()
        });
        let id = run(&mut rt, &pod, &pc, c).await;
        let (code, out, err) = sh(&mut rt, &id, "id -G").await;
        assert_eq!(code, 0, "{err}");
        let mut groups: Vec<u32> = out
            .split_whitespace()
            .map(|g| g.parse().expect("gid"))
            .collect();
        groups.sort();
        let reported = status(&mut rt, &id)
            .await
            .user
            .and_then(|u| u.linux)
            .expect("effective user reported");
        let mut supp: Vec<u32> = reported
            .supplemental_groups
            .iter()
            .map(|g| *g as u32)
            .collect();
        supp.sort();
        ids.push((groups, supp));
    }
    assert_eq!(ids[0].0, vec![50, 1000, 4000], "merge");
    assert_eq!(ids[0].1, vec![50, 1000, 4000], "merge, reported");
    assert_eq!(ids[1].0, vec![1000, 4000], "strict");
    assert_eq!(ids[1].1, vec![1000, 4000], "strict, reported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recursive_read_only_mount_covers_its_submounts() {
    let (d, mut rt, pod, pc) = setup("rro").await;
    let (handlers, _) = features(&mut rt).await;
    assert!(
        handlers.iter().all(|h| h.recursive_read_only_mounts),
        "{handlers:?}"
    );
    // A host dir with a writable filesystem mounted inside it.
    let src = d.dir.path().join("rro");
    let sub = src.join("sub");
    std::fs::create_dir_all(&sub).expect("dirs");
    nix::mount::mount(
        Some("tmpfs"),
        &sub,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=1m"),
    )
    .expect("mount tmpfs");
    let mut outcomes = Vec::new();
    for (name, recursive) in [("plain-ro", false), ("rro", true)] {
        let mut c = container(name, &["sleep", "300"], Default::default());
        c.mounts = vec![cri::Mount {
            container_path: "/m".into(),
            host_path: src.display().to_string(),
            readonly: true,
            recursive_read_only: recursive,
            ..Default::default()
        }];
        let id = run(&mut rt, &pod, &pc, c).await;
        let (top, _, top_err) = sh(&mut rt, &id, "touch /m/top").await;
        assert_ne!(top, 0, "{name}: wrote to a read-only mount");
        assert!(top_err.contains("Read-only file system"), "{top_err}");
        let (code, _, err) = sh(&mut rt, &id, "touch /m/sub/x").await;
        outcomes.push((code, err));
    }
    // A plain read-only bind leaves the submount writable; rro does not.
    assert_eq!(outcomes[0].0, 0, "plain ro: {}", outcomes[0].1);
    assert_ne!(outcomes[1].0, 0, "rro left the submount writable");
    assert!(
        outcomes[1].1.contains("Read-only file system"),
        "{}",
        outcomes[1].1
    );
    // Writable with rro and no read-only: a clear refusal.
    let mut bad = container("bad", &["true"], Default::default());
    bad.mounts = vec![cri::Mount {
        container_path: "/m".into(),
        host_path: src.display().to_string(),
        recursive_read_only: true,
        ..Default::default()
    }];
    let e = create(&mut rt, &pod, &pc, bad).await.expect_err("refused");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    nix::mount::umount2(&sub, nix::mount::MntFlags::MNT_DETACH).expect("unmount tmpfs");
}

/// A runtime whose `features` does not list `rro` (Debian's crun 1.8 has
/// no `features` at all) gets no recursive read-only mount: Status says so
/// for its handler and CreateContainer refuses, naming it, leaving nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recursive_read_only_mount_is_refused_for_a_runtime_without_it() {
    require_registry();
    let tools = tempfile::tempdir().expect("tmp");
    let real = daemon_bin().with_file_name("carapace-runtime");
    let d = start_with_script_handler(
        tools.path(),
        "norro",
        &format!(
            "#!/bin/sh\n[ \"$1\" = features ] && {{ echo '{{\"mountOptions\": [\"ro\"]}}'; exit 0; }}\nexec {} \"$@\"\n",
            real.display()
        ),
    );
    pull(&d, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let handlers = rt
        .status(cri::StatusRequest { verbose: false })
        .await
        .expect("status")
        .into_inner()
        .runtime_handlers;
    let rro_of = |name: &str| {
        handlers
            .iter()
            .find(|h| h.name == name)
            .and_then(|h| h.features.as_ref())
            .map(|f| f.recursive_read_only_mounts)
    };
    assert_eq!(rro_of("norro"), Some(false), "{handlers:?}");
    assert_eq!(rro_of("carapace"), Some(true), "{handlers:?}");
    let pc = pod_config("norro");
    let pod = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pc.clone()),
            runtime_handler: "norro".into(),
        })
        .await
        .expect("run pod")
        .into_inner()
        .pod_sandbox_id;
    let mut c = container("rro", &["true"], Default::default());
    c.mounts = vec![cri::Mount {
        container_path: "/m".into(),
        host_path: tools.path().display().to_string(),
        readonly: true,
        recursive_read_only: true,
        ..Default::default()
    }];
    let e = create(&mut rt, &pod, &pc, c.clone())
        .await
        .expect_err("refused");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message().contains("\"norro\"") && e.message().contains("recursive read-only"),
        "{e:?}"
    );
    let listed = rt
        .list_containers(cri::ListContainersRequest::default())
        .await
        .expect("list")
        .into_inner()
        .containers;
    assert!(listed.is_empty(), "{listed:?}");
    // The same mount, plain read-only, runs under that runtime.
    c.mounts[0].recursive_read_only = false;
    run(&mut rt, &pod, &pc, c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readonly_rootfs_refuses_writes() {
    let (_d, mut rt, pod, pc) = setup("ro").await;
    let ro = run(
        &mut rt,
        &pod,
        &pc,
        container(
            "ro",
            &["sleep", "300"],
            cri::LinuxContainerSecurityContext {
                readonly_rootfs: true,
                ..Default::default()
            },
        ),
    )
    .await;
    let (code, _, err) = sh(&mut rt, &ro, "touch /written").await;
    assert_ne!(code, 0, "wrote to a read-only rootfs");
    assert!(err.contains("Read-only file system"), "{err}");
    // The pod's shm stays writable.
    let (code, _, err) = sh(&mut rt, &ro, "touch /dev/shm/ok").await;
    assert_eq!(code, 0, "{err}");
    let rw = run(
        &mut rt,
        &pod,
        &pc,
        container("rw", &["sleep", "300"], Default::default()),
    )
    .await;
    let (code, _, err) = sh(&mut rt, &rw, "touch /written").await;
    assert_eq!(code, 0, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seccomp_runtime_default_blocks_what_the_default_profile_blocks() {
    let (_d, mut rt, pod, pc) = setup("seccomp").await;
    let profile = |t: cri::security_profile::ProfileType| cri::LinuxContainerSecurityContext {
        seccomp: Some(cri::SecurityProfile {
            profile_type: t as i32,
            localhost_ref: String::new(),
        }),
        ..Default::default()
    };
    use cri::security_profile::ProfileType;
    let confined = run(
        &mut rt,
        &pod,
        &pc,
        container(
            "confined",
            &["sleep", "300"],
            profile(ProfileType::RuntimeDefault),
        ),
    )
    .await;
    let free = run(
        &mut rt,
        &pod,
        &pc,
        container("free", &["sleep", "300"], profile(ProfileType::Unconfined)),
    )
    .await;
    // unshare(CLONE_NEWUSER) needs no capability, but the default profile
    // allows unshare only to holders of CAP_SYS_ADMIN.
    let (code, _, err) = sh(&mut rt, &free, "unshare -U true").await;
    assert_eq!(code, 0, "unconfined unshare failed: {err}");
    let (code, _, err) = sh(&mut rt, &confined, "unshare -U true").await;
    assert_ne!(code, 0, "RuntimeDefault let unshare through");
    assert!(err.contains("Operation not permitted"), "{err}");
    let (_, out, _) = sh(&mut rt, &confined, "grep Seccomp: /proc/self/status").await;
    assert!(out.contains('2'), "not in seccomp filter mode: {out}");
    let (_, out, _) = sh(&mut rt, &free, "grep Seccomp: /proc/self/status").await;
    assert!(out.contains('0'), "unconfined is filtered: {out}");
}

/// What an exec'd shell prints about its seccomp filter: the mode from
/// /proc/self/status and whether `unshare -U` (refused by both profiles
/// below) got through.
const SHOW_FILTER: &str =
    "grep Seccomp: /proc/self/status; unshare -U true 2>/dev/null; echo unshare-rc=$?";

fn assert_filtered(what: &str, out: &str) {
    assert!(
        out.lines()
            .any(|l| l.starts_with("Seccomp:") && l.trim_end().ends_with('2')),
        "{what}: not in seccomp filter mode: {out}"
    );
    assert!(
        out.contains("unshare-rc=") && !out.contains("unshare-rc=0"),
        "{what}: unshare -U got through: {out}"
    );
}

/// With `allowPrivilegeEscalation: false` (no_new_privs, which Pod
/// Security "restricted" requires) the filter is loaded last, right before
/// exec; every process the container gets, ExecSync and streaming Exec
/// with and without a tty included, must carry it, for RuntimeDefault and
/// for a Localhost profile alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_processes_carry_the_seccomp_filter_under_no_new_privs() {
    use carapace_e2e::spdy_client;
    use cri::security_profile::ProfileType;
    let (d, mut rt, pod, pc) = setup("nnpseccomp").await;
    let localhost = d.dir.path().join("deny-unshare.json");
    std::fs::write(
        &localhost,
        serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["unshare"], "action": "SCMP_ACT_ERRNO"}]
        })
        .to_string(),
    )
    .expect("write the Localhost profile");
    for (name, t, r) in [
        ("default", ProfileType::RuntimeDefault, String::new()),
        (
            "localhost",
            ProfileType::Localhost,
            localhost.display().to_string(),
        ),
    ] {
        let sc = cri::LinuxContainerSecurityContext {
            no_new_privs: true,
            seccomp: Some(cri::SecurityProfile {
                profile_type: t as i32,
                localhost_ref: r,
            }),
            ..Default::default()
        };
        let id = run(&mut rt, &pod, &pc, container(name, &["sleep", "300"], sc)).await;
        let (_, out, _) = sh(&mut rt, &id, SHOW_FILTER).await;
        assert_filtered(&format!("{name}: ExecSync"), &out);
        for tty in [false, true] {
            let u = rt
                .exec(cri::ExecRequest {
                    container_id: id.clone(),
                    cmd: vec!["sh".into(), "-c".into(), SHOW_FILTER.into()],
                    tty,
                    stdin: tty,
                    stdout: true,
                    stderr: !tty,
                })
                .await
                .expect("exec url")
                .into_inner()
                .url;
            // A terminal comes with stdin and a size, as kubectl sends.
            let (channels, size): (&[&str], _) = if tty {
                (&["error", "stdin", "stdout", "resize"], Some((80, 24)))
            } else {
                (&["error", "stdout", "stderr"], None)
            };
            let o = spdy_client::exec(&u, &["v4.channel.k8s.io"], channels, b"", size)
                .await
                .expect("stream");
            assert_filtered(
                &format!("{name}: streaming Exec tty={tty}"),
                &o.text("stdout").replace('\r', ""),
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_shares_its_pid_namespace_only_when_asked() {
    require_registry();
    let d = Daemon::start_with_network("[registry]\ninsecure = [\"127.0.0.1:5000\"]\n", &[]);
    pull(&d, BUSYBOX).await;
    let mut rt = d.runtime().await;
    for (mode, shared) in [
        (cri::NamespaceMode::Pod, true),
        (cri::NamespaceMode::Container, false),
    ] {
        let name = if shared { "pidpod" } else { "pidown" };
        let ns = cri::NamespaceOption {
            pid: mode as i32,
            ..Default::default()
        };
        let mut pc = pod_config(name);
        if let Some(sc) = pc.linux.as_mut().and_then(|l| l.security_context.as_mut()) {
            sc.namespace_options = Some(ns.clone());
        }
        let pod = run_pod(&mut rt, pc.clone()).await;
        let sc = cri::LinuxContainerSecurityContext {
            namespace_options: Some(ns),
            ..Default::default()
        };
        run(
            &mut rt,
            &pod,
            &pc,
            container("a", &["sleep", "4321"], sc.clone()),
        )
        .await;
        let b = run(&mut rt, &pod, &pc, container("b", &["sleep", "300"], sc)).await;
        let (code, out, err) = sh(&mut rt, &b, "ps -o args").await;
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            out.contains("sleep 4321"),
            shared,
            "pid mode {mode:?}: b's processes:\n{out}"
        );
        // In a shared namespace PID 1 is the pod's infra process, not b.
        let (_, one, _) = sh(&mut rt, &b, "cat /proc/1/cmdline | tr '\\0' ' '").await;
        assert_eq!(one.contains("sleep 300"), !shared, "pid 1 is {one:?}");
    }
}

/// The CRI log's records: (stream, content).
fn records(p: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(4, ' ');
            let (_, stream, _, content) = (f.next()?, f.next()?, f.next()?, f.next()?);
            Some((stream.to_string(), content.to_string()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tty_output_is_logged_as_stdout() {
    let (_d, mut rt, pod, pc) = setup("tty").await;
    let mut c = container(
        "tty",
        &["sh", "-c", "echo to-out; echo to-err >&2; test -t 1"],
        Default::default(),
    );
    c.tty = true;
    let id = run(&mut rt, &pod, &pc, c).await;
    let s = wait_exited(&mut rt, &id).await;
    assert_eq!(s.exit_code, 0, "stdout is not a terminal");
    let recs = records(Path::new(&s.log_path));
    assert!(
        recs.iter().all(|(stream, _)| stream == "stdout"),
        "{recs:?}"
    );
    let text: Vec<String> = recs
        .iter()
        .map(|(_, c)| c.trim_end_matches('\r').to_string())
        .collect();
    assert!(
        text.contains(&"to-out".to_string()) && text.contains(&"to-err".to_string()),
        "{recs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_over_its_memory_limit_is_oom_killed() {
    let (_d, mut rt, pod, pc) = setup("oom").await;
    let mut c = container("hog", &["sh", "-c", "tail /dev/zero"], Default::default());
    if let Some(l) = c.linux.as_mut() {
        l.resources = Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: 32 << 20,
            ..Default::default()
        });
    }
    let id = run(&mut rt, &pod, &pc, c).await;
    let s = wait_exited(&mut rt, &id).await;
    assert_eq!(s.reason, "OOMKilled", "{s:?}");
    assert_eq!(s.exit_code, 137, "{s:?}");
}

/// A one-layer image holding what must never be reachable from the host
/// by other users: a world-openable `c 1 1` device node (/dev/mem) and a
/// setuid-root copy of busybox. Packed by hack/build-oci-archive.sh and
/// imported offline; its reference.
fn import_hostile_image(d: &Daemon, tmp: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let rootfs = tmp.join("hostile-rootfs");
    for sub in ["bin", "dev", "tmp"] {
        std::fs::create_dir_all(rootfs.join(sub)).expect("mkdir");
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
        .expect("copy /bin/busybox (busybox-static, hack/install-deps.sh)");
    std::fs::copy("/bin/busybox", rootfs.join("bin/suid-busybox")).expect("copy");
    std::fs::set_permissions(
        rootfs.join("bin/suid-busybox"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .expect("chmod u+s");
    for applet in ["sh", "sleep", "cat", "env"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).expect("applet");
    }
    nix::sys::stat::mknod(
        &rootfs.join("dev/mem"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 1),
    )
    .expect("mknod /dev/mem in the image rootfs");
    std::fs::set_permissions(
        rootfs.join("dev/mem"),
        std::fs::Permissions::from_mode(0o666),
    )
    .expect("chmod 0666");
    let archive = tmp.join("hostile.tar");
    let reference = "example.com/e2e/hostile:v1";
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../hack/build-oci-archive.sh");
    let st = std::process::Command::new(&script)
        .arg(&rootfs)
        .arg(&archive)
        .arg(reference)
        .arg("sleep")
        .arg("3600")
        .status()
        .expect("run hack/build-oci-archive.sh");
    assert!(st.success(), "build-oci-archive.sh failed");
    let o = std::process::Command::new(daemon_bin())
        .arg("--config")
        .arg(d.config_path())
        .args(["image", "import"])
        .arg(&archive)
        .output()
        .expect("carapace image import");
    assert!(
        o.status.success(),
        "import: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    reference.to_string()
}

/// Every path below `dirs` (as root sees them, not following symlinks,
/// bounded), with what it is.
fn walk(dirs: &[std::path::PathBuf]) -> Vec<(std::path::PathBuf, std::fs::FileType)> {
    let mut out = Vec::new();
    let mut todo: Vec<std::path::PathBuf> = dirs.to_vec();
    while let Some(p) = todo.pop() {
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if md.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                todo.extend(rd.flatten().map(|e| e.path()));
            }
        }
        out.push((p, md.file_type()));
        assert!(
            out.len() < 200_000,
            "walk of the daemon's trees did not end"
        );
    }
    out
}

/// After a pod runs a container (with a secret in its environment, an
/// exec, a tty) from an image that carries a 0666 device node and a
/// setuid file, nothing in the daemon's root, state and runtime trees is
/// readable, writable, listable or enterable by another user of the node
/// (uid 65534, checked by a shell running as that uid), but for the three
/// directories a user-namespaced pod must traverse. Specs are 0600.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_and_state_are_out_of_reach_of_other_users() {
    use std::io::Write;
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let d = Daemon::start_with_network("", &[]);
    // The trees sit in the test's private tempdir: open it as /var/lib and
    // /run are, or the walk below would prove nothing.
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod the test dir");
    let tmp = tempfile::tempdir().expect("tmp");
    let image = import_hostile_image(&d, tmp.path());
    let mut rt = d.runtime().await;
    let mut pc = pod_config("private");
    pc.log_directory = d.dir.path().join("logs").display().to_string();
    let pod = run_pod(&mut rt, pc.clone()).await;
    let mut c = container("holder", &["sleep", "3600"], Default::default());
    c.image = Some(cri::ImageSpec {
        image: image.clone(),
        ..Default::default()
    });
    c.envs = vec![cri::KeyValue {
        key: "DB_PASSWORD".into(),
        value: "hunter2".into(),
    }];
    let id = run(&mut rt, &pod, &pc, c).await;
    let (code, out, err) = sh(&mut rt, &id, "cat /proc/self/environ").await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("DB_PASSWORD=hunter2"), "{out}");

    let (root, state, runtime) = (
        d.dir.path().join("root"),
        d.state_dir(),
        d.dir.path().join("runtime"),
    );
    let config_json = state.join("containers").join(&id).join("config.json");
    let mode = std::fs::metadata(&config_json)
        .expect("config.json")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{}", config_json.display());
    let paths = walk(&[root.clone(), state.clone(), runtime]);
    assert!(
        paths
            .iter()
            .any(|(p, t)| t.is_char_device() && p.ends_with("dev/mem")),
        "the walk did not meet the image's device node: it proves nothing"
    );
    assert!(
        paths.iter().any(|(p, _)| p.ends_with("bin/suid-busybox")),
        "the walk did not meet the image's setuid file"
    );
    // One test line per path: d (dir: listable or enterable?), s (socket:
    // connectable?), f (anything else: readable or writable?).
    let mut script = String::new();
    for (p, t) in &paths {
        let kind = if t.is_symlink() {
            continue;
        } else if t.is_dir() {
            'd'
        } else if t.is_socket() {
            's'
        } else {
            'f'
        };
        script.push_str(&format!("{kind} {}\n", p.display()));
    }
    let mut child = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args([
            "sh",
            "-c",
            r#"while read -r k p; do
                 case $k in
                   d) if [ -r "$p" ]; then echo "listable $p"; fi
                      if [ -x "$p" ]; then echo "enterable $p"; fi ;;
                   s) if [ -w "$p" ]; then echo "connectable $p"; fi ;;
                   f) if [ -r "$p" ] || [ -w "$p" ]; then echo "open $p"; fi ;;
                 esac
               done"#,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("setpriv (util-linux)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("feed paths");
    let o = child.wait_with_output().expect("wait");
    assert!(o.status.success(), "the uid 65534 check failed to run");
    let traversable = [
        format!("enterable {}", state.display()),
        format!("enterable {}", state.join("pods").display()),
        format!("enterable {}", state.join("containers").display()),
    ];
    let reached = String::from_utf8_lossy(&o.stdout).into_owned();
    let leaks: Vec<&str> = reached
        .lines()
        .filter(|l| !traversable.iter().any(|t| t == l))
        .collect();
    assert!(
        leaks.is_empty(),
        "{} of {} paths are within reach of uid 65534:\n{}",
        leaks.len(),
        paths.len(),
        leaks.join("\n")
    );
}
