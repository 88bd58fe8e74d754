//! CRI metrics end to end, as kubelet uses them with
//! PodAndContainerStatsFromCRI: ListMetricDescriptors declares cAdvisor's
//! names and labels, and ListPodSandboxMetrics gives, for a real pod with
//! a CPU-burning busybox container, growing CPU seconds and a working set
//! for the container and network counters for the pod's eth0 — every
//! sample with one label value per key of its descriptor.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use carapace_e2e::workload::{create, knock_on_pod, pull, run_pod, start, Rt};
use carapace_e2e::{pod_config, require_registry, Daemon, HANG_GUARD};
use k8s_cri::v1 as cri;

const BUSYBOX: &str = "127.0.0.1:5000/test/busybox:latest";

const BASE: [&str; 5] = ["id", "image", "namespace", "pod", "container"];

/// The metrics the daemon must serve, with the label keys each has after
/// the base ones.
const REQUIRED: &[(&str, &[&str])] = &[
    ("container_cpu_usage_seconds_total", &["cpu"]),
    ("container_cpu_user_seconds_total", &[]),
    ("container_cpu_system_seconds_total", &[]),
    ("container_memory_usage_bytes", &[]),
    ("container_memory_working_set_bytes", &[]),
    ("container_memory_rss", &[]),
    ("container_memory_cache", &[]),
    ("container_memory_swap", &[]),
    ("container_memory_max_usage_bytes", &[]),
    ("container_memory_failcnt", &[]),
    ("container_oom_events_total", &[]),
    ("container_spec_memory_limit_bytes", &[]),
    ("container_processes", &[]),
    ("container_last_seen", &[]),
    ("container_network_receive_bytes_total", &["interface"]),
    ("container_network_transmit_bytes_total", &["interface"]),
    ("container_network_receive_errors_total", &["interface"]),
    ("container_network_transmit_errors_total", &["interface"]),
    ("container_network_receive_packets_total", &["interface"]),
    ("container_network_transmit_packets_total", &["interface"]),
];

async fn descriptors(rt: &mut Rt) -> HashMap<String, Vec<String>> {
    rt.list_metric_descriptors(cri::ListMetricDescriptorsRequest {})
        .await
        .expect("list metric descriptors")
        .into_inner()
        .descriptors
        .into_iter()
        .map(|d| {
            assert!(!d.help.is_empty(), "{} has no help", d.name);
            (d.name, d.label_keys)
        })
        .collect()
}

async fn pod_metrics(rt: &mut Rt) -> Vec<cri::PodSandboxMetrics> {
    rt.list_pod_sandbox_metrics(cri::ListPodSandboxMetricsRequest {})
        .await
        .expect("list pod sandbox metrics")
        .into_inner()
        .pod_metrics
}

/// The metrics of pod `pod` (pod level, and per container ID).
async fn of_pod(rt: &mut Rt, pod: &str) -> (Vec<cri::Metric>, HashMap<String, Vec<cri::Metric>>) {
    let p = pod_metrics(rt)
        .await
        .into_iter()
        .find(|p| p.pod_sandbox_id == pod)
        .unwrap_or_else(|| panic!("pod {pod} not listed"));
    let containers = p
        .container_metrics
        .into_iter()
        .map(|c| (c.container_id, c.metrics))
        .collect();
    (p.metrics, containers)
}

/// The one sample named `name` whose last label value is `last` (for
/// metrics with an extra label) or any (`None`).
fn find<'a>(ms: &'a [cri::Metric], name: &str, last: Option<&str>) -> Option<&'a cri::Metric> {
    ms.iter().find(|m| {
        m.name == name && last.is_none_or(|l| m.label_values.last().map(String::as_str) == Some(l))
    })
}

fn value(m: &cri::Metric) -> u64 {
    m.value.as_ref().expect("a value").value
}

