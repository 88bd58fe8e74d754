//! Container and pod stats end to end: a busybox container that fills
//! its writable layer and burns CPU in a real pod, measured through
//! ContainerStats, ListContainerStats, PodSandboxStats and
//! ListPodSandboxStats — CPU counters and rates, memory, the writable
//! layer, the pod's network counters and process count, list filters,
//! stopped containers and pods, unknown IDs, and host-network pods; a
//! container holding 52 MiB in its heap, and traffic from pod to pod.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use carapace_e2e::workload::{knock_on_pod, pull, run_pod, start, Rt};
use carapace_e2e::{eventually, pod_config, require_registry, Daemon, HANG_GUARD};
use k8s_cri::v1 as cri;

const BUSYBOX: &str = "127.0.0.1:5000/test/busybox:latest";

/// What the busy container writes to its writable layer.
const WRITTEN: u64 = 20 << 20;

fn container(name: &str, script: &str) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: BUSYBOX.into(),
            ..Default::default()
        }),
        command: vec!["sh".into(), "-c".into(), script.into()],
        labels: [("c".to_string(), name.to_string())].into(),
        annotations: [("note".to_string(), format!("{name}-annotation"))].into(),
        linux: Some(cri::LinuxContainerConfig::default()),
        ..Default::default()
    }
}

async fn create(
    rt: &mut Rt,
    pod: &str,
    pod_cfg: &cri::PodSandboxConfig,
    c: cri::ContainerConfig,
) -> String {
    rt.create_container(cri::CreateContainerRequest {
        pod_sandbox_id: pod.into(),
        config: Some(c),
        sandbox_config: Some(pod_cfg.clone()),
    })
    .await
    .expect("create container")
    .into_inner()
    .container_id
}

async fn container_stats(rt: &mut Rt, id: &str) -> cri::ContainerStats {
    rt.container_stats(cri::ContainerStatsRequest {
        container_id: id.into(),
    })
    .await
    .expect("container stats")
    .into_inner()
    .stats
    .expect("stats")
}

async fn list_container_stats(rt: &mut Rt, filter: cri::ContainerStatsFilter) -> Vec<String> {
    let mut ids: Vec<String> = rt
        .list_container_stats(cri::ListContainerStatsRequest {
            filter: Some(filter),
        })
        .await
        .expect("list container stats")
        .into_inner()
        .stats
        .into_iter()
        .map(|s| s.attributes.expect("attributes").id)
        .collect();
    ids.sort();
    ids
}

async fn pod_stats(rt: &mut Rt, id: &str) -> Result<cri::PodSandboxStats, tonic::Status> {
    rt.pod_sandbox_stats(cri::PodSandboxStatsRequest {
        pod_sandbox_id: id.into(),
    })
    .await
    .map(|r| r.into_inner().stats.expect("stats"))
}

async fn list_pod_stats(rt: &mut Rt, filter: Option<cri::PodSandboxStatsFilter>) -> Vec<String> {
    rt.list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest { filter })
        .await
        .expect("list pod stats")
        .into_inner()
        .stats
        .into_iter()
        .map(|s| s.attributes.expect("attributes").id)
        .collect()
}

fn val(v: &Option<cri::UInt64Value>) -> Option<u64> {
    v.as_ref().map(|v| v.value)
}

fn cpu_used(s: &cri::ContainerStats) -> u64 {
    s.cpu
        .as_ref()
        .and_then(|c| val(&c.usage_core_nano_seconds))
        .unwrap_or_else(|| panic!("no CPU counter: {s:?}"))
}

