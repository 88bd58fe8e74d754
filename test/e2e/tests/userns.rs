//! Pods in a user namespace of their own (`userns_options` mode POD, as
//! kubelet sends for `hostUsers: false`): the container's root is an
//! unprivileged host uid, yet owns the image's files (idmapped layers),
//! the pod's network (it binds port 80, its sysctls apply) and its files;
//! a volume kubelet maps is idmapped both ways; every container of the
//! pod shares one user namespace, also after a daemon crash; bad mappings
//! and modes are refused; and nothing of it is left once the pod is
//! removed.

use std::os::unix::fs::MetadataExt;

use carapace_e2e::workload::{
    create, exec, image_mount, list_containers, pull, run_pod, start, Rt,
};
use carapace_e2e::{mounts_under, pod_config, require_registry, Daemon};
use k8s_cri::v1 as cri;

const BUSYBOX: &str = "127.0.0.1:5000/test/busybox:latest";
/// Where the pod's IDs start on the host (kubelet hands out multiples of
/// 65536 above its own range).
const HOST_BASE: u32 = 327_680;

fn mapping(host: u32) -> Vec<cri::IdMapping> {
    vec![cri::IdMapping {
        container_id: 0,
        host_id: host,
        length: 65536,
    }]
}

fn userns(uids: Vec<cri::IdMapping>, gids: Vec<cri::IdMapping>) -> cri::UserNamespace {
    cri::UserNamespace {
        mode: cri::NamespaceMode::Pod as i32,
        uids,
        gids,
    }
}

fn ns_opts(u: Option<cri::UserNamespace>) -> cri::NamespaceOption {
    cri::NamespaceOption {
        userns_options: u,
        ..Default::default()
    }
}

fn pod_in(name: &str, u: cri::UserNamespace) -> cri::PodSandboxConfig {
    let mut pc = pod_config(name);
    if let Some(l) = pc.linux.as_mut() {
        l.sysctls = [(
            "net.ipv4.ip_local_port_range".to_string(),
            "40000 50000".to_string(),
        )]
        .into();
        if let Some(sc) = l.security_context.as_mut() {
            sc.namespace_options = Some(ns_opts(Some(u)));
        }
    }
    pc
}

fn container(
    name: &str,
    u: Option<cri::UserNamespace>,
    mounts: Vec<cri::Mount>,
) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: BUSYBOX.into(),
            ..Default::default()
        }),
        command: vec!["sleep".into(), "3600".into()],
        mounts,
        linux: Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(ns_opts(u)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `sh -c script` in the container; its stdout, trimmed, after checking it
/// exited 0.
async fn sh(rt: &mut Rt, id: &str, script: &str) -> String {
    let r = exec(rt, id, &["sh", "-c", script], 30).await.expect("exec");
    assert_eq!(
        r.exit_code,
        0,
        "{script}: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    String::from_utf8_lossy(&r.stdout).trim().to_string()
}

/// Removes the pod and checks no mount of it (rootfs, idmapped view,
/// namespace pin, shm) is left under the daemon's directories.
async fn remove_leaving_no_mount(rt: &mut Rt, d: &Daemon, pod: &str) {
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod.to_string(),
    })
    .await
    .expect("remove pod");
    let left = mounts_under(d.dir.path());
    assert!(left.is_empty(), "{left:?}");
}