/// Kubelet drops a sample whose label count differs from its descriptor.
fn assert_labels_match(ds: &HashMap<String, Vec<String>>, ms: &[cri::Metric]) {
    for m in ms {
        let keys = ds
            .get(&m.name)
            .unwrap_or_else(|| panic!("{} has no descriptor", m.name));
        assert_eq!(m.label_values.len(), keys.len(), "{m:?} vs {keys:?}");
        assert!(m.timestamp > 0, "{m:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_a_busy_container_and_its_pod() {
    require_registry();
    let d = Daemon::start_with_network("[registry]\ninsecure = [\"127.0.0.1:5000\"]\n", &[]);
    pull(&d, BUSYBOX).await;
    let mut rt = d.runtime().await;

    // The descriptors: every required name, with cAdvisor/CRI-O labels.
    let ds = descriptors(&mut rt).await;
    for (name, extra) in REQUIRED {
        let want: Vec<String> = BASE.iter().chain(*extra).map(|s| s.to_string()).collect();
        assert_eq!(ds.get(*name), Some(&want), "descriptor of {name}");
    }

    // Nothing runs yet: nothing to report.
    assert!(pod_metrics(&mut rt).await.is_empty());

    let mut pod_cfg = pod_config("metrics");
    pod_cfg.log_directory = d.dir.path().join("logs").display().to_string();
    let pod = run_pod(&mut rt, pod_cfg.clone()).await;
    let burn = create(
        &mut rt,
        &pod,
        &pod_cfg,
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: "burn".into(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: BUSYBOX.into(),
                ..Default::default()
            }),
            command: vec!["sh".into(), "-c".into(), "while :; do :; done".into()],
            linux: Some(cri::LinuxContainerConfig::default()),
            ..Default::default()
        },
    )
    .await
    .expect("create container");

    // Created, not running: seen, but no cgroup metrics.
    let (_, cs) = of_pod(&mut rt, &pod).await;
    let ms = cs.get(&burn).expect("the container is listed");
    assert!(find(ms, "container_last_seen", None).is_some(), "{ms:?}");
    assert!(
        find(ms, "container_cpu_usage_seconds_total", None).is_none(),
        "{ms:?}"
    );

    start(&mut rt, &burn).await;

    // CPU seconds (whole seconds) grow while the container spins.
    let deadline = Instant::now() + HANG_GUARD;
    let mut first: Option<u64> = None;
    let cpu = loop {
        let (_, cs) = of_pod(&mut rt, &pod).await;
        let ms = cs.get(&burn).expect("the container is listed").clone();
        assert_labels_match(&ds, &ms);
        if let Some(m) = find(&ms, "container_cpu_usage_seconds_total", Some("total")) {
            match first {
                None => first = Some(value(m)),
                Some(f) if value(m) > f => break m.clone(),
                Some(_) => {}
            }
        }
        assert!(
            Instant::now() < deadline,
            "CPU seconds never grew from {first:?}: {ms:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        cpu.label_values,
        [burn.as_str(), BUSYBOX, "e2e", "metrics", "burn", "total"]
    );
    assert_eq!(cpu.metric_type, cri::MetricType::Counter as i32);

    let (_, cs) = of_pod(&mut rt, &pod).await;
    let ms = &cs[&burn];
    let ws = find(ms, "container_memory_working_set_bytes", None).expect("working set");
    assert!(value(ws) > 0, "{ws:?}");
    assert_eq!(ws.metric_type, cri::MetricType::Gauge as i32);
    let procs = find(ms, "container_processes", None).expect("processes");
    assert!(value(procs) >= 1, "{procs:?}");
    let seen = find(ms, "container_last_seen", None).expect("last seen");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!(value(seen) > 0 && value(seen) <= now, "{seen:?}");

    // The pod's own network: eth0 counters, once the host knocks on the
    // pod's address (refused or not, packets cross eth0).
    knock_on_pod(&mut rt, &pod).await;
    let deadline = Instant::now() + HANG_GUARD;
    let net = loop {
        let (net, _) = of_pod(&mut rt, &pod).await;
        let rx = find(&net, "container_network_receive_bytes_total", Some("eth0"));
        let tx = find(&net, "container_network_transmit_bytes_total", Some("eth0"));
        if matches!((rx, tx), (Some(r), Some(t)) if value(r) > 0 && value(t) > 0) {
            break net;
        }
        assert!(Instant::now() < deadline, "no eth0 traffic: {net:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_labels_match(&ds, &net);
    for (name, extra) in REQUIRED {
        if extra == &["interface"] {
            assert!(find(&net, name, Some("eth0")).is_some(), "{name}: {net:?}");
        }
    }
    let rx = find(
        &net,
        "container_network_receive_packets_total",
        Some("eth0"),
    )
    .expect("rx");
    assert_eq!(
        rx.label_values,
        [pod.as_str(), "", "e2e", "metrics", "POD", "eth0"]
    );
    assert!(value(rx) > 0, "{rx:?}");
    assert!(
        net.iter()
            .all(|m| m.label_values.last().map(String::as_str) != Some("lo")),
        "loopback is left out: {net:?}"
    );

    // Stopped: the container is still seen, without cgroup metrics; a
    // stopped pod is not listed at all.
    rt.stop_container(cri::StopContainerRequest {
        container_id: burn.clone(),
        timeout: 0,
    })
    .await
    .expect("stop");
    let (_, cs) = of_pod(&mut rt, &pod).await;
    let ms = &cs[&burn];
    assert!(
        ms.iter().all(|m| m.name == "container_last_seen"),
        "an exited container has no cgroup metrics: {ms:?}"
    );
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .expect("stop pod");
    assert!(pod_metrics(&mut rt).await.is_empty());
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .expect("remove pod");
}
