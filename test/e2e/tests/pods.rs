//! Pod sandboxes end to end: run, status, list with filters, stop, remove;
//! pod networking with real CNI plugins (IPs, pod-to-pod, port mapping),
//! host network, DNS and hostname, sysctls; daemon restarts with pods
//! running; a daemon killed in the middle of RunPodSandbox; bad input.
//! Each pod's namespaces, mounts, cgroups and processes are checked gone
//! after removal.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use carapace_e2e::{in_netns, mounts_under, ns_inode, pod_config, pod_info, Daemon, HANG_GUARD};
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use serde_json::{json, Value};
use tonic::transport::Channel;

type Rt = RuntimeServiceClient<Channel>;

async fn run(rt: &mut Rt, config: cri::PodSandboxConfig) -> Result<String, tonic::Status> {
    rt.run_pod_sandbox(cri::RunPodSandboxRequest {
        config: Some(config),
        runtime_handler: String::new(),
    })
    .await
    .map(|r| r.into_inner().pod_sandbox_id)
}

async fn list(rt: &mut Rt, filter: Option<cri::PodSandboxFilter>) -> Vec<String> {
    rt.list_pod_sandbox(cri::ListPodSandboxRequest { filter })
        .await
        .expect("list")
        .into_inner()
        .items
        .into_iter()
        .map(|p| p.id)
        .collect()
}

async fn stop(rt: &mut Rt, id: &str) -> Result<(), tonic::Status> {
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: id.into(),
    })
    .await
    .map(|_| ())
}

async fn remove(rt: &mut Rt, id: &str) -> Result<(), tonic::Status> {
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: id.into(),
    })
    .await
    .map(|_| ())
}

fn alive(pid: i64) -> bool {
    pid > 0 && Path::new(&format!("/proc/{pid}")).exists()
}

