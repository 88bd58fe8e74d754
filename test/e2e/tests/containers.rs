//! Containers end to end: busybox images from the local test registry run
//! in real pods — command and args, CRI log files, exit codes and reasons,
//! the stop signal and grace period, image users, list filters, removal
//! (with the pod too), and daemon restarts with containers running.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use carapace_e2e::{pod_config, require_registry, Daemon, HANG_GUARD};
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

type Rt = RuntimeServiceClient<Channel>;

const BUSYBOX: &str = "127.0.0.1:5000/test/busybox:latest";
const NONROOT: &str = "127.0.0.1:5000/test/nonroot:latest";

fn daemon() -> Daemon {
    require_registry();
    Daemon::start_with_network("[registry]\ninsecure = [\"127.0.0.1:5000\"]\n", &[])
}

async fn pull(d: &Daemon, image: &str) {
    d.images()
        .await
        .pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("pull");
}

/// A pod with a log directory under the daemon's temp dir.
async fn pod(d: &Daemon, rt: &mut Rt, name: &str) -> (String, cri::PodSandboxConfig) {
    let mut c = pod_config(name);
    c.log_directory = d.dir.path().join("logs").join(name).display().to_string();
    c.dns_config = Some(cri::DnsConfig {
        servers: vec!["10.96.0.10".into()],
        searches: vec!["e2e.svc".into()],
        options: vec![],
    });
    let id = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(c.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect("run pod")
        .into_inner()
        .pod_sandbox_id;
    (id, c)
}

fn container(name: &str, image: &str, args: &[&str]) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: args.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        labels: [("c".to_string(), name.to_string())].into(),
        linux: Some(cri::LinuxContainerConfig::default()),
        ..Default::default()
    }
}

async fn create(
    rt: &mut Rt,
    pod: &str,
    pod_config: &cri::PodSandboxConfig,
    c: cri::ContainerConfig,
) -> Result<String, tonic::Status> {
    rt.create_container(cri::CreateContainerRequest {
        pod_sandbox_id: pod.into(),
        config: Some(c),
        sandbox_config: Some(pod_config.clone()),
    })
    .await
    .map(|r| r.into_inner().container_id)
}

async fn start(rt: &mut Rt, id: &str) {
    rt.start_container(cri::StartContainerRequest {
        container_id: id.into(),
    })
    .await
    .expect("start");
}

async fn status(rt: &mut Rt, id: &str) -> cri::ContainerStatus {
    rt.container_status(cri::ContainerStatusRequest {
        container_id: id.into(),
        verbose: false,
    })
    .await
    .expect("container status")
    .into_inner()
    .status
    .expect("status")
}

