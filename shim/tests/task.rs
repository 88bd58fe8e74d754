//! The shim driven over ttrpc as the daemon drives it: real busybox
//! containers under carapace-runtime, output in CRI log files, execs,
//! signals, exits and OOM kills reported as events, and the outcome still
//! known after the shim itself is gone.

mod common;

use common::{records, Harness};
use containerd_shim_protos::api;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::ttrpc::{self, Code};
use containerd_shim_protos::types::task::Status;
use serde_json::json;

fn code(e: &ttrpc::Error) -> Code {
    match e {
        ttrpc::Error::RpcStatus(s) => s.code(),
        _ => Code::UNKNOWN,
    }
}

fn message(e: &ttrpc::Error) -> String {
    match e {
        ttrpc::Error::RpcStatus(s) => s.message().to_string(),
        other => other.to_string(),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn output_lands_in_the_cri_log_and_exit_is_reported() {
    let mut h = Harness::new(
        "crilog",
        &[
            "sh",
            "-c",
            "echo out-line; echo err-line >&2; printf tail; exit 3",
        ],
    )
    .await;
    let log = h.crilog("c.log");
    let created = h.create(&log, &log, false).await.expect("create");
    assert!(created.pid > 0);
    h.event("/tasks/create").await;
    assert_eq!(
        h.state("").await.expect("state").status,
        Status::CREATED.into()
    );
    h.start("").await.expect("start");
    let w = h.wait("").await;
    assert_eq!(w.exit_status, 3);
    let ev = h.exit_event().await;
    assert_eq!(ev.exit_status, 3);
    assert_eq!(ev.pid, created.pid);
    assert_eq!(ev.id, h.id);

    let recs = records(&h.read("c.log"));
    assert!(
        recs.contains(&("stdout".into(), "F".into(), "out-line".into())),
        "{recs:?}"
    );
    assert!(
        recs.contains(&("stderr".into(), "F".into(), "err-line".into())),
        "{recs:?}"
    );
    // Output that ends without a newline is a partial record, as containerd writes it.
    assert!(
        recs.contains(&("stdout".into(), "P".into(), "tail".into())),
        "{recs:?}"
    );
    let st = h.state("").await.expect("state");
    assert_eq!(st.status, Status::STOPPED.into());
    assert_eq!(st.exit_status, 3);

    let d = h.delete("").await.expect("delete");
    assert_eq!(d.exit_status, 3);
    h.event("/tasks/delete").await;
    // Deleted: gone from the shim and from the runtime.
    assert_eq!(
        code(&h.state("").await.expect_err("state after delete")),
        Code::NOT_FOUND
    );
    assert!(!h.bundle().join("state").join(&h.id).exists());
}

#[tokio::test(flavor = "current_thread")]
async fn a_line_longer_than_16k_is_split_into_partials() {
    // 40000 'x' then a newline: P(16384) P(16384) F(7232).
    let h = Harness::new(
        "longline",
        &["sh", "-c", "head -c 40000 /dev/zero | tr '\\0' x; echo"],
    )
    .await;
    let log = h.crilog("c.log");
    h.create(&log, &log, false).await.expect("create");
    h.start("").await.expect("start");
    assert_eq!(h.wait("").await.exit_status, 0);
    let recs = records(&h.read("c.log"));
    let shape: Vec<(&str, usize)> = recs.iter().map(|r| (r.1.as_str(), r.2.len())).collect();
    assert_eq!(
        shape,
        vec![("P", 16384), ("P", 16384), ("F", 7232)],
        "{shape:?}"
    );
    h.delete("").await.expect("delete");
}

#[tokio::test(flavor = "current_thread")]
async fn tty_output_is_logged_as_stdout() {
    let mut h = Harness::new("tty", &["sh", "-c", "tty; echo on-the-tty >&2"]).await;
    h.config["process"]["terminal"] = json!(true);
    h.write_config();
    let log = h.crilog("c.log");
    h.create(&log, "", true).await.expect("create");
    h.start("").await.expect("start");
    assert_eq!(h.wait("").await.exit_status, 0);
    let recs = records(&h.read("c.log"));
    assert!(
        recs.iter()
            .any(|r| r.0 == "stdout" && r.2.starts_with("/dev/pts/")),
        "{recs:?}"
    );
    assert!(
        recs.iter().any(|r| r.0 == "stdout" && r.2 == "on-the-tty"),
        "stderr of a tty is the tty: {recs:?}"
    );
    h.delete("").await.expect("delete");
}

#[tokio::test(flavor = "current_thread")]
async fn exec_runs_in_the_container_with_its_own_exit_code() {
    let mut h = Harness::new("exec", &["sleep", "1000"]).await;
    h.create("", "", false).await.expect("create");
    h.start("").await.expect("start");

    let out = h.crilog("exec.log");
    h.exec("e1", &["sh", "-c", "hostname; exit 5"], &out, false)
        .await
        .expect("exec");
    h.event("/tasks/exec-added").await;
    let started = h.start("e1").await.expect("start exec");
    assert!(started.pid > 0);
    assert_eq!(h.wait("e1").await.exit_status, 5);
    let recs = records(&h.read("exec.log"));
    assert!(
        recs.contains(&("stdout".into(), "F".into(), "exec".into())),
        "exec sees the container's hostname: {recs:?}"
    );
    // Unknown exec IDs and duplicates are refused clearly.
    let e = h.start("nope").await.expect_err("unknown exec");
    assert_eq!(code(&e), Code::NOT_FOUND, "{e:?}");
    let e = h
        .exec("e1", &["true"], "", false)
        .await
        .expect_err("duplicate exec");
    assert_eq!(code(&e), Code::ALREADY_EXISTS, "{e:?}");
    let e = h
        .exec("../escape", &["true"], "", false)
        .await
        .expect_err("bad exec id");
    assert_eq!(code(&e), Code::INVALID_ARGUMENT, "{e:?}");
    h.delete("e1").await.expect("delete exec");

    // A running container cannot be deleted; kill it and wait.
    let e = h.delete("").await.expect_err("delete running");
    assert_eq!(code(&e), Code::FAILED_PRECONDITION, "{e:?}");
    h.kill("", 9).await.expect("kill");
    assert_eq!(h.wait("").await.exit_status, 137);
    h.exit_event().await;
    // Killing a finished process says so.
    let e = h.kill("", 9).await.expect_err("kill after exit");
    assert_eq!(code(&e), Code::NOT_FOUND, "{e:?}");
    h.delete("").await.expect("delete");
}

#[tokio::test(flavor = "current_thread")]
async fn start_twice_and_runtime_errors_are_reported() {
    let h = Harness::new("errors", &["/no/such/binary"]).await;
    let e = h
        .create("", "", false)
        .await
        .expect_err("create with a missing executable");
    // The runtime's own message reaches the caller.
    assert!(
        message(&e).contains("/no/such/binary"),
        "runtime error lost: {e:?}"
    );
    // Nothing half-made remains: a second shim call finds no container.
    assert_eq!(
        code(&h.state("").await.expect_err("state")),
        Code::NOT_FOUND
    );

    let h = Harness::new("twice", &["true"]).await;
    h.create("", "", false).await.expect("create");
    h.start("").await.expect("start");
    let e = h.start("").await.expect_err("second start");
    assert_eq!(code(&e), Code::FAILED_PRECONDITION, "{e:?}");
    h.wait("").await;
    h.delete("").await.expect("delete");
}

#[tokio::test(flavor = "current_thread")]
async fn oom_kill_is_reported() {
    let mut h = Harness::new("oom", &["sh", "-c", "tail /dev/zero"]).await;
    h.config["linux"]["resources"] = json!({"memory": {"limit": 16777216, "swap": 16777216}});
    h.write_config();
    h.create("", "", false).await.expect("create");
    h.start("").await.expect("start");
    let oom = h.event("/tasks/oom").await;
    let oom = containerd_shim_protos::events::task::TaskOOM::parse_from_bytes(&oom.value)
        .expect("decode TaskOOM");
    assert_eq!(oom.container_id, h.id);
    assert_eq!(h.wait("").await.exit_status, 137);
    h.delete("").await.expect("delete");
}

#[tokio::test(flavor = "current_thread")]
async fn state_survives_a_reconnect_and_the_outcome_survives_the_shim() {
    let mut h = Harness::new("restart", &["sh", "-c", "read x; exit 7"]).await;
    // stdin from a FIFO we hold: the container waits for a line.
    let fifo = h.bundle().join("stdin");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let req = api::CreateTaskRequest {
        id: h.id.clone(),
        bundle: h.bundle().to_string_lossy().into_owned(),
        stdin: fifo.to_string_lossy().into_owned(),
        options: Some(h.options()).into(),
        ..Default::default()
    };
    let created = h
        .client()
        .create(common::ctx(), &req)
        .await
        .expect("create");
    h.start("").await.expect("start");

    // The daemon restarts: a new connection sees the same state.
    h.reconnect().await;
    let st = h.state("").await.expect("state");
    assert_eq!(st.status, Status::RUNNING.into());
    assert_eq!(st.pid, created.pid);

    // Feed the line; the container exits 7 and the shim records it.
    let mut w = std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .expect("open stdin fifo");
    std::io::Write::write_all(&mut w, b"go\n").expect("write stdin");
    drop(w);
    assert_eq!(h.wait("").await.exit_status, 7);

    // The shim dies; `carapace-shim delete` still reports the outcome and
    // removes the socket the dead shim left behind.
    let socket = h
        .address
        .strip_prefix("unix://")
        .expect("a unix socket address")
        .to_string();
    assert!(std::path::Path::new(&socket).exists(), "{socket}");
    let shim = nix::unistd::Pid::from_raw(h.shim_pid());
    nix::sys::signal::kill(shim, nix::sys::signal::Signal::SIGKILL).expect("kill shim");
    common::wait_gone(h.shim_pid(), "killed shim").await;
    let out = std::process::Command::new(common::shim_bin())
        .args(["-namespace", common::NAMESPACE, "-id", &h.id])
        .args(["-address", "/run/carapace-test-none.sock", "delete"])
        .current_dir(h.bundle())
        .output()
        .expect("shim delete");
    assert!(
        out.status.success(),
        "shim delete: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = api::DeleteResponse::parse_from_bytes(&out.stdout).expect("decode DeleteResponse");
    assert_eq!(d.exit_status, 7);
    assert_eq!(d.pid, created.pid);
    assert!(!h.bundle().join("state").join(&h.id).exists());
    assert!(
        !std::path::Path::new(&socket).exists(),
        "the dead shim's socket {socket} is left behind"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn shutdown_waits_for_the_container_then_exits() {
    let h = Harness::new("shutdown", &["true"]).await;
    h.create("", "", false).await.expect("create");
    h.shutdown().await;
    // Still serving: the container is held.
    h.state("").await.expect("state after early shutdown");
    h.start("").await.expect("start");
    h.wait("").await;
    h.delete("").await.expect("delete");
    h.shutdown().await;
    common::wait_gone(h.shim_pid(), "the shim after Shutdown").await;
}

#[tokio::test(flavor = "current_thread")]
async fn processes_left_in_a_shared_pid_namespace_die_with_the_init() {
    // No PID namespace of its own: the container's processes are host
    // processes and would outlive its init.
    let mut h = Harness::new(
        "sharedpid",
        &["sh", "-c", "sleep 1000 & echo $! > /dev/shm/bg.pid; exit 0"],
    )
    .await;
    let ns: Vec<serde_json::Value> = h.config["linux"]["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .filter(|n| n["type"] != "pid")
        .cloned()
        .collect();
    h.config["linux"]["namespaces"] = json!(ns);
    // A writable /dev/shm to pass the background PID out through the bundle.
    let shm = h.bundle().join("shm");
    std::fs::create_dir_all(&shm).expect("mkdir shm");
    h.config["mounts"]
        .as_array_mut()
        .expect("mounts")
        .retain(|m| m["destination"] != "/dev/shm");
    h.config["mounts"]
        .as_array_mut()
        .expect("mounts")
        .push(json!({
            "destination": "/dev/shm", "type": "bind", "source": shm, "options": ["rbind", "rw"]
        }));
    h.write_config();
    h.create("", "", false).await.expect("create");
    h.start("").await.expect("start");
    assert_eq!(h.wait("").await.exit_status, 0);
    let bg: i32 = std::fs::read_to_string(shm.join("bg.pid"))
        .expect("background pid")
        .trim()
        .parse()
        .expect("pid");
    common::wait_gone(bg, "a background process outliving the container's init").await;
    h.delete("").await.expect("delete");
}

#[tokio::test(flavor = "current_thread")]
async fn stats_report_the_cgroup_as_containerd_metrics() {
    let mut h = Harness::new("stats", &["sleep", "1000"]).await;
    h.config["linux"]["resources"] = json!({"memory": {"limit": 67108864}, "pids": {"limit": 50}});
    h.write_config();
    h.create("", "", false).await.expect("create");
    h.start("").await.expect("start");
    let r = h.stats().await.expect("stats");
    let any = r.stats.into_option().expect("metrics");
    match carapace_cgroups::detect().expect("cgroup version") {
        carapace_cgroups::Hierarchy::V1 => {
            assert_eq!(any.type_url, "io.containerd.cgroups.v1.Metrics");
            let m = containerd_shim_protos::cgroups::metrics::Metrics::parse_from_bytes(&any.value)
                .expect("decode v1 metrics");
            assert_eq!(m.memory.usage.limit, 67108864);
            assert!(m.memory.usage.usage > 0);
            assert_eq!(m.pids.limit, 50);
            assert!(m.pids.current >= 1);
        }
        carapace_cgroups::Hierarchy::V2 => {
            assert_eq!(any.type_url, "io.containerd.cgroups.v2.Metrics");
            let m =
                containerd_shim_protos::cgroups_v2::metrics::Metrics::parse_from_bytes(&any.value)
                    .expect("decode v2 metrics");
            assert_eq!(m.memory.usage_limit, 67108864);
            assert!(m.memory.usage > 0);
            assert_eq!(m.pids.limit, 50);
            assert!(m.pids.current >= 1);
        }
    }
    h.kill("", 9).await.expect("kill");
    h.wait("").await;
    h.delete("").await.expect("delete");
    let e = h.stats().await.expect_err("stats after delete");
    assert_eq!(code(&e), Code::NOT_FOUND);
}

#[tokio::test(flavor = "current_thread")]
async fn sigterm_stops_an_idle_shim_but_not_one_holding_a_container() {
    let h = Harness::new("sigterm", &["sleep", "1000"]).await;
    h.create("", "", false).await.expect("create");
    h.start("").await.expect("start");
    let shim = nix::unistd::Pid::from_raw(h.shim_pid());
    nix::sys::signal::kill(shim, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    // Still serving: the container is held.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        h.state("").await.expect("state").status,
        Status::RUNNING.into()
    );
    h.kill("", 9).await.expect("kill");
    h.wait("").await;
    h.delete("").await.expect("delete");
    nix::sys::signal::kill(shim, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    common::wait_gone(shim.as_raw(), "an idle shim after SIGTERM").await;
}

#[tokio::test(flavor = "current_thread")]
async fn runc_drives_the_container_when_the_options_name_it() {
    let runc = std::path::Path::new("/usr/sbin/runc");
    assert!(
        runc.is_file(),
        "runc missing: install Debian's runc (hack/install-deps.sh)"
    );
    let h = Harness::new("runc", &["sh", "-c", "echo via-runc; exit 6"]).await;
    let log = h.crilog("c.log");
    let req = api::CreateTaskRequest {
        id: h.id.clone(),
        bundle: h.bundle().to_string_lossy().into_owned(),
        stdout: log.clone(),
        stderr: log,
        options: Some(h.options_for(runc)).into(),
        ..Default::default()
    };
    h.client()
        .create(common::ctx(), &req)
        .await
        .expect("create with runc");
    h.start("").await.expect("start");
    assert_eq!(h.wait("").await.exit_status, 6);
    let recs = records(&h.read("c.log"));
    assert!(
        recs.contains(&("stdout".into(), "F".into(), "via-runc".into())),
        "{recs:?}"
    );
    // runc, not carapace-runtime, holds the state.
    assert!(h
        .bundle()
        .join("state")
        .join(&h.id)
        .join("state.json")
        .exists());
    h.delete("").await.expect("delete");
    assert!(!h.bundle().join("state").join(&h.id).exists());
}

#[tokio::test(flavor = "current_thread")]
async fn a_vanished_log_directory_does_not_stall_the_container() {
    let h = Harness::new(
        "vanished",
        &[
            "sh",
            "-c",
            "read x; i=0; while [ $i -lt 2000 ]; do echo line-$i; i=$((i+1)); done; exit 0",
        ],
    )
    .await;
    let logdir = h.bundle().join("logs");
    std::fs::create_dir_all(&logdir).expect("mkdir logs");
    let log = format!("crilog://{}", logdir.join("c.log").display());
    h.create_with_stdin("attach:", &log, &log, false)
        .await
        .expect("create");
    h.start("").await.expect("start");
    // kubelet's pod log directory disappears under the running container.
    std::fs::remove_dir_all(&logdir).expect("remove log dir");
    let stream = h.io_client().attach(common::ctx()).await.expect("attach");
    stream
        .send(&carapace_shim::proto::io::AttachInput {
            id: h.id.clone(),
            stdin: true,
            stdin_data: b"go\n".to_vec(),
            ..Default::default()
        })
        .await
        .expect("release the container");
    // It writes all its output and exits; nothing blocks on the lost file.
    assert_eq!(h.wait("").await.exit_status, 0);
    h.delete("").await.expect("delete");
}

/// Teardown converges when the runtime's container is already gone (a
/// delete a crash interrupted, a runtime state lost): kill --all answers
/// NotFound (the daemon's code for "already done") and Delete finishes,
/// instead of an Internal error that kept pods terminating forever.
#[tokio::test(flavor = "current_thread")]
async fn kill_and_delete_converge_when_the_runtimes_container_is_gone() {
    let h = Harness::new("gone", &["true"]).await;
    h.create("", "", false).await.expect("create");
    h.start("").await.expect("start");
    h.wait("").await;
    let out = std::process::Command::new(common::runtime_bin())
        .arg("--root")
        .arg(h.bundle().join("state"))
        .args(["delete", "--force", &h.id])
        .output()
        .expect("runtime delete");
    assert!(out.status.success(), "{out:?}");
    let req = api::KillRequest {
        id: h.id.clone(),
        signal: 9,
        all: true,
        ..Default::default()
    };
    let e = h
        .client()
        .kill(common::ctx(), &req)
        .await
        .expect_err("kill --all of a container the runtime forgot");
    assert_eq!(code(&e), Code::NOT_FOUND, "{e:?}");
    h.delete("").await.expect("delete converges");
    assert_eq!(
        code(&h.state("").await.expect_err("state after delete")),
        Code::NOT_FOUND
    );
}