/// Waits until `pid` is gone (reaped by its parent).
fn wait_dead(pid: i64) {
    let deadline = Instant::now() + HANG_GUARD;
    while alive(pid) {
        assert!(Instant::now() < deadline, "process {pid} still alive");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// cgroup directories of `path` that exist, in any hierarchy.
fn cgroup_dirs(path: &str) -> Vec<PathBuf> {
    let rel = path.trim_start_matches('/');
    let root = Path::new("/sys/fs/cgroup");
    let mut dirs = vec![root.join(rel)];
    for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
        dirs.push(e.path().join(rel));
    }
    dirs.into_iter().filter(|d| d.is_dir()).collect()
}

/// Everything a removed pod could leave behind, checked gone.
fn assert_nothing_left(d: &Daemon, info: &Value) {
    let pid = info["pid"].as_i64().unwrap_or(0);
    wait_dead(pid);
    let dir = PathBuf::from(info["sandboxDir"].as_str().expect("sandboxDir"));
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert_eq!(mounts_under(&d.state_dir()), Vec::<String>::new());
    for key in ["infraCgroupsPath", "cgroupParent"] {
        let p = info[key].as_str().expect(key);
        assert_eq!(cgroup_dirs(p), Vec::<PathBuf>::new(), "{key} {p} left");
    }
    // host-local released the pod's address.
    let reserved: Vec<_> = std::fs::read_dir(d.dir.path().join("ipam"))
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|net| {
            std::fs::read_dir(net.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|f| f.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains('.') && n.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .collect();
    assert_eq!(reserved, Vec::<String>::new(), "IP reservations left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_runs_is_listed_stops_and_is_removed_without_a_trace() {
    let d = Daemon::start_with_network("", &[]);
    let mut rt = d.runtime().await;
    let id = run(&mut rt, pod_config("alpha")).await.expect("run pod");
    assert_eq!(id.len(), 64);
    let other = run(&mut rt, pod_config("beta")).await.expect("run pod");

    let (st, info) = pod_info(&mut rt, &id).await;
    assert_eq!(st.state, cri::PodSandboxState::SandboxReady as i32);
    assert_eq!(st.metadata.as_ref().expect("metadata").name, "alpha");
    assert_eq!(st.labels.get("app").map(String::as_str), Some("alpha"));
    let ip = st.network.as_ref().expect("network").ip.clone();
    let gw = d.gateway();
    assert!(
        ip.starts_with(gw.trim_end_matches(".1")),
        "pod IP {ip} outside the network of gateway {gw}"
    );
    let pid = info["pid"].as_i64().expect("pid");
    assert!(alive(pid), "infra process {pid} not running");
    // The infra holds the pod's pinned network namespace.
    let netns = PathBuf::from(info["netNamespacePath"].as_str().expect("netns"));
    assert_eq!(
        ns_inode(&PathBuf::from(format!("/proc/{pid}/ns/net"))),
        ns_inode(&netns)
    );
    assert_ne!(ns_inode(&netns), ns_inode(Path::new("/proc/self/ns/net")));

    // Filters: ID, ID prefix, state, labels.
    let mut all = list(&mut rt, None).await;
    all.sort();
    let mut want = vec![id.clone(), other.clone()];
    want.sort();
    assert_eq!(all, want);
    let by_id = |i: &str| cri::PodSandboxFilter {
        id: i.into(),
        ..Default::default()
    };
    assert_eq!(list(&mut rt, Some(by_id(&id))).await, vec![id.clone()]);
    assert_eq!(
        list(&mut rt, Some(by_id(&id[..12]))).await,
        vec![id.clone()]
    );
    let by_label = |v: &str| cri::PodSandboxFilter {
        label_selector: [("app".to_string(), v.to_string())].into(),
        ..Default::default()
    };
    assert_eq!(
        list(&mut rt, Some(by_label("beta"))).await,
        vec![other.clone()]
    );
    assert!(list(&mut rt, Some(by_label("nope"))).await.is_empty());
    let by_state = |s: cri::PodSandboxState| cri::PodSandboxFilter {
        state: Some(cri::PodSandboxStateValue { state: s as i32 }),
        ..Default::default()
    };

    let socket = d.shim_socket(&id);
    assert!(
        socket.exists(),
        "no infra shim socket at {}",
        socket.display()
    );
    stop(&mut rt, &id).await.expect("stop");
    // Stopped, the pod holds no namespace or shm any more, as under
    // containerd and CRI-O: its pins and shm tmpfs are mounts in its dir.
    let dir = PathBuf::from(info["sandboxDir"].as_str().expect("sandboxDir"));
    assert_eq!(mounts_under(&dir), Vec::<String>::new(), "held after stop");
    assert!(!dir.join("ns/net").exists(), "netns pin left after stop");
    assert!(
        !socket.exists(),
        "the infra's shim socket is left after stop"
    );
    stop(&mut rt, &id).await.expect("stop is idempotent");
    wait_dead(pid);
    let (st, _) = pod_info(&mut rt, &id).await;
    assert_eq!(st.state, cri::PodSandboxState::SandboxNotready as i32);
    assert_eq!(
        list(
            &mut rt,
            Some(by_state(cri::PodSandboxState::SandboxNotready))
        )
        .await,
        vec![id.clone()]
    );
    assert_eq!(
        list(&mut rt, Some(by_state(cri::PodSandboxState::SandboxReady))).await,
        vec![other.clone()]
    );

    // What a shim killed after it answered Shutdown, before it removed
    // its socket, leaves: removal finds it by its name.
    dead_socket(&socket);
    remove(&mut rt, &id).await.expect("remove");
    assert!(!socket.exists(), "a dead shim socket is left after removal");
    remove(&mut rt, &id).await.expect("remove is idempotent");
    let e = rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.clone(),
            verbose: false,
        })
        .await
        .expect_err("status of a removed pod");
    assert_eq!(e.code(), tonic::Code::NotFound);

    // Remove without stop first: it stops the pod itself.
    let (_, other_info) = pod_info(&mut rt, &other).await;
    remove(&mut rt, &other).await.expect("remove running pod");
    assert!(list(&mut rt, None).await.is_empty());
    assert_nothing_left(&d, &info);
    assert_nothing_left(&d, &other_info);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_reach_each_other_and_a_port_mapping_reaches_a_pod_from_the_host() {
    let d = Daemon::start_with_network("", &[]);
    let mut rt = d.runtime().await;
    let a = run(&mut rt, pod_config("client")).await.expect("run a");
    let mut server = pod_config("server");
    let host_port = 20000 + (std::process::id() % 20000) as i32;
    server.port_mappings = vec![cri::PortMapping {
        protocol: cri::Protocol::Tcp as i32,
        container_port: 8080,
        host_port,
        host_ip: String::new(),
    }];
    let b = run(&mut rt, server).await.expect("run b");
    let (_, a_info) = pod_info(&mut rt, &a).await;
    let (b_st, b_info) = pod_info(&mut rt, &b).await;
    let b_ip = b_st.network.expect("network").ip;
    let a_ns = PathBuf::from(a_info["netNamespacePath"].as_str().expect("netns"));
    let b_ns = PathBuf::from(b_info["netNamespacePath"].as_str().expect("netns"));

    // A listener in pod b answers two connections: one from pod a, one
    // through the host port.
    let listener = in_netns(&b_ns, || {
        let l = TcpListener::bind("0.0.0.0:8080").expect("bind in pod");
        for _ in 0..2 {
            let (mut c, peer) = l.accept().expect("accept");
            let _ = c.write_all(format!("hello {peer}").as_bytes());
        }
    });
    let connect = |addr: String| {
        move || -> String {
            let deadline = Instant::now() + HANG_GUARD;
            loop {
                match TcpStream::connect(&addr) {
                    Ok(mut s) => {
                        let mut out = String::new();
                        s.read_to_string(&mut out).expect("read");
                        return out;
                    }
                    Err(e) => {
                        assert!(Instant::now() < deadline, "connect {addr}: {e}");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        }
    };
    let from_a = in_netns(&a_ns, connect(format!("{b_ip}:8080")))
        .join()
        .expect("client thread");
    assert!(from_a.starts_with("hello "), "{from_a}");
    let from_host = std::thread::spawn(connect(format!("{}:{host_port}", d.gateway())))
        .join()
        .expect("host client");
    assert!(from_host.starts_with("hello "), "{from_host}");
    listener.join().expect("listener");

    remove(&mut rt, &b).await.expect("remove b");
    let rules = std::process::Command::new("iptables")
        .args(["-t", "nat", "-S"])
        .output()
        .expect("iptables");
    assert!(
        !String::from_utf8_lossy(&rules.stdout).contains(&format!("--dport {host_port}")),
        "port mapping rule left after removal"
    );
    remove(&mut rt, &a).await.expect("remove a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_hostname_and_sysctls_land_in_the_pod() {
    let d = Daemon::start_with_network("", &[]);
    let mut rt = d.runtime().await;
    let mut c = pod_config("dns");
    c.hostname = "dns-host".into();
    c.dns_config = Some(cri::DnsConfig {
        servers: vec!["10.96.0.10".into()],
        searches: vec!["e2e.svc.cluster.local".into(), "cluster.local".into()],
        options: vec!["ndots:5".into()],
    });
    if let Some(l) = c.linux.as_mut() {
        l.sysctls = [
            (
                "net.ipv4.ip_unprivileged_port_start".to_string(),
                "0".to_string(),
            ),
            ("kernel.shm_rmid_forced".to_string(), "1".to_string()),
        ]
        .into();
    }
    let id = run(&mut rt, c).await.expect("run");
    let (st, info) = pod_info(&mut rt, &id).await;
    let dir = PathBuf::from(info["sandboxDir"].as_str().expect("dir"));
    let resolv = std::fs::read_to_string(dir.join("resolv.conf")).expect("resolv.conf");
    assert_eq!(
        resolv,
        "search e2e.svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
    );
    let ip = st.network.expect("network").ip;
    let hosts = std::fs::read_to_string(dir.join("hosts")).expect("hosts");
    assert!(hosts.contains(&format!("{ip}\tdns-host")), "{hosts}");
    let pid = info["pid"].as_i64().expect("pid");
    let out = std::process::Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-u", "-i", "-n"])
        .args(["sh", "-c", "hostname; cat /proc/sys/kernel/shm_rmid_forced"])
        .output()
        .expect("nsenter");
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["dns-host", "1"]
    );
    let netns = PathBuf::from(info["netNamespacePath"].as_str().expect("netns"));
    let port_start = in_netns(&netns, || {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .expect("read sysctl")
    })
    .join()
    .expect("thread");
    assert_eq!(port_start.trim(), "0");
    // The per-pod /dev/shm is a tmpfs of its own.
    assert!(
        mounts_under(&dir).iter().any(|m| m.ends_with("/shm")),
        "{:?}",
        mounts_under(&dir)
    );
    remove(&mut rt, &id).await.expect("remove");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_network_pods_share_the_host_network_and_need_no_cni() {
    // No CNI config at all: a host-network pod still runs.
    let d = Daemon::start("");
    let mut rt = d.runtime().await;
    let mut c = pod_config("hostnet");
    if let Some(o) = c
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
    {
        o.network = cri::NamespaceMode::Node as i32;
    }
    let id = run(&mut rt, c).await.expect("run host-network pod");
    let (st, info) = pod_info(&mut rt, &id).await;
    assert_eq!(st.network.expect("network").ip, "");
    assert_eq!(
        st.linux
            .and_then(|l| l.namespaces)
            .and_then(|n| n.options)
            .expect("options")
            .network,
        cri::NamespaceMode::Node as i32
    );
    let pid = info["pid"].as_i64().expect("pid");
    let host_net = ns_inode(Path::new("/proc/self/ns/net"));
    assert_eq!(
        ns_inode(&PathBuf::from(format!("/proc/{pid}/ns/net"))),
        host_net
    );
    assert!(info["netNamespacePath"].is_null());
    // …while a pod that needs the network is refused with the reason.
    let e = run(&mut rt, pod_config("needs-cni"))
        .await
        .expect_err("no CNI config");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(e.message().contains("cni"), "{}", e.message());
    remove(&mut rt, &id).await.expect("remove");
    wait_dead(pid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_survive_daemon_restarts_graceful_and_killed() {
    let mut d = Daemon::start_with_network("", &[]);
    let mut rt = d.runtime().await;
    let id = run(&mut rt, pod_config("survivor")).await.expect("run");
    let (st, info) = pod_info(&mut rt, &id).await;
    let ip = st.network.expect("network").ip;
    let pid = info["pid"].as_i64().expect("pid");
    for signal in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGKILL,
    ] {
        drop(rt);
        d.stop(signal);
        assert!(alive(pid), "infra died with the daemon ({signal})");
        d.spawn();
        rt = d.runtime().await;
        assert_eq!(
            list(&mut rt, None).await,
            vec![id.clone()],
            "after {signal}"
        );
        let (st, info) = pod_info(&mut rt, &id).await;
        assert_eq!(
            st.state,
            cri::PodSandboxState::SandboxReady as i32,
            "after {signal}"
        );
        assert_eq!(st.network.expect("network").ip, ip);
        assert_eq!(info["pid"].as_i64(), Some(pid));
    }
    // The reconnected shim still notices the infra dying.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill infra");
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        let (st, _) = pod_info(&mut rt, &id).await;
        if st.state == cri::PodSandboxState::SandboxNotready as i32 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pod stayed Ready after its infra died"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    remove(&mut rt, &id).await.expect("remove");
    assert_nothing_left(&d, &info);
}

/// A CNI plugin that records its pod ID and PID, then hangs in ADD: the
/// daemon is certainly inside RunPodSandbox when it is killed.
const HANGING_PLUGIN: &str = r#"#!/bin/sh
cat >/dev/null
if [ "$CNI_COMMAND" = ADD ]; then
    echo "$CNI_CONTAINERID $$" > "$(dirname "$0")/hang.marker"
    exec sleep 600
fi
exit 0
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_inside_run_pod_sandbox_leaves_nothing_after_restart() {
    let mut d = Daemon::start_with_network("", &[json!({"type": "hang"})]);
    let plugin = d.cni_bin_dir().join("hang");
    std::fs::write(&plugin, HANGING_PLUGIN).expect("write plugin");
    std::fs::set_permissions(&plugin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let marker = d.cni_bin_dir().join("hang.marker");
    let mut rt = d.runtime().await;
    let call = tokio::spawn(async move { run(&mut rt, pod_config("doomed")).await });
    let deadline = Instant::now() + HANG_GUARD;
    let text = loop {
        if let Ok(t) = std::fs::read_to_string(&marker) {
            if t.ends_with('\n') {
                break t;
            }
        }
        assert!(Instant::now() < deadline, "plugin never ran:\n{}", d.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut parts = text.split_whitespace();
    let id = parts.next().expect("id").to_string();
    let plugin_pid: i32 = parts.next().and_then(|p| p.parse().ok()).expect("pid");
    let pod_dir = d.state_dir().join("pods").join(&id);
    assert!(pod_dir.join("ns/net").exists(), "netns not pinned yet");
    d.stop(nix::sys::signal::Signal::SIGKILL);
    let _ = call.await;
    // The plugin was the dead daemon's child: end it.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(plugin_pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    // From now on the plugin passes the previous result through, as a
    // plugin that changes nothing does.
    std::fs::write(
        &plugin,
        "#!/bin/sh\nif [ \"$CNI_COMMAND\" = ADD ]; then jq -c .prevResult; else cat >/dev/null; fi\n",
    )
    .expect("rewrite plugin");
    d.spawn();
    let mut rt = d.runtime().await;
    let left = list(&mut rt, None).await;
    assert!(left.is_empty(), "not rolled back: {left:?}\n{}", d.log());
    remove(&mut rt, &id)
        .await
        .expect("remove of a rolled-back pod");
    assert!(!pod_dir.exists(), "pod dir left: {}", pod_dir.display());
    assert_eq!(mounts_under(&d.state_dir()), Vec::<String>::new());
    let pod_cgroup = format!("/carapace/pod-{id}");
    assert_eq!(cgroup_dirs(&pod_cgroup), Vec::<PathBuf>::new());
    let info = json!({"pid": 0, "sandboxDir": pod_dir, "infraCgroupsPath": format!("{pod_cgroup}/{id}"), "cgroupParent": pod_cgroup});
    assert_nothing_left(&d, &info);
    // And the daemon still works.
    let ok = run(&mut rt, pod_config("after"))
        .await
        .expect("run after recovery");
    remove(&mut rt, &ok).await.expect("remove");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_status_and_leaks_nothing() {
    let d = Daemon::start_with_network("", &[json!({"type": "no-such-plugin"})]);
    let mut rt = d.runtime().await;
    let code = |r: Result<String, tonic::Status>| r.expect_err("must fail").code();

    let e = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest::default())
        .await
        .expect_err("no config");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    for field in ["name", "namespace", "uid"] {
        let mut c = pod_config("bad");
        if let Some(m) = c.metadata.as_mut() {
            match field {
                "name" => m.name.clear(),
                "namespace" => m.namespace.clear(),
                _ => m.uid.clear(),
            }
        }
        let e = run(&mut rt, c).await.expect_err(field);
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{field}");
        assert!(e.message().contains(field), "{}", e.message());
    }
    let mut c = pod_config("bad");
    if let Some(l) = c.linux.as_mut() {
        l.sysctls = [("kernel.panic".to_string(), "1".to_string())].into();
    }
    assert_eq!(code(run(&mut rt, c).await), tonic::Code::InvalidArgument);
    let e = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod_config("bad")),
            runtime_handler: "nonesuch".into(),
        })
        .await
        .expect_err("unknown handler");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("nonesuch"), "{}", e.message());

    // The CNI chain fails at its last plugin: the error names it, and the
    // half-made pod is gone.
    let e = run(&mut rt, pod_config("net-fails"))
        .await
        .expect_err("CNI failure");
    assert!(e.message().contains("no-such-plugin"), "{}", e.message());
    assert!(list(&mut rt, None).await.is_empty());
    let pods = std::fs::read_dir(d.state_dir().join("pods"))
        .map(|r| r.count())
        .unwrap_or(0);
    assert_eq!(pods, 0, "pod directories left");
    assert_eq!(mounts_under(&d.state_dir()), Vec::<String>::new());

    let e = stop(&mut rt, "").await.expect_err("stop empty");
    assert_eq!(e.code(), tonic::Code::NotFound);
    // Stopping a pod that is gone succeeds, as critest and kubelet expect.
    stop(&mut rt, "0123456789abcdef")
        .await
        .expect("stopping an unknown pod succeeds");
    for id in ["", "0123456789abcdef"] {
        let e = rt
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.into(),
                verbose: false,
            })
            .await
            .expect_err("status unknown");
        assert_eq!(e.code(), tonic::Code::NotFound, "status {id:?}");
    }
    assert_eq!(
        remove(&mut rt, "").await.expect_err("remove empty").code(),
        tonic::Code::NotFound
    );
    remove(&mut rt, "0123456789abcdef")
        .await
        .expect("removing an unknown pod succeeds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_name_is_reserved_until_the_pod_is_removed() {
    let d = Daemon::start_with_network("", &[]);
    let mut rt = d.runtime().await;
    let id = run(&mut rt, pod_config("twin")).await.expect("run");
    let e = run(&mut rt, pod_config("twin"))
        .await
        .expect_err("duplicate");
    assert_eq!(e.code(), tonic::Code::AlreadyExists);
    assert!(e.message().contains(&id), "{}", e.message());
    let mut next = pod_config("twin");
    if let Some(m) = next.metadata.as_mut() {
        m.attempt = 1;
    }
    let id2 = run(&mut rt, next).await.expect("next attempt");
    remove(&mut rt, &id).await.expect("remove");
    let id3 = run(&mut rt, pod_config("twin"))
        .await
        .expect("name free again");
    remove(&mut rt, &id2).await.expect("remove");
    remove(&mut rt, &id3).await.expect("remove");
}

/// Leaves a socket file nothing listens on at `path`, as a killed shim
/// does. A process another test forks holds the listener until it execs.
fn dead_socket(path: &Path) {
    drop(std::os::unix::net::UnixListener::bind(path).expect("bind a socket"));
    while !std::os::unix::net::UnixStream::connect(path)
        .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
    {
        std::thread::sleep(Duration::from_millis(1));
    }
}