fn labels(kv: &[(&str, &str)]) -> HashMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_follow_a_busy_container_and_its_pod() {
    require_registry();
    let d = Daemon::start_with_network("[registry]\ninsecure = [\"127.0.0.1:5000\"]\n", &[]);
    pull(&d, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let mut pod_cfg = pod_config("stats");
    pod_cfg.log_directory = d.dir.path().join("logs").display().to_string();
    let pod = run_pod(&mut rt, pod_cfg.clone()).await;

    let busy = create(
        &mut rt,
        &pod,
        &pod_cfg,
        container(
            "busy",
            "dd if=/dev/zero of=/tmp/x bs=1M count=20; while :; do :; done",
        ),
    )
    .await;
    let idle = create(&mut rt, &pod, &pod_cfg, container("idle", "sleep 3600")).await;

    // A created container already has stats: its attributes, and no CPU
    // rate on a first sample.
    let s = container_stats(&mut rt, &busy).await;
    let a = s.attributes.clone().expect("attributes");
    assert_eq!(a.id, busy);
    assert_eq!(a.metadata.expect("metadata").name, "busy");
    assert_eq!(a.labels, labels(&[("c", "busy")]));
    assert_eq!(a.annotations, labels(&[("note", "busy-annotation")]));
    assert_eq!(
        s.cpu.as_ref().and_then(|c| val(&c.usage_nano_cores)),
        None,
        "a first sample has no rate: {s:?}"
    );
    let layer = s.writable_layer.expect("writable layer");
    assert!(!layer.fs_id.expect("fs id").mountpoint.is_empty());
    assert!(val(&layer.inodes_used).expect("inodes") >= 1);

    start(&mut rt, &busy).await;
    start(&mut rt, &idle).await;

    // CPU: the counter grows while the container spins, and once it grew
    // between two samples the rate is positive.
    let deadline = Instant::now() + HANG_GUARD;
    let mut before = cpu_used(&container_stats(&mut rt, &busy).await);
    let (used, rate) = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let s = container_stats(&mut rt, &busy).await;
        let used = cpu_used(&s);
        if used > before {
            break (used, s.cpu.as_ref().and_then(|c| val(&c.usage_nano_cores)));
        }
        assert!(Instant::now() < deadline, "CPU usage stuck at {used} ns");
        before = used;
    };
    assert!(used > 0);
    assert!(
        rate.expect("a second sample has a rate") > 0,
        "rate {rate:?}"
    );

    // Memory: the working set is there and within usage.
    let s = container_stats(&mut rt, &busy).await;
    let m = s.memory.expect("memory");
    let ws = val(&m.working_set_bytes).expect("working set");
    assert!(ws > 0, "{m:?}");
    assert!(ws <= val(&m.usage_bytes).expect("usage"), "{m:?}");
    assert!(val(&m.page_faults).expect("page faults") > 0, "{m:?}");

    // The writable layer holds what dd wrote, once measured again.
    let layer = eventually("the writable layer to hold the 20 MiB file", || {
        let mut rt = rt.clone();
        let busy = busy.clone();
        async move {
            let l = container_stats(&mut rt, &busy)
                .await
                .writable_layer
                .expect("writable layer");
            match val(&l.used_bytes) {
                Some(b) if b >= WRITTEN => Ok(l),
                b => Err(format!("{b:?} bytes")),
            }
        }
    })
    .await;
    assert!(
        val(&layer.inodes_used).expect("inodes") >= 3,
        "upper, /tmp, /tmp/x: {layer:?}"
    );
    assert!(layer.timestamp > 0);

    // List filters: ID prefix, pod, labels.
    let mut both = vec![busy.clone(), idle.clone()];
    both.sort();
    assert_eq!(
        list_container_stats(&mut rt, Default::default()).await,
        both
    );
    let by = |id: &str, pod: &str, sel: &[(&str, &str)]| cri::ContainerStatsFilter {
        id: id.into(),
        pod_sandbox_id: pod.into(),
        label_selector: labels(sel),
    };
    assert_eq!(
        list_container_stats(&mut rt, by(&busy[..12], "", &[])).await,
        vec![busy.clone()]
    );
    assert_eq!(list_container_stats(&mut rt, by("", &pod, &[])).await, both);
    assert_eq!(
        list_container_stats(&mut rt, by("", &pod[..8], &[("c", "idle")])).await,
        vec![idle.clone()]
    );
    assert!(
        list_container_stats(&mut rt, by("", "", &[("c", "idle"), ("x", "y")]))
            .await
            .is_empty()
    );
    assert!(list_container_stats(&mut rt, by("", "0000", &[]))
        .await
        .is_empty());
    assert!(
        list_container_stats(&mut rt, by(&idle, "", &[("c", "busy")]))
            .await
            .is_empty()
    );

    // The pod: its cgroup, its containers, its processes (infra, the busy
    // shell, sleep) and its own network, with traffic on eth0 once the
    // host knocks on the pod's address.
    knock_on_pod(&mut rt, &pod).await;
    let ps = eventually("traffic on the pod's eth0", || {
        let mut rt = rt.clone();
        let pod = pod.clone();
        async move {
            let ps = pod_stats(&mut rt, &pod).await.expect("pod stats");
            let n = ps
                .linux
                .as_ref()
                .and_then(|l| l.network.clone())
                .expect("network");
            let eth0 = n.default_interface.clone().expect("default interface");
            match (val(&eth0.rx_bytes), val(&eth0.tx_bytes)) {
                (Some(rx), Some(tx)) if rx > 0 && tx > 0 => Ok(ps),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    assert_eq!(ps.attributes.as_ref().expect("attributes").id, pod);
    assert_eq!(
        ps.attributes.as_ref().expect("attributes").labels,
        labels(&[("app", "stats")])
    );
    let linux = ps.linux.expect("linux");
    let net = linux.network.expect("network");
    assert_eq!(net.default_interface.expect("default").name, "eth0");
    let names: Vec<&str> = net.interfaces.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["eth0"], "the pod's interfaces, not the host's");
    assert!(val(&linux.cpu.expect("pod cpu").usage_core_nano_seconds).expect("cpu") > 0);
    assert!(val(&linux.memory.expect("pod memory").working_set_bytes).expect("ws") > 0);
    let procs = val(&linux.process.expect("process usage").process_count).expect("count");
    assert!(procs >= 2, "infra and containers: {procs}");
    let mut in_pod: Vec<String> = linux
        .containers
        .iter()
        .map(|c| c.attributes.clone().expect("attributes").id)
        .collect();
    in_pod.sort();
    assert_eq!(in_pod, both);

    let pf = |id: &str, sel: &[(&str, &str)]| {
        Some(cri::PodSandboxStatsFilter {
            id: id.into(),
            label_selector: labels(sel),
        })
    };
    assert_eq!(list_pod_stats(&mut rt, None).await, vec![pod.clone()]);
    assert_eq!(
        list_pod_stats(&mut rt, pf(&pod[..10], &[])).await,
        vec![pod.clone()]
    );
    assert_eq!(
        list_pod_stats(&mut rt, pf("", &[("app", "stats")])).await,
        vec![pod.clone()]
    );
    assert!(list_pod_stats(&mut rt, pf("", &[("app", "other")]))
        .await
        .is_empty());

    // Unknown IDs.
    let e = rt
        .container_stats(cri::ContainerStatsRequest {
            container_id: "0123456789abcdef".into(),
        })
        .await
        .expect_err("unknown container");
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    let e = pod_stats(&mut rt, "0123456789abcdef")
        .await
        .expect_err("unknown pod");
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");

    // An exited container keeps its attributes and layer, without CPU or
    // memory: nothing runs.
    rt.stop_container(cri::StopContainerRequest {
        container_id: busy.clone(),
        timeout: 0,
    })
    .await
    .expect("stop");
    let s = container_stats(&mut rt, &busy).await;
    assert_eq!(s.attributes.expect("attributes").id, busy);
    assert!(
        s.cpu.is_none() && s.memory.is_none(),
        "{:?} {:?}",
        s.cpu,
        s.memory
    );
    assert!(val(&s.writable_layer.expect("layer").used_bytes).expect("bytes") >= WRITTEN);

    // A stopped pod has no stats to give, and is not listed.
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .expect("stop pod");
    let e = pod_stats(&mut rt, &pod).await.expect_err("stopped pod");
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    assert!(list_pod_stats(&mut rt, None).await.is_empty());

    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .expect("remove pod");
    assert!(list_container_stats(&mut rt, Default::default())
        .await
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_network_pods_report_no_network_stats() {
    // No CNI config and no image needed: just the infra on the host network.
    let d = Daemon::start("");
    let mut rt = d.runtime().await;
    let mut c = pod_config("hoststats");
    if let Some(o) = c
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
    {
        o.network = cri::NamespaceMode::Node as i32;
    }
    let pod = run_pod(&mut rt, c).await;
    let ps = pod_stats(&mut rt, &pod).await.expect("pod stats");
    let linux = ps.linux.expect("linux");
    assert!(linux.network.is_none(), "{:?}", linux.network);
    let procs = val(&linux.process.expect("process usage").process_count).expect("count");
    assert!(procs >= 1, "the infra: {procs}");
    assert!(linux.containers.is_empty());
    assert!(linux.cpu.is_some() && linux.memory.is_some());
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .expect("remove pod");
}

/// The pod's eth0 counters (rx, tx bytes).
async fn eth0_bytes(rt: &mut Rt, pod: &str) -> (u64, u64) {
    let ps = pod_stats(rt, pod).await.expect("pod stats");
    let eth0 = ps
        .linux
        .and_then(|l| l.network)
        .and_then(|n| n.default_interface)
        .expect("eth0 stats");
    (
        val(&eth0.rx_bytes).expect("rx"),
        val(&eth0.tx_bytes).expect("tx"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_memory_and_traffic_between_two_pods_show_in_stats() {
    require_registry();
    let d = Daemon::start_with_network("[registry]\ninsecure = [\"127.0.0.1:5000\"]\n", &[]);
    pull(&d, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let pod_of = |name: &str| {
        let mut c = pod_config(name);
        c.log_directory = d.dir.path().join("logs").join(name).display().to_string();
        c
    };
    let (server_cfg, client_cfg) = (pod_of("server"), pod_of("client"));
    let server = run_pod(&mut rt, server_cfg.clone()).await;
    let client = run_pod(&mut rt, client_cfg.clone()).await;

    // The server pod serves 4 MiB over HTTP; the client pod's container
    // holds 52 MiB in its shell's own heap (a variable), then sleeps.
    let web = create(
        &mut rt,
        &server,
        &server_cfg,
        container(
            "web",
            "mkdir /www && dd if=/dev/zero of=/www/blob bs=1M count=4 && \
             exec httpd -f -p 8080 -h /www",
        ),
    )
    .await;
    let hog = create(
        &mut rt,
        &client,
        &client_cfg,
        container(
            "hog",
            "x=$(head -c 54525952 /dev/zero | tr '\\0' a); \
             while :; do sleep 3600; done",
        ),
    )
    .await;
    start(&mut rt, &web).await;
    start(&mut rt, &hog).await;

    // Memory: once the shell holds its 52 MiB, the working set has it.
    let (ws, usage) = eventually("a working set of at least 50 MiB", || {
        let mut rt = rt.clone();
        let hog = hog.clone();
        async move {
            let m = container_stats(&mut rt, &hog).await.memory.expect("memory");
            match (val(&m.working_set_bytes), val(&m.usage_bytes)) {
                (Some(ws), Some(usage)) if ws >= 50 << 20 => Ok((ws, usage)),
                _ => Err(format!("{m:?}")),
            }
        }
    })
    .await;
    // One sample: the working set is usage less inactive file pages.
    assert!(ws <= usage, "working set {ws} within usage {usage}");

    // Network: 4 MiB fetched from pod to pod shows on both pods' eth0.
    let ip = carapace_e2e::workload::pod_ip(&mut rt, &server).await;
    let (server_rx0, server_tx0) = eth0_bytes(&mut rt, &server).await;
    let (client_rx0, client_tx0) = eth0_bytes(&mut rt, &client).await;
    let fetch = format!("wget -q -O /dev/null http://{ip}:8080/blob");
    // httpd may still be starting: retry until the fetch succeeds.
    eventually("the client pod to fetch the blob", || {
        let mut rt = rt.clone();
        let (hog, fetch) = (hog.clone(), fetch.clone());
        async move {
            let r = carapace_e2e::workload::exec(&mut rt, &hog, &["sh", "-c", &fetch], 20)
                .await
                .map_err(|e| e.to_string())?;
            match r.exit_code {
                0 => Ok(()),
                code => Err(format!(
                    "wget exit {code}: {}",
                    String::from_utf8_lossy(&r.stderr)
                )),
            }
        }
    })
    .await;
    let (server_rx, server_tx) = eth0_bytes(&mut rt, &server).await;
    let (client_rx, client_tx) = eth0_bytes(&mut rt, &client).await;
    let mib4 = 4 << 20;
    assert!(
        server_tx - server_tx0 >= mib4,
        "server tx {server_tx0} → {server_tx}"
    );
    assert!(
        client_rx - client_rx0 >= mib4,
        "client rx {client_rx0} → {client_rx}"
    );
    assert!(
        server_rx > server_rx0,
        "server rx {server_rx0} → {server_rx}"
    );
    assert!(
        client_tx > client_tx0,
        "client tx {client_tx0} → {client_tx}"
    );
}