fn daemon() -> Daemon {
    require_registry();
    Daemon::start_with_network("[registry]\ninsecure = [\"127.0.0.1:5000\"]\n", &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_in_its_own_user_namespace_owns_its_files_network_and_mapped_volumes() {
    let mut d = daemon();
    pull(&d, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let st = rt
        .status(cri::StatusRequest { verbose: false })
        .await
        .expect("status")
        .into_inner();
    assert!(
        st.runtime_handlers
            .iter()
            .all(|h| h.features.as_ref().is_some_and(|f| f.user_namespaces)),
        "{:?}",
        st.runtime_handlers
    );

    // A volume as kubelet hands one over: owned by host root.
    let vol = d.dir.path().join("vol");
    std::fs::create_dir(&vol).expect("volume");
    std::fs::write(vol.join("owned"), "x").expect("volume file");

    let u = userns(mapping(HOST_BASE), mapping(HOST_BASE));
    let pc = pod_in("userns", u.clone());
    let pod = run_pod(&mut rt, pc.clone()).await;
    let mapped_vol = cri::Mount {
        container_path: "/vol".into(),
        host_path: vol.display().to_string(),
        uid_mappings: mapping(HOST_BASE),
        gid_mappings: mapping(HOST_BASE),
        ..Default::default()
    };
    let a = create(
        &mut rt,
        &pod,
        &pc,
        container("a", Some(u.clone()), vec![mapped_vol]),
    )
    .await
    .expect("create a");
    start(&mut rt, &a).await;
    let b = create(&mut rt, &pod, &pc, container("b", Some(u.clone()), vec![]))
        .await
        .expect("create b");
    start(&mut rt, &b).await;

    // Root inside is the mapped range's first ID outside.
    let map = sh(&mut rt, &a, "cat /proc/self/uid_map /proc/self/gid_map").await;
    let maps: Vec<Vec<&str>> = map
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let want = vec!["0", "327680", "65536"];
    assert_eq!(maps, vec![want.clone(), want], "{map}");
    assert_eq!(sh(&mut rt, &a, "id -u; id -g").await, "0\n0");
    // The image's files (host root's on disk) are the container root's,
    // through the idmapped layers; the rootfs's root is its too.
    assert_eq!(
        sh(&mut rt, &a, "stat -c %u:%g /bin/busybox / /etc/passwd").await,
        "0:0\n0:0\n0:0"
    );
    assert_eq!(
        sh(
            &mut rt,
            &a,
            "echo hi > /etc/newfile && stat -c %u /etc/newfile"
        )
        .await,
        "0"
    );
    // The pod's files and shm are its root's.
    assert_eq!(
        sh(
            &mut rt,
            &a,
            "stat -c %u /etc/hosts /etc/resolv.conf /dev/shm"
        )
        .await,
        "0\n0\n0"
    );
    sh(
        &mut rt,
        &a,
        "echo 10.0.0.9 extra >> /etc/hosts && touch /dev/shm/x",
    )
    .await;
    // The network namespace is the pod's user namespace's: its root binds
    // a privileged port and the pod's sysctl was applied inside.
    sh(&mut rt, &a, "mkdir -p /tmp/www && httpd -p 80 -h /tmp/www").await;
    assert_eq!(
        sh(&mut rt, &a, "cat /proc/sys/net/ipv4/ip_local_port_range").await,
        "40000\t50000"
    );
    assert_eq!(sh(&mut rt, &a, "hostname").await, "userns");
    // The mapped volume: host root's file is the container root's, and
    // what the container root writes is host root's on disk.
    assert_eq!(sh(&mut rt, &a, "stat -c %u:%g /vol/owned").await, "0:0");
    sh(&mut rt, &a, "echo from-inside > /vol/made").await;
    let made = std::fs::metadata(vol.join("made")).expect("file written through the volume");
    assert_eq!((made.uid(), made.gid()), (0, 0));

    // One user namespace for the pod, not the host's.
    let na = sh(&mut rt, &a, "readlink /proc/self/ns/user").await;
    let nb = sh(&mut rt, &b, "readlink /proc/self/ns/user").await;
    assert_eq!(na, nb);
    let host = std::fs::read_link("/proc/self/ns/user").expect("host userns");
    assert_ne!(na, host.display().to_string());
    // On the host, the container's processes run as the mapped IDs.
    let ps = std::process::Command::new("ps")
        .args(["-eo", "uid=,args="])
        .output()
        .expect("ps");
    let ps = String::from_utf8_lossy(&ps.stdout);
    assert!(
        ps.lines()
            .any(|l| l.trim_start().starts_with("327680 ") && l.contains("sleep 3600")),
        "no sleep as uid 327680:\n{ps}"
    );

    // After a daemon crash the pod's user namespace is found again: a new
    // container joins the same one, and execs still work in the old.
    d.stop(nix::sys::signal::Signal::SIGKILL);
    d.spawn();
    let mut rt = d.runtime().await;
    let c = create(&mut rt, &pod, &pc, container("c", Some(u.clone()), vec![]))
        .await
        .expect("create c after a restart");
    start(&mut rt, &c).await;
    assert_eq!(sh(&mut rt, &c, "readlink /proc/self/ns/user").await, na);
    assert_eq!(sh(&mut rt, &a, "stat -c %u /vol/owned").await, "0");

    remove_leaving_no_mount(&mut rt, &d, &pod).await;
    // The volume outlives the pod, untouched.
    assert_eq!(
        std::fs::read_to_string(vol.join("made")).expect("volume kept"),
        "from-inside\n"
    );
    assert!(vol.join("owned").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_user_namespace_requests_are_refused_and_leave_nothing() {
    let d = daemon();
    pull(&d, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let run_err = |pc: cri::PodSandboxConfig| {
        let mut rt = rt.clone();
        async move {
            rt.run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(pc),
                runtime_handler: String::new(),
            })
            .await
            .expect_err("pod refused")
        }
    };
    // Two ranges; a range that leaves container root unmapped; the node's
    // network with a user namespace of its own.
    let mut two = mapping(HOST_BASE);
    two.push(cri::IdMapping {
        container_id: 65536,
        host_id: HOST_BASE + 65536,
        length: 10,
    });
    let e = run_err(pod_in("two", userns(two, mapping(HOST_BASE)))).await;
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("exactly one uid mapping"), "{e:?}");
    let mut rootless = mapping(HOST_BASE);
    rootless[0].container_id = 1;
    let e = run_err(pod_in("rootless", userns(mapping(HOST_BASE), rootless))).await;
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("container ID 0"), "{e:?}");
    let mut hostnet = pod_in("hostnet", userns(mapping(HOST_BASE), mapping(HOST_BASE)));
    if let Some(o) = hostnet
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
    {
        o.network = cri::NamespaceMode::Node as i32;
    }
    let e = run_err(hostnet).await;
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    let mut per_container = userns(mapping(HOST_BASE), mapping(HOST_BASE));
    per_container.mode = cri::NamespaceMode::Container as i32;
    let e = run_err(pod_in("mode", per_container.clone())).await;
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");

    // In a good pod: a container in the host's user namespace, in other
    // mappings, in mode CONTAINER, or with a volume mapped otherwise.
    let u = userns(mapping(HOST_BASE), mapping(HOST_BASE));
    let pc = pod_in("good", u.clone());
    let pod = run_pod(&mut rt, pc.clone()).await;
    let other = userns(mapping(HOST_BASE + 65536), mapping(HOST_BASE + 65536));
    let odd_vol = cri::Mount {
        container_path: "/vol".into(),
        host_path: d.dir.path().display().to_string(),
        uid_mappings: mapping(HOST_BASE + 65536),
        gid_mappings: mapping(HOST_BASE + 65536),
        ..Default::default()
    };
    for (name, c) in [
        ("host", container("host", None, vec![])),
        ("other", container("other", Some(other), vec![])),
        ("mode", container("mode", Some(per_container), vec![])),
        ("vol", container("vol", Some(u.clone()), vec![odd_vol])),
    ] {
        let e = create(&mut rt, &pod, &pc, c)
            .await
            .expect_err("container refused");
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{name}: {e:?}");
    }
    let listed = list_containers(&mut rt).await;
    assert!(listed.is_empty(), "{listed:?}");
    let pods = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .expect("list pods")
        .into_inner()
        .items;
    assert_eq!(pods.len(), 1, "only the good pod: {pods:?}");
    remove_leaving_no_mount(&mut rt, &d, &pod).await;
}

/// An image volume in a user-namespaced pod is seen through the pod's
/// mappings, as its rootfs is: the image's root-owned files are the
/// container root's, 1000-owned files the container's 1000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_volume_in_a_user_namespace_is_idmapped_like_the_rootfs() {
    const LAYERED: &str = "127.0.0.1:5000/test/layered:latest";
    let d = daemon();
    pull(&d, BUSYBOX).await;
    pull(&d, LAYERED).await;
    let mut rt = d.runtime().await;
    let u = userns(mapping(HOST_BASE), mapping(HOST_BASE));
    let pc = pod_in("userns-imgvol", u.clone());
    let pod = run_pod(&mut rt, pc.clone()).await;
    let id = create(
        &mut rt,
        &pod,
        &pc,
        container(
            "imgvol",
            Some(u),
            vec![
                image_mount("/vol", LAYERED, ""),
                image_mount("/perm", LAYERED, "perm"),
            ],
        ),
    )
    .await
    .expect("create");
    start(&mut rt, &id).await;
    assert_eq!(
        sh(
            &mut rt,
            &id,
            "stat -c %u:%g /vol/replace /vol/perm/owned /perm/owned"
        )
        .await,
        "0:0\n1000:1000\n1000:1000"
    );
    assert_eq!(sh(&mut rt, &id, "cat /vol/replace").await, "new");
    remove_leaving_no_mount(&mut rt, &d, &pod).await;
}
