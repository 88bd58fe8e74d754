//! Runtime handlers that are containerd shim v2 binaries (issue #27), with
//! Debian's `containerd-shim-runc-v2` from the containerd package: the
//! daemon starts it with the shim v2 `start` protocol, it groups a pod's
//! tasks into one shim by the sandbox annotations, and the daemon reads
//! the containers' stdio FIFOs into CRI logs and attach sessions. Proven
//! here: a pod with two containers runs under one shim; logs (complete
//! at exit), ExecSync, Exec and Attach over streaming, stats, update,
//! stop and removal work; after the daemon is killed -9 the pod is found
//! and managed again, output written meanwhile reaches the log; and
//! nothing of the shim is left after removal.

use std::path::{Path, PathBuf};
use std::time::Duration;

use carapace_e2e::spdy_client;
use carapace_e2e::workload::{
    assert_rolled_back, busybox_container, create, exec, pull, run, run_pod, sh, status,
    stop_and_remove, stop_and_remove_pod, wait_exited, Rt, BUSYBOX,
};
use carapace_e2e::{eventually, mounts_under, pod_config, require_registry, Daemon};
use k8s_cri::v1 as cri;
use nix::sys::signal::Signal;

const SHIM: &str = "/usr/bin/containerd-shim-runc-v2";
/// The handler's runc root (the shim keeps runc's state under
/// `<root>/k8s.io`).
const RUNC_ROOT: &str = "/run/carapace-e2e-runc-v2";

/// A daemon whose default handler is containerd's runc shim, with the
/// test network and busybox pulled.
async fn daemon() -> (Daemon, Rt) {
    require_registry();
    assert!(
        Path::new(SHIM).is_file(),
        "{SHIM} is missing: install Debian's containerd package (hack/install-deps.sh does)"
    );
    let d = Daemon::start_with_network(
        &format!(
            "default_runtime_handler = \"runc-v2\"\n\
             [registry]\ninsecure = [\"127.0.0.1:5000\"]\n\
             [runtime_handlers.runc-v2]\nruntime_type = \"io.containerd.runc.v2\"\n\
             path = \"runc\"\nroot = \"{RUNC_ROOT}\"\n"
        ),
        &[],
    );
    pull(&d, BUSYBOX).await;
    let rt = d.runtime().await;
    (d, rt)
}

/// A pod of this daemon's: (id, config).
async fn pod(d: &Daemon, rt: &mut Rt, name: &str) -> (String, cri::PodSandboxConfig) {
    let mut pc = pod_config(name);
    pc.log_directory = d.dir.path().join("logs").join(name).display().to_string();
    let id = run_pod(rt, pc.clone()).await;
    (id, pc)
}

/// A busybox container running `script` (stdout and stderr to its log).
fn container(name: &str, script: &str) -> cri::ContainerConfig {
    busybox_container(name, &["sh", "-c", script], Default::default())
}

/// PIDs of containerd-shim-runc-v2 processes working under `dir`.
fn shims_under(dir: &Path) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let exe = std::fs::read_link(e.path().join("exe")).ok()?;
            let cwd = std::fs::read_link(e.path().join("cwd")).ok()?;
            (exe == Path::new(SHIM) && cwd.starts_with(dir)).then_some(pid)
        })
        .collect()
}

/// The CRI log of container `name` of pod config `pc`.
fn log_of(pc: &cri::PodSandboxConfig, name: &str) -> PathBuf {
    Path::new(&pc.log_directory).join(format!("{name}.log"))
}

/// The `content` of every record of `stream` in the CRI log at `p`.
fn records(p: &Path, stream: &str) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.splitn(4, ' ').collect();
            (f.len() == 4 && f[1] == stream).then(|| f[3].to_string())
        })
        .collect()
}

/// The socket path of a shim address.
fn socket_of(address: &str) -> PathBuf {
    PathBuf::from(address.trim_start_matches("unix://"))
}

