//! Containers end to end: busybox images from the local test registry run
//! in real pods — command and args, CRI log files, exit codes and reasons,
//! the stop signal and grace period, image users, list filters, removal
//! (with the pod too), and daemon restarts with containers running.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use carapace_e2e::workload::{create, exec, pull, run_pod, start, status, wait_exited, Rt};
use carapace_e2e::{pod_config, require_registry, Daemon, HANG_GUARD};
use k8s_cri::v1 as cri;

const BUSYBOX: &str = "127.0.0.1:5000/test/busybox:latest";
const NONROOT: &str = "127.0.0.1:5000/test/nonroot:latest";

fn daemon() -> Daemon {
    require_registry();
    Daemon::start_with_network("[registry]\ninsecure = [\"127.0.0.1:5000\"]\n", &[])
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
    let id = run_pod(rt, c.clone()).await;
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
    let r = exec(&mut rt, &id, &["echo", "still here"], 0)
        .await
        .expect("exec after restart");
    assert_eq!((r.exit_code, r.stdout), (0, b"still here\n".to_vec()));
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
async fn exec_sync_runs_as_the_container_and_returns_output_and_code() {
    let d = daemon();
    pull(&d, NONROOT).await;
    let mut rt = d.runtime().await;
    let (pod_id, pod_cfg) = pod(&d, &mut rt, "exec").await;
    let mut cfg = container("app", NONROOT, &["sleep", "1000"]);
    cfg.envs = vec![cri::KeyValue {
        key: "GREETING".into(),
        value: "hi there".into(),
    }];
    let id = create(&mut rt, &pod_id, &pod_cfg, cfg)
        .await
        .expect("create");

    // Not started yet: refused, not run.
    let e = exec(&mut rt, &id, &["true"], 0)
        .await
        .expect_err("created, not running");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    start(&mut rt, &id).await;

    let script = "echo \"$GREETING\"; id -u; pwd; hostname; echo oops >&2; exit 3";
    let r = exec(&mut rt, &id, &["sh", "-c", script], 10)
        .await
        .expect("exec");
    assert_eq!(r.exit_code, 3);
    assert_eq!(
        String::from_utf8_lossy(&r.stdout),
        "hi there\n1000\n/home/app\nexec\n"
    );
    assert_eq!(r.stderr, b"oops\n");

    // More output than a pipe holds comes back whole.
    let r = exec(&mut rt, &id, &["seq", "1", "200000"], 0)
        .await
        .expect("big output");
    let want: String = (1..=200000).map(|i| format!("{i}\n")).collect();
    assert_eq!(r.stdout.len(), want.len());
    assert!(r.stdout == want.as_bytes());

    // Execs in one container run side by side, each with its own output.
    let runs: Vec<_> = (0..4)
        .map(|i| {
            let mut rt = rt.clone();
            let id = id.clone();
            tokio::spawn(async move {
                let cmd = format!("sleep 0.3; echo run{i}");
                exec(&mut rt, &id, &["sh", "-c", &cmd], 10).await
            })
        })
        .collect();
    for (i, run) in runs.into_iter().enumerate() {
        let r = run.await.expect("join").expect("concurrent exec");
        assert_eq!(r.stdout, format!("run{i}\n").into_bytes());
    }

    // The exec shares the container's PID namespace and ends with it.
    let ps = |r: &cri::ExecSyncResponse| -> Vec<String> {
        String::from_utf8_lossy(&r.stdout)
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };
    let r = exec(&mut rt, &id, &["ps", "-o", "pid,args"], 0)
        .await
        .expect("ps");
    assert!(
        ps(&r).iter().any(|l| l.ends_with(" sleep 1000")),
        "{:?}",
        ps(&r)
    );

    // Past its timeout the process is killed and the call says so.
    let e = exec(&mut rt, &id, &["sleep", "600"], 1)
        .await
        .expect_err("timeout");
    assert_eq!(e.code(), tonic::Code::DeadlineExceeded, "{e:?}");
    let r = exec(&mut rt, &id, &["ps", "-o", "pid,args"], 0)
        .await
        .expect("ps after timeout");
    assert!(
        !ps(&r).iter().any(|l| l.ends_with(" sleep 600")),
        "{:?}",
        ps(&r)
    );

    // A missing binary and an empty command are errors, not exit codes.
    let e = exec(&mut rt, &id, &["/no/such/binary"], 0)
        .await
        .expect_err("missing binary");
    assert!(e.message().contains("no/such/binary"), "{e:?}");
    let e = exec(&mut rt, &id, &[], 0).await.expect_err("empty command");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let e = exec(&mut rt, "0123abcd-none", &["true"], 0)
        .await
        .expect_err("unknown container");
    assert_eq!(e.code(), tonic::Code::NotFound);

    // Nothing is left behind in the bundle: no FIFOs, no exec process files.
    let bundle = d.state_dir().join("containers").join(&id);
    let left: Vec<String> = std::fs::read_dir(&bundle)
        .expect("bundle")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("exec-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    rt.stop_container(cri::StopContainerRequest {
        container_id: id.clone(),
        timeout: 0,
    })
    .await
    .expect("stop");
    let e = exec(&mut rt, &id, &["true"], 0).await.expect_err("exited");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
}