async fn wait_exited(rt: &mut Rt, id: &str) -> cri::ContainerStatus {
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        let s = status(rt, id).await;
        if s.state == cri::ContainerState::ContainerExited as i32 {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "container {id} never exited: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The CRI log's records: (stream, tag, content).
fn log_records(p: &Path) -> Vec<(String, String, String)> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let mut it = l.splitn(4, ' ');
            let ts = it.next().unwrap_or("");
            assert!(
                ts.contains('T') && ts.ends_with('Z'),
                "timestamp {ts:?} in {l:?}"
            );
            (
                it.next().unwrap_or("").to_string(),
                it.next().unwrap_or("").to_string(),
                it.next().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_runs_in_its_pod_logs_and_exits_with_its_code() {
    let d = daemon();
    pull(&d, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let (pod_id, pod_cfg) = pod(&d, &mut rt, "logs").await;
    let script =
        "echo hello; echo oops >&2; hostname; grep nameserver /etc/resolv.conf; id -u; exit 3";
    let id = create(
        &mut rt,
        &pod_id,
        &pod_cfg,
        container("sh", BUSYBOX, &["sh", "-c", script]),
    )
    .await
    .expect("create");
    let s = status(&mut rt, &id).await;
    assert_eq!(s.state, cri::ContainerState::ContainerCreated as i32);
    start(&mut rt, &id).await;
    let s = wait_exited(&mut rt, &id).await;
    assert_eq!(s.exit_code, 3);
    assert_eq!(s.reason, "Error");
    assert!(s.started_at > 0 && s.finished_at >= s.started_at);
    let log = PathBuf::from(&s.log_path);
    assert_eq!(log, Path::new(&pod_cfg.log_directory).join("sh.log"));
    let recs = log_records(&log);
    let out: Vec<(String, String)> = recs
        .iter()
        .map(|(s, _, c)| (s.clone(), c.clone()))
        .collect();
    assert!(out.contains(&("stdout".into(), "hello".into())), "{recs:?}");
    assert!(out.contains(&("stderr".into(), "oops".into())), "{recs:?}");
    assert!(
        out.contains(&("stdout".into(), "logs".into())),
        "hostname: {recs:?}"
    );
    assert!(
        out.contains(&("stdout".into(), "nameserver 10.96.0.10".into())),
        "{recs:?}"
    );
    assert!(
        out.contains(&("stdout".into(), "0".into())),
        "uid: {recs:?}"
    );
    assert!(recs.iter().all(|(_, tag, _)| tag == "F"), "{recs:?}");

    // Removing the pod removes its containers, and their rootfs mounts.
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod_id.clone(),
    })
    .await
    .expect("remove pod");
    let e = rt
        .container_status(cri::ContainerStatusRequest {
            container_id: id.clone(),
            verbose: false,
        })
        .await
        .expect_err("container removed with its pod");
    assert_eq!(e.code(), tonic::Code::NotFound);
    assert!(
        carapace_e2e::mounts_under(d.dir.path()).is_empty(),
        "{:?}",
        carapace_e2e::mounts_under(d.dir.path())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_gives_the_grace_period_then_kills_and_remove_cleans_up() {
    let d = daemon();
    pull(&d, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let (pod_id, pod_cfg) = pod(&d, &mut rt, "stopper").await;
    // Ignores SIGTERM (and its child inherits that): only SIGKILL ends it.
    let id = create(
        &mut rt,
        &pod_id,
        &pod_cfg,
        container(
            "sleeper",
            BUSYBOX,
            &["sh", "-c", "trap '' TERM; sleep 1000"],
        ),
    )
    .await
    .expect("create");
    start(&mut rt, &id).await;
    let s = status(&mut rt, &id).await;
    assert_eq!(s.state, cri::ContainerState::ContainerRunning as i32);
    // A second one that traps TERM and exits 0.
    let graceful = create(
        &mut rt,
        &pod_id,
        &pod_cfg,
        container(
            "graceful",
            BUSYBOX,
            &[
                "sh",
                "-c",
                "trap 'exit 0' TERM; while true; do sleep 0.1; done",
            ],
        ),
    )
    .await
    .expect("create graceful");
    start(&mut rt, &graceful).await;

    let lister = rt.clone();
    let list = move |f: cri::ContainerFilter| {
        let mut rt = lister.clone();
        async move {
            let mut ids: Vec<String> = rt
                .list_containers(cri::ListContainersRequest { filter: Some(f) })
                .await
                .expect("list")
                .into_inner()
                .containers
                .into_iter()
                .map(|c| c.id)
                .collect();
            ids.sort();
            ids
        }
    };
    let mut both = vec![id.clone(), graceful.clone()];
    both.sort();
    assert_eq!(
        list(cri::ContainerFilter {
            pod_sandbox_id: pod_id.clone(),
            ..Default::default()
        })
        .await,
        both
    );
    assert_eq!(
        list(cri::ContainerFilter {
            label_selector: [("c".to_string(), "sleeper".to_string())].into(),
            ..Default::default()
        })
        .await,
        vec![id.clone()]
    );
    assert_eq!(
        list(cri::ContainerFilter {
            id: id[..10].into(),
            ..Default::default()
        })
        .await,
        vec![id.clone()]
    );

    // Give the trap a moment to be installed before TERM arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    rt.stop_container(cri::StopContainerRequest {
        container_id: graceful.clone(),
        timeout: 30,
    })
    .await
    .expect("stop graceful");
    let s = status(&mut rt, &graceful).await;
    assert_eq!(s.state, cri::ContainerState::ContainerExited as i32);
    assert_eq!((s.exit_code, s.reason.as_str()), (0, "Completed"));

    rt.stop_container(cri::StopContainerRequest {
        container_id: id.clone(),
        timeout: 1,
    })
    .await
    .expect("stop");
    let s = status(&mut rt, &id).await;
    assert_eq!(s.state, cri::ContainerState::ContainerExited as i32);
    assert_eq!(s.exit_code, 137, "{s:?}");
    assert_eq!(
        list(cri::ContainerFilter {
            state: Some(cri::ContainerStateValue {
                state: cri::ContainerState::ContainerExited as i32
            }),
            ..Default::default()
        })
        .await,
        both
    );
    rt.stop_container(cri::StopContainerRequest {
        container_id: id.clone(),
        timeout: 1,
    })
    .await
    .expect("stop is idempotent");
    for c in [&id, &graceful] {
        rt.remove_container(cri::RemoveContainerRequest {
            container_id: c.to_string(),
        })
        .await
        .expect("remove");
    }
    rt.remove_container(cri::RemoveContainerRequest {
        container_id: id.clone(),
    })
    .await
    .expect("remove is idempotent");
    assert!(list(cri::ContainerFilter::default()).await.is_empty());
    let state_dir = d.state_dir().join("containers");
    assert_eq!(
        std::fs::read_dir(&state_dir)
            .map(|r| r.count())
            .unwrap_or(0),
        0,
        "bundles left"
    );
    assert!(carapace_e2e::mounts_under(&d.dir.path().join("state/containers")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_user_is_used_and_reported() {
    let d = daemon();
    pull(&d, NONROOT).await;
    let mut rt = d.runtime().await;
    let (pod_id, pod_cfg) = pod(&d, &mut rt, "users").await;
    let id = create(
        &mut rt,
        &pod_id,
        &pod_cfg,
        container("who", NONROOT, &["sh", "-c", "id -u; id -g; pwd"]),
    )
    .await
    .expect("create");
    start(&mut rt, &id).await;
    let s = wait_exited(&mut rt, &id).await;
    assert_eq!(s.exit_code, 0);
    let user = s.user.and_then(|u| u.linux).expect("user");
    assert_eq!((user.uid, user.gid), (1000, 1000));
    let out: Vec<String> = log_records(Path::new(&s.log_path))
        .into_iter()
        .map(|r| r.2)
        .collect();
    assert_eq!(out, vec!["1000", "1000", "/home/app"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_containers_survive_a_daemon_restart() {
    let mut d = daemon();
    pull(&d, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let (pod_id, pod_cfg) = pod(&d, &mut rt, "restart").await;
    let id = create(
        &mut rt,
        &pod_id,
        &pod_cfg,
        container("long", BUSYBOX, &["sleep", "1000"]),
    )
    .await
    .expect("create");
    start(&mut rt, &id).await;
    drop(rt);
    d.stop(nix::sys::signal::Signal::SIGKILL);
    d.spawn();
    let mut rt = d.runtime().await;
    let s = status(&mut rt, &id).await;
    assert_eq!(
        s.state,
        cri::ContainerState::ContainerRunning as i32,
        "{s:?}\n{}",
        d.log()
    );
    rt.stop_container(cri::StopContainerRequest {
        container_id: id.clone(),
        timeout: 0,
    })
    .await
    .expect("stop after restart");
    let s = status(&mut rt, &id).await;
    assert_eq!(s.state, cri::ContainerState::ContainerExited as i32);
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod_id,
    })
    .await
    .expect("remove pod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_container_requests_get_clear_statuses() {
    let d = daemon();
    pull(&d, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let (pod_id, pod_cfg) = pod(&d, &mut rt, "bad").await;
    let e = create(
        &mut rt,
        "nope",
        &pod_cfg,
        container("x", BUSYBOX, &["true"]),
    )
    .await
    .expect_err("unknown pod");
    assert_eq!(e.code(), tonic::Code::NotFound);
    let e = create(
        &mut rt,
        &pod_id,
        &pod_cfg,
        container("x", "127.0.0.1:5000/test/absent:1", &["true"]),
    )
    .await
    .expect_err("image not pulled");
    assert_eq!(e.code(), tonic::Code::NotFound);
    let e = create(
        &mut rt,
        &pod_id,
        &pod_cfg,
        container("", BUSYBOX, &["true"]),
    )
    .await
    .expect_err("no name");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let first = create(
        &mut rt,
        &pod_id,
        &pod_cfg,
        container("dup", BUSYBOX, &["true"]),
    )
    .await
    .expect("create");
    let e = create(
        &mut rt,
        &pod_id,
        &pod_cfg,
        container("dup", BUSYBOX, &["true"]),
    )
    .await
    .expect_err("duplicate name");
    assert_eq!(e.code(), tonic::Code::AlreadyExists);
    assert!(e.message().contains(&first), "{}", e.message());
    let e = rt
        .start_container(cri::StartContainerRequest {
            container_id: "missing".into(),
        })
        .await
        .expect_err("start unknown");
    assert_eq!(e.code(), tonic::Code::NotFound);
}
