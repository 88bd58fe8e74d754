//! The daemon's Prometheus endpoint end to end: with `[metrics] address`
//! set, GET /metrics answers in the OpenMetrics text format with every CRI
//! call counted by method and status code and timed, pods by state, and
//! the process's own figures; other paths are 404; without the setting
//! nothing listens.

use std::io::{Read, Write};
use std::net::TcpStream;

use carapace_e2e::workload::run_pod;
use carapace_e2e::{pod_config, Daemon};
use k8s_cri::v1 as cri;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `GET path` over HTTP/1.1: (status line, body).
fn get(port: u16, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to /metrics");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");
    let (head, body) = out.split_once("\r\n\r\n").expect("http response");
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// The value of the sample whose line starts with `name{` and holds every
/// `label="value"` of `labels`.
fn sample(body: &str, name: &str, labels: &[&str]) -> Option<f64> {
    body.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|x| l.contains(x)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_calls_pods_and_the_process() {
    let port = free_port();
    let d =
        Daemon::start_with_network(&format!("[metrics]\naddress = \"127.0.0.1:{port}\"\n"), &[]);
    let mut rt = d.runtime().await;
    for _ in 0..3 {
        rt.version(cri::VersionRequest::default())
            .await
            .expect("version");
    }
    let e = rt
        .container_status(cri::ContainerStatusRequest {
            container_id: "nope".into(),
            verbose: false,
        })
        .await
        .expect_err("unknown container");
    assert_eq!(e.code(), tonic::Code::NotFound);
    run_pod(&mut rt, pod_config("prom")).await;

    let (status, body) = get(port, "/metrics");
    assert!(status.contains(" 200 "), "{status}");
    let rs = "grpc_service=\"runtime.v1.RuntimeService\"";
    assert_eq!(
        sample(
            &body,
            "grpc_server_handled_total",
            &[rs, "grpc_method=\"Version\"", "grpc_code=\"OK\""]
        ),
        Some(3.0),
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            "grpc_server_handled_total",
            &[
                rs,
                "grpc_method=\"ContainerStatus\"",
                "grpc_code=\"NotFound\""
            ]
        ),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            "grpc_server_handling_seconds_count",
            &[rs, "grpc_method=\"RunPodSandbox\""]
        ),
        Some(1.0),
        "{body}"
    );
    assert!(
        sample(
            &body,
            "grpc_server_handling_seconds_sum",
            &[rs, "grpc_method=\"RunPodSandbox\""]
        )
        .is_some_and(|s| s > 0.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "carapace_pod_sandboxes", &["state=\"ready\""]),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "carapace_containers", &["state=\"running\""]),
        Some(0.0),
        "{body}"
    );
    assert!(
        sample(&body, "process_resident_memory_bytes", &[]).is_some_and(|v| v > 1e6),
        "{body}"
    );
    assert!(
        sample(&body, "process_open_fds", &[]).is_some_and(|v| v >= 3.0),
        "{body}"
    );
    assert!(body.trim_end().ends_with("# EOF"), "not OpenMetrics text");

    let (status, _) = get(port, "/other");
    assert!(status.contains(" 404 "), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_address_no_endpoint() {
    let d = Daemon::start("");
    let log = d.log();
    assert!(!log.contains("serving Prometheus metrics"), "{log}");
}