/// Polls until `f` holds, failing after the hang guard.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + HANG_GUARD;
    while !f() {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_container_log_starts_a_fresh_file_after_rotation() {
    let d = daemon();
    pull(&d, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let (pod_id, pod_cfg) = pod(&d, &mut rt, "rotate").await;
    let script = "i=0; while :; do i=$((i+1)); echo line$i; sleep 0.05; done";
    let id = create(
        &mut rt,
        &pod_id,
        &pod_cfg,
        container("ticker", BUSYBOX, &["sh", "-c", script]),
    )
    .await
    .expect("create");
    start(&mut rt, &id).await;
    let log = Path::new(&pod_cfg.log_directory).join("ticker.log");
    eventually("first log lines", || log_records(&log).len() >= 3).await;

    // kubelet's rotation: rename, then ask for a reopen.
    let rotated = log.with_extension("log.1");
    std::fs::rename(&log, &rotated).expect("rotate");
    rt.reopen_container_log(cri::ReopenContainerLogRequest {
        container_id: id.clone(),
    })
    .await
    .expect("reopen");
    eventually("lines in the new file", || log_records(&log).len() >= 3).await;
    let old = log_records(&rotated);
    let new = log_records(&log);
    // The stream continues across the two files without a gap.
    let n =
        |r: &(String, String, String)| -> Option<u64> { r.2.strip_prefix("line")?.parse().ok() };
    let last_old = old.iter().rev().find_map(n).expect("old lines");
    let first_new = new.iter().find_map(n).expect("new lines");
    assert_eq!(first_new, last_old + 1, "old {old:?}\nnew {new:?}");
    // The old file is no longer written.
    let before = std::fs::metadata(&rotated).expect("rotated").len();
    eventually("more lines in the new file", || {
        log_records(&log).len() > new.len() + 2
    })
    .await;
    assert_eq!(std::fs::metadata(&rotated).expect("rotated").len(), before);

    rt.stop_container(cri::StopContainerRequest {
        container_id: id.clone(),
        timeout: 0,
    })
    .await
    .expect("stop");
    let e = rt
        .reopen_container_log(cri::ReopenContainerLogRequest {
            container_id: id.clone(),
        })
        .await
        .expect_err("not running");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    let e = rt
        .reopen_container_log(cri::ReopenContainerLogRequest {
            container_id: "feedface".into(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(e.code(), tonic::Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_container_resources_changes_live_limits_and_status() {
    let d = daemon();
    pull(&d, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let (pod_id, pod_cfg) = pod(&d, &mut rt, "resize").await;
    let mut cfg = container("app", BUSYBOX, &["sleep", "1000"]);
    cfg.linux = Some(cri::LinuxContainerConfig {
        resources: Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            cpu_shares: 512,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = create(&mut rt, &pod_id, &pod_cfg, cfg)
        .await
        .expect("create");
    start(&mut rt, &id).await;
    // The limit as the container's own cgroup shows it (v2 or v1 layout).
    let read = "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes";
    let limit = |r: cri::ExecSyncResponse| String::from_utf8_lossy(&r.stdout).trim().to_string();
    let r = exec(&mut rt, &id, &["sh", "-c", read], 0)
        .await
        .expect("read");
    assert_eq!(limit(r), (64u64 << 20).to_string());

    rt.update_container_resources(cri::UpdateContainerResourcesRequest {
        container_id: id.clone(),
        linux: Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: 128 << 20,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .expect("update");
    let r = exec(&mut rt, &id, &["sh", "-c", read], 0)
        .await
        .expect("read");
    assert_eq!(limit(r), (128u64 << 20).to_string());
    let res = |s: cri::ContainerStatus| s.resources.and_then(|r| r.linux).expect("resources");
    let now = res(status(&mut rt, &id).await);
    assert_eq!(now.memory_limit_in_bytes, 128 << 20);
    assert_eq!(now.cpu_shares, 512, "fields not in the update are kept");

    // oom_score_adj, which runtimes cannot change live, reaches the
    // container's process (written by the daemon through a pidfd).
    rt.update_container_resources(cri::UpdateContainerResourcesRequest {
        container_id: id.clone(),
        linux: Some(cri::LinuxContainerResources {
            oom_score_adj: 500,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .expect("update oom_score_adj");
    let r = exec(
        &mut rt,
        &id,
        &["sh", "-c", "cat /proc/$(pidof sleep)/oom_score_adj"],
        0,
    )
    .await
    .expect("read oom_score_adj");
    assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), "500", "{r:?}");
    assert_eq!(res(status(&mut rt, &id).await).oom_score_adj, 500);

    // Invalid values change nothing.
    let e = rt
        .update_container_resources(cri::UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: 32 << 20,
                cpu_shares: -1,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect_err("negative shares");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    let r = exec(&mut rt, &id, &["sh", "-c", read], 0)
        .await
        .expect("read");
    assert_eq!(limit(r), (128u64 << 20).to_string());
    assert_eq!(
        res(status(&mut rt, &id).await).memory_limit_in_bytes,
        128 << 20
    );

    // The new limit is enforced: a process that needs more than 48 MiB is
    // killed by the kernel, one that needs less is not.
    rt.update_container_resources(cri::UpdateContainerResourcesRequest {
        container_id: id.clone(),
        linux: Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: 48 << 20,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .expect("lower the limit");
    let hog = |mib: u32| format!("dd if=/dev/zero of=/dev/null bs={mib}M count=1");
    let r = exec(&mut rt, &id, &["sh", "-c", &hog(16)], 0)
        .await
        .expect("small dd");
    assert_eq!(r.exit_code, 0, "{r:?}");
    let r = exec(&mut rt, &id, &["sh", "-c", &hog(80)], 0)
        .await
        .expect("big dd");
    assert_eq!(r.exit_code, 137, "killed over the new limit: {r:?}");

    let e = rt
        .update_container_resources(cri::UpdateContainerResourcesRequest {
            container_id: "feedface".into(),
            linux: Some(cri::LinuxContainerResources::default()),
            ..Default::default()
        })
        .await
        .expect_err("unknown");
    assert_eq!(e.code(), tonic::Code::NotFound);
}

/// Whether the node has the unified hierarchy only.
fn cgroup_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// A file of pod cgroup `path` (cgroup v2 layout, or v1's `controller`).
fn pod_cgroup_file(path: &str, controller: &str, v1: &str, v2: &str) -> String {
    let f = if cgroup_v2() {
        format!("/sys/fs/cgroup{path}/{v2}")
    } else {
        format!("/sys/fs/cgroup/{controller}{path}/{v1}")
    };
    std::fs::read_to_string(&f)
        .unwrap_or_else(|e| panic!("read {f}: {e}"))
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_resources_size_the_daemons_pod_cgroup_and_follow_updates() {
    use carapace_e2e::workload::update_pod_resources;
    let d = daemon();
    pull(&d, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let mib = |n: i64| n << 20;
    let limits = |memory: i64, quota: i64| cri::LinuxContainerResources {
        memory_limit_in_bytes: memory,
        cpu_quota: quota,
        cpu_period: 100_000,
        cpu_shares: 512,
        ..Default::default()
    };
    let mut pc = pod_config("podres");
    pc.log_directory = d.dir.path().join("logs/podres").display().to_string();
    let linux = pc.linux.get_or_insert_with(Default::default);
    linux.overhead = Some(limits(mib(16), 10_000));
    linux.resources = Some(limits(mib(96), 50_000));
    let pod = run_pod(&mut rt, pc.clone()).await;
    // No cgroup_parent: the pod cgroup is the daemon's, sized to the
    // containers' sum plus the overhead.
    let path = format!("/carapace/pod-{pod}");
    let memory = || pod_cgroup_file(&path, "memory", "memory.limit_in_bytes", "memory.max");
    let quota = || {
        let v = pod_cgroup_file(&path, "cpu", "cpu.cfs_quota_us", "cpu.max");
        v.split_whitespace().next().unwrap_or_default().to_string()
    };
    assert_eq!(memory(), mib(112).to_string());
    assert_eq!(quota(), "60000");

    let id = create(
        &mut rt,
        &pod,
        &pc,
        container("app", BUSYBOX, &["sleep", "1000"]),
    )
    .await
    .expect("create");
    start(&mut rt, &id).await;

    // A resize: the new total reaches the cgroup and the recorded config.
    update_pod_resources(
        &d,
        cri::UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: pod.clone(),
            overhead: Some(limits(mib(16), 10_000)),
            resources: Some(limits(mib(200), 150_000)),
        },
    )
    .await
    .expect("update");
    assert_eq!(memory(), mib(216).to_string());
    assert_eq!(quota(), "160000");
    let (_, info) = carapace_e2e::pod_info(&mut rt, &pod).await;
    assert_eq!(
        info["config"]["linux"]["resources"]["memory_limit_in_bytes"],
        mib(200),
        "{info}"
    );

    // Invalid values are refused and change nothing.
    let e = update_pod_resources(
        &d,
        cri::UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: pod.clone(),
            overhead: None,
            resources: Some(limits(-5, 0)),
        },
    )
    .await
    .expect_err("negative memory");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("memory_limit_in_bytes"), "{e:?}");
    assert_eq!(memory(), mib(216).to_string());

    // The pod's limit holds for its containers: under a 40 MiB pod, a
    // process needing 80 MiB is killed.
    update_pod_resources(
        &d,
        cri::UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: pod.clone(),
            overhead: Some(cri::LinuxContainerResources::default()),
            resources: Some(limits(mib(40), 0)),
        },
    )
    .await
    .expect("shrink");
    assert_eq!(memory(), mib(40).to_string());
    let unlimited = if cgroup_v2() { "max" } else { "-1" };
    assert_eq!(quota(), unlimited, "no quota in the containers' sum");
    let r = exec(
        &mut rt,
        &id,
        &["sh", "-c", "dd if=/dev/zero of=/dev/null bs=80M count=1"],
        0,
    )
    .await
    .expect("big dd");
    assert_eq!(r.exit_code, 137, "killed over the pod's limit: {r:?}");

    for (req, code) in [
        (
            cri::UpdatePodSandboxResourcesRequest {
                pod_sandbox_id: "feedface".into(),
                overhead: None,
                resources: Some(limits(mib(64), 0)),
            },
            tonic::Code::NotFound,
        ),
        (
            cri::UpdatePodSandboxResourcesRequest {
                pod_sandbox_id: pod.clone(),
                overhead: None,
                resources: None,
            },
            tonic::Code::InvalidArgument,
        ),
    ] {
        let e = update_pod_resources(&d, req).await.expect_err("refused");
        assert_eq!(e.code(), code, "{e:?}");
    }
}

/// Reads a stream's events up to and including the pod's deletion.
async fn events_until_pod_deleted(
    stream: &mut tonic::Streaming<cri::ContainerEventResponse>,
    pod_id: &str,
) -> Vec<cri::ContainerEventResponse> {
    let mut got = Vec::new();
    loop {
        let ev = tokio::time::timeout(HANG_GUARD, stream.message())
            .await
            .expect("an event within the hang guard")
            .expect("stream ok")
            .expect("stream open");
        let last = ev.container_id == pod_id
            && ev.container_event_type == cri::ContainerEventType::ContainerDeletedEvent as i32;
        got.push(ev);
        if last {
            return got;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_events_stream_every_lifecycle_change_with_statuses() {
    use cri::ContainerEventType as E;
    let d = daemon();
    pull(&d, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let subscribe = || {
        let mut rt = rt.clone();
        async move {
            rt.get_container_events(cri::GetEventsRequest {})
                .await
                .expect("subscribe")
                .into_inner()
        }
    };
    let mut a = subscribe().await;
    let mut b = subscribe().await;
    let (pod_id, pod_cfg) = pod(&d, &mut rt, "events").await;
    let id = create(
        &mut rt,
        &pod_id,
        &pod_cfg,
        container("app", BUSYBOX, &["sleep", "1000"]),
    )
    .await
    .expect("create");
    start(&mut rt, &id).await;

    // PodSandboxStatus carries the pod's container statuses.
    let ps = rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod_id.clone(),
            verbose: false,
        })
        .await
        .expect("pod status")
        .into_inner();
    assert_eq!(ps.containers_statuses.len(), 1);
    assert_eq!(ps.containers_statuses[0].id, id);
    assert_eq!(
        ps.containers_statuses[0].state,
        cri::ContainerState::ContainerRunning as i32
    );

    rt.stop_container(cri::StopContainerRequest {
        container_id: id.clone(),
        timeout: 0,
    })
    .await
    .expect("stop");
    rt.remove_container(cri::RemoveContainerRequest {
        container_id: id.clone(),
    })
    .await
    .expect("remove");
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod_id.clone(),
    })
    .await
    .expect("stop pod");
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod_id.clone(),
    })
    .await
    .expect("remove pod");

    let want = [
        E::ContainerCreatedEvent as i32,
        E::ContainerStartedEvent as i32,
        E::ContainerStoppedEvent as i32,
        E::ContainerDeletedEvent as i32,
    ];
    for stream in [&mut a, &mut b] {
        let all = events_until_pod_deleted(stream, &pod_id).await;
        let of = |who: &str| -> Vec<&cri::ContainerEventResponse> {
            all.iter().filter(|e| e.container_id == who).collect()
        };
        let kinds = |v: &[&cri::ContainerEventResponse]| -> Vec<i32> {
            v.iter().map(|e| e.container_event_type).collect()
        };
        let (pod_ev, ctr_ev) = (of(&pod_id), of(&id));
        assert_eq!(kinds(&pod_ev), want, "{all:?}");
        assert_eq!(kinds(&ctr_ev), want, "{all:?}");
        assert!(all.windows(2).all(|w| w[0].created_at <= w[1].created_at));
        // Container events carry their pod's status and the containers'.
        let created = ctr_ev[0];
        assert_eq!(
            created.pod_sandbox_status.as_ref().map(|p| p.id.as_str()),
            Some(pod_id.as_str())
        );
        assert!(created.containers_statuses.iter().any(|c| c.id == id));
        let deleted = ctr_ev[3];
        assert!(deleted.containers_statuses.iter().all(|c| c.id != id));
    }
}

/// Unmounts (lazily) what a test mounted on the host, even if it panics.
struct HostMounts(Vec<PathBuf>);

impl Drop for HostMounts {
    fn drop(&mut self) {
        for m in self.0.iter().rev() {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bidirectional_mount_propagates_both_ways() {
    use nix::mount::{mount, MsFlags};
    let d = daemon();
    pull(&d, BUSYBOX).await;
    let mut rt = d.runtime().await;
    // A shared mount point on the host, as kubelet makes for such volumes.
    let vol = d.dir.path().join("shared-vol");
    std::fs::create_dir_all(&vol).expect("mkdir");
    let mut host = HostMounts(Vec::new());
    mount(
        Some(&vol),
        &vol,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .expect("bind");
    host.0.push(vol.clone());
    mount(
        None::<&str>,
        &vol,
        None::<&str>,
        MsFlags::MS_SHARED | MsFlags::MS_REC,
        None::<&str>,
    )
    .expect("make shared");

    let mut pc = pod_config("propagation");
    pc.log_directory = d.dir.path().join("logs").display().to_string();
    pc.linux
        .get_or_insert_with(Default::default)
        .security_context = Some(cri::LinuxSandboxSecurityContext {
        privileged: true,
        ..Default::default()
    });
    let pod_id = run_pod(&mut rt, pc.clone()).await;
    let mut cfg = container("mounter", BUSYBOX, &["sleep", "1000"]);
    cfg.linux = Some(cri::LinuxContainerConfig {
        security_context: Some(cri::LinuxContainerSecurityContext {
            privileged: true,
            ..Default::default()
        }),
        ..Default::default()
    });
    cfg.mounts = vec![cri::Mount {
        container_path: "/vol".into(),
        host_path: vol.display().to_string(),
        propagation: cri::MountPropagation::PropagationBidirectional as i32,
        ..Default::default()
    }];
    let id = create(&mut rt, &pod_id, &pc, cfg).await.expect("create");
    start(&mut rt, &id).await;

    // Host to container.
    let from_host = vol.join("from-host");
    std::fs::create_dir_all(&from_host).expect("mkdir");
    mount(
        Some("tmpfs"),
        &from_host,
        Some("tmpfs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .expect("host tmpfs");
    host.0.push(from_host.clone());
    std::fs::write(from_host.join("flag"), "h").expect("flag");
    let r = exec(&mut rt, &id, &["cat", "/vol/from-host/flag"], 0)
        .await
        .expect("exec");
    assert_eq!((r.exit_code, r.stdout), (0, b"h".to_vec()));

    // Container to host.
    let script = "mkdir -p /vol/from-ctr && mount -t tmpfs tmpfs /vol/from-ctr && echo c > /vol/from-ctr/flag";
    let r = exec(&mut rt, &id, &["sh", "-c", script], 0)
        .await
        .expect("exec");
    assert_eq!(r.exit_code, 0, "{r:?}");
    host.0.push(vol.join("from-ctr"));
    assert_eq!(
        std::fs::read_to_string(vol.join("from-ctr/flag"))
            .expect("the container's mount on the host"),
        "c\n"
    );

    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod_id,
    })
    .await
    .expect("remove pod");
    drop(host);
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
    // A log path that would leave the pod's log directory is refused
    // before anything is made: nothing is written there, the name is free.
    let outside = d.dir.path().join("escaped.log");
    for log_path in [
        "../../escaped.log".to_string(),
        outside.display().to_string(),
    ] {
        let mut c = container("logesc", BUSYBOX, &["true"]);
        c.log_path = log_path.clone();
        let e = create(&mut rt, &pod_id, &pod_cfg, c)
            .await
            .expect_err("log path outside the log directory");
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{log_path}: {e:?}");
        assert!(e.message().contains("log_path"), "{}", e.message());
    }
    assert!(!outside.exists(), "a log was made outside");
    create(
        &mut rt,
        &pod_id,
        &pod_cfg,
        container("logesc", BUSYBOX, &["true"]),
    )
    .await
    .expect("the refused container left its name free");
    let e = rt
        .start_container(cri::StartContainerRequest {
            container_id: "missing".into(),
        })
        .await
        .expect_err("start unknown");
    assert_eq!(e.code(), tonic::Code::NotFound);
}