/// The pod's shim address, as the shim wrote it into the pod's bundle.
fn shim_address(d: &Daemon, pod: &str) -> String {
    let rec = std::fs::read_to_string(
        d.state_dir()
            .join("pods")
            .join(pod)
            .join(pod)
            .join("address"),
    );
    rec.unwrap_or_default().trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_of_two_containers_runs_under_one_runc_v2_shim() {
    let (d, mut rt) = daemon().await;
    let (pod, pc) = pod(&d, &mut rt, "v2pod").await;

    // Status: the handler is listed, without user namespaces (a shim v2
    // runs its own sandbox).
    let st = rt
        .status(cri::StatusRequest { verbose: false })
        .await
        .expect("status")
        .into_inner();
    let h = st
        .runtime_handlers
        .iter()
        .find(|h| h.name == "runc-v2")
        .expect("runc-v2 listed");
    assert!(!h.features.expect("features").user_namespaces);

    let talker = run(
        &mut rt,
        &pod,
        &pc,
        container(
            "talker",
            "echo hello-out; echo hello-err >&2; i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.2; done",
        ),
    )
    .await;
    let quiet = run(&mut rt, &pod, &pc, container("quiet", "exec sleep 1000")).await;

    // One shim for the pod: the containers joined the sandbox's.
    let shims = shims_under(d.dir.path());
    assert_eq!(shims.len(), 1, "one shim per pod, found {shims:?}");

    // Logs, both streams.
    let talker_log = log_of(&pc, "talker");
    eventually("talker's output in its log", || async {
        let out = records(&talker_log, "stdout");
        let err = records(&talker_log, "stderr");
        if out.iter().any(|l| l == "hello-out") && err.iter().any(|l| l == "hello-err") {
            Ok(())
        } else {
            Err(format!("stdout {out:?} stderr {err:?}"))
        }
    })
    .await;

    // ExecSync, in the pod's namespaces.
    let (code, out, _) = sh(&mut rt, &quiet, "hostname; echo to-err >&2").await;
    assert_eq!((code, out.trim()), (0, "v2pod"));
    let r = exec(&mut rt, &quiet, &["sh", "-c", "exit 3"], 10)
        .await
        .expect("exec");
    assert_eq!(r.exit_code, 3);

    // Exec over streaming, with stdin: `cat` ends only when its input
    // does (the shim holds the FIFO too: the end of input is CloseIO).
    let u = rt
        .exec(cri::ExecRequest {
            container_id: quiet.clone(),
            cmd: vec!["cat".into()],
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        })
        .await
        .expect("exec url")
        .into_inner()
        .url;
    let o = spdy_client::exec(
        &u,
        &["v4.channel.k8s.io"],
        &["error", "stdin", "stdout", "stderr"],
        b"ping\npong\n",
        None,
    )
    .await
    .expect("exec stream");
    assert_eq!(o.text("stdout"), "ping\npong\n");

    // Stats from the container's cgroup.
    let s = rt
        .container_stats(cri::ContainerStatsRequest {
            container_id: talker.clone(),
        })
        .await
        .expect("stats")
        .into_inner()
        .stats
        .expect("stats");
    assert!(
        s.memory
            .and_then(|m| m.working_set_bytes)
            .is_some_and(|v| v.value > 0),
        "{s:?}"
    );

    // Update through the shim.
    rt.update_container_resources(cri::UpdateContainerResourcesRequest {
        container_id: quiet.clone(),
        linux: Some(cri::LinuxContainerResources {
            cpu_shares: 512,
            memory_limit_in_bytes: 64 << 20,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .expect("update");

    // A container that prints and exits: its whole output is in the log
    // when it is reported exited.
    let brief = run(
        &mut rt,
        &pod,
        &pc,
        container("brief", "for i in 1 2 3 4 5; do echo line-$i; done; exit 7"),
    )
    .await;
    let st = wait_exited(&mut rt, &brief).await;
    assert_eq!(st.exit_code, 7);
    assert_eq!(
        records(&log_of(&pc, "brief"), "stdout"),
        (1..=5).map(|i| format!("line-{i}")).collect::<Vec<_>>()
    );

    // Stop and removal.
    stop_and_remove(&mut rt, &talker).await;
    let st = status(&mut rt, &quiet).await;
    assert_eq!(st.state, cri::ContainerState::ContainerRunning as i32);
    let address = shim_address(&d, &pod);
    assert!(socket_of(&address).exists(), "{address}");
    stop_and_remove_pod(&mut rt, &pod).await;
    assert_nothing_left(&d, &address, &[&pod, &talker, &quiet, &brief]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_reaches_the_containers_stdio_through_the_fifos() {
    let (d, mut rt) = daemon().await;
    let (pod, pc) = pod(&d, &mut rt, "v2attach").await;
    let mut cfg = container(
        "echo",
        "while read l; do echo got:$l; echo err:$l >&2; done; echo bye",
    );
    cfg.stdin = true;
    cfg.stdin_once = true;
    let id = run(&mut rt, &pod, &pc, cfg).await;
    let u = rt
        .attach(cri::AttachRequest {
            container_id: id.clone(),
            stdin: true,
            tty: false,
            stdout: true,
            stderr: true,
        })
        .await
        .expect("attach url")
        .into_inner()
        .url;
    let out = spdy_client::exec(
        &u,
        &["v4.channel.k8s.io"],
        &["error", "stdin", "stdout", "stderr"],
        b"one\ntwo\n",
        None,
    )
    .await
    .expect("attach stream");
    // stdin_once: the client's end of input is the container's.
    assert_eq!(out.text("stdout"), "got:one\ngot:two\nbye\n");
    assert_eq!(out.text("stderr"), "err:one\nerr:two\n");
    let st = wait_exited(&mut rt, &id).await;
    assert_eq!(st.exit_code, 0);
    assert_eq!(
        records(&log_of(&pc, "echo"), "stdout"),
        vec!["got:one", "got:two", "bye"]
    );

    // A terminal container: its output is one stream, from a terminal.
    let mut cfg = container("tty", "[ -t 1 ] && echo on-a-terminal; sleep 1000");
    cfg.tty = true;
    let _tty = run(&mut rt, &pod, &pc, cfg).await;
    let first = eventually("the terminal container's output in the log", || async {
        match records(&log_of(&pc, "tty"), "stdout").first() {
            Some(l) => Ok(l.clone()),
            None => Err("no output yet".to_string()),
        }
    })
    .await;
    assert_eq!(first, "on-a-terminal");
    assert!(records(&log_of(&pc, "tty"), "stderr").is_empty());
    stop_and_remove_pod(&mut rt, &pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pod_is_managed_again_after_the_daemon_is_killed() {
    let (mut d, mut rt) = daemon().await;
    let (pod, pc) = pod(&d, &mut rt, "v2crash").await;
    let ticker = run(
        &mut rt,
        &pod,
        &pc,
        container(
            "ticker",
            "i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.1; done",
        ),
    )
    .await;
    let log = log_of(&pc, "ticker");
    eventually("ticks", || async {
        let n = records(&log, "stdout").len();
        if n >= 3 {
            Ok(())
        } else {
            Err(format!("{n} ticks"))
        }
    })
    .await;
    let address = shim_address(&d, &pod);
    assert_eq!(d.stop(Signal::SIGKILL).code(), None);
    // Output while the daemon is down waits in the FIFO (and then the
    // container blocks on it): no tick is lost.
    tokio::time::sleep(Duration::from_millis(700)).await;
    d.spawn();
    let mut rt = d.runtime().await;
    let st = status(&mut rt, &ticker).await;
    assert_eq!(st.state, cri::ContainerState::ContainerRunning as i32);
    let last = eventually("ticks after the restart", || async {
        let ticks = records(&log, "stdout");
        if ticks.len() >= 15 {
            Ok(ticks)
        } else {
            Err(format!("{} ticks", ticks.len()))
        }
    })
    .await;
    let want: Vec<String> = (1..=last.len()).map(|i| format!("tick-{i}")).collect();
    assert_eq!(last, want, "ticks in sequence, none lost");
    // The shim lives on and answers: exec, then a second container in it.
    let (code, out, _) = sh(&mut rt, &ticker, "echo alive").await;
    assert_eq!((code, out.as_str()), (0, "alive\n"));
    let second = run(&mut rt, &pod, &pc, container("second", "exec sleep 1000")).await;
    assert_eq!(shims_under(d.dir.path()).len(), 1);
    // Stop records the exit as for any container.
    rt.stop_container(cri::StopContainerRequest {
        container_id: ticker.clone(),
        timeout: 0,
    })
    .await
    .expect("stop");
    let st = status(&mut rt, &ticker).await;
    assert_eq!(st.state, cri::ContainerState::ContainerExited as i32);
    assert_eq!(st.exit_code, 137);
    stop_and_remove(&mut rt, &second).await;
    stop_and_remove_pod(&mut rt, &pod).await;
    assert_nothing_left(&d, &address, &[&pod, &ticker, &second]);
}

/// No shim process, shim socket, mount, pod state or runc state of
/// this daemon's tasks (`ids`) left.
fn assert_nothing_left(d: &Daemon, address: &str, ids: &[&str]) {
    let mut left = Vec::new();
    for _ in 0..100 {
        left = shims_under(d.dir.path());
        if left.is_empty() && !socket_of(address).exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(left.is_empty(), "shims left: {left:?}");
    assert!(!socket_of(address).exists(), "shim socket {address} left");
    assert_eq!(mounts_under(&d.state_dir()), Vec::<String>::new());
    let pods: Vec<_> = std::fs::read_dir(d.state_dir().join("pods"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(pods.is_empty(), "pod state left: {pods:?}");
    for id in ids {
        let state = Path::new(RUNC_ROOT).join("k8s.io").join(id);
        assert!(!state.exists(), "runc state {} left", state.display());
    }
}

/// The daemon killed -9 while the shim v2 is inside CreateContainer (its
/// runc hangs in `create`): after a restart the half-made container is
/// rolled back — not listed, no rootfs mount, bundle, runc state or
/// cgroup left, its name free — and the pod's shim, still serving the
/// pod, takes the next container.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_inside_create_container_leaves_nothing_after_restart() {
    use std::os::unix::fs::PermissionsExt;
    require_registry();
    let tools = tempfile::tempdir().expect("tmp");
    let runc = tools.path().join("runc");
    std::fs::write(
        &runc,
        format!(
            "#!/bin/sh\nif [ -e {dir}/hang ]; then\n  for a in \"$@\"; do\n    \
             if [ \"$a\" = create ]; then echo $$ > {dir}/hung.pid; exec sleep 600; fi\n  \
             done\nfi\nexec /usr/sbin/runc \"$@\"\n",
            dir = tools.path().display()
        ),
    )
    .expect("write runc wrapper");
    std::fs::set_permissions(&runc, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut d = Daemon::start_with_network(
        &format!(
            "default_runtime_handler = \"runc-v2\"\n\
             [registry]\ninsecure = [\"127.0.0.1:5000\"]\n\
             [runtime_handlers.runc-v2]\nruntime_type = \"io.containerd.runc.v2\"\n\
             path = \"{}\"\nroot = \"{RUNC_ROOT}\"\n",
            runc.display()
        ),
        &[],
    );
    pull(&d, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let (pod, pc) = pod(&d, &mut rt, "v2create").await;
    std::fs::write(tools.path().join("hang"), "").expect("arm");
    let mut rt2 = rt.clone();
    let (pod2, pc2) = (pod.clone(), pc.clone());
    let call = tokio::spawn(async move {
        create(&mut rt2, &pod2, &pc2, container("doomed", "sleep 1000")).await
    });
    let pid_file = tools.path().join("hung.pid");
    let hung: i32 = eventually("runc create to hang", || async {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .ok_or_else(|| "not yet".to_string())
    })
    .await;
    let ids: Vec<String> = std::fs::read_dir(d.state_dir().join("containers"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let id = ids[0].clone();
    d.stop(Signal::SIGKILL);
    let _ = call.await;
    std::fs::remove_file(tools.path().join("hang")).expect("disarm");
    // The hung runc belongs to the pod's shim, which outlived the daemon.
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(hung), Signal::SIGKILL);

    d.spawn();
    let mut rt = d.runtime().await;
    assert_rolled_back(&d, &mut rt, &id).await;
    let state = Path::new(RUNC_ROOT).join("k8s.io").join(&id);
    assert!(!state.exists(), "runc state {} left", state.display());
    // The pod's shim survived and takes the next container, under the
    // same name.
    assert_eq!(shims_under(d.dir.path()).len(), 1);
    let ok = run(&mut rt, &pod, &pc, container("doomed", "exec sleep 1000")).await;
    let (code, out, _) = sh(&mut rt, &ok, "echo fine").await;
    assert_eq!((code, out.as_str()), (0, "fine\n"));
    let address = shim_address(&d, &pod);
    stop_and_remove_pod(&mut rt, &pod).await;
    assert_nothing_left(&d, &address, &[&pod, &id, &ok]);
}
