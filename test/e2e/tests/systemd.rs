//! The systemd cgroup driver end to end (`cgroup_driver = "systemd"`),
//! against a real systemd as PID 1: a pod is a transient slice, its infra
//! process and each container a transient scope in it; limits are unit
//! properties too (a `systemctl daemon-reload` keeps them, also after
//! UpdateContainerResources); stats and OOM kills work on scopes, which
//! systemd removes as soon as they are empty; removal, also after the
//! daemon was killed, leaves no unit and no cgroup behind.
//!
//! Ignored in plain `cargo test` (the host has no systemd); hack/test-v2.sh
//! runs them with `--ignored` in its systemd VM lane.

use std::path::{Path, PathBuf};
use std::process::Command;

use carapace_e2e::workload::{
    create, exec, pull, run_pod, start, stop_and_remove_pod, wait_exited, Rt,
};
use carapace_e2e::{pod_config, require_registry, Daemon};
use k8s_cri::v1 as cri;

const BUSYBOX: &str = "127.0.0.1:5000/test/busybox:latest";

fn require_systemd() {
    assert!(
        Path::new("/run/systemd/system").is_dir(),
        "systemd is not PID 1 here (no /run/systemd/system): run this in the systemd lane"
    );
}

fn systemctl(args: &[&str]) -> String {
    let out = Command::new("systemctl")
        .args(args)
        .output()
        .expect("run systemctl");
    assert!(out.status.success(), "systemctl {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn show(unit: &str, prop: &str) -> String {
    systemctl(&["show", "-p", prop, "--value", unit])
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

/// Every loaded unit whose name mentions `id`.
fn units_of(id: &str) -> Vec<String> {
    systemctl(&[
        "list-units",
        "--all",
        "--plain",
        "--no-legend",
        "--no-pager",
    ])
    .lines()
    .filter(|l| l.contains(id))
    .map(|l| l.split_whitespace().next().unwrap_or_default().to_string())
    .collect()
}

async fn daemon() -> (Daemon, Rt) {
    require_systemd();
    require_registry();
    let d = Daemon::start_with_network(
        "cgroup_driver = \"systemd\"\n[registry]\ninsecure = [\"127.0.0.1:5000\"]\n",
        &[],
    );
    pull(&d, BUSYBOX).await;
    let rt = d.runtime().await;
    (d, rt)
}

fn container(name: &str, args: &[&str], memory: i64) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: BUSYBOX.into(),
            ..Default::default()
        }),
        command: args.iter().map(|s| s.to_string()).collect(),
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: memory,
                cpu_shares: 512,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn slice_dir(slice_path: &str) -> PathBuf {
    Path::new("/sys/fs/cgroup").join(slice_path.trim_start_matches('/'))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs systemd as PID 1: hack/test-v2.sh runs it in its systemd VM lane"]
async fn pods_are_slices_and_containers_scopes_with_their_limits() {
    let (d, mut rt) = daemon().await;
    let mut pc = pod_config("sdpod");
    pc.log_directory = d.dir.path().join("logs").display().to_string();
    if let Some(l) = pc.linux.as_mut() {
        l.resources = Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: 256 << 20,
            ..Default::default()
        });
    }
    let pod = run_pod(&mut rt, pc.clone()).await;
    let slice = format!("carapace-pod{pod}.slice");
    let pod_dir = slice_dir(&format!("/carapace.slice/{slice}"));
    assert_eq!(show(&slice, "ActiveState"), "active");
    // The daemon's own slice is sized to the pod's resources, as a file
    // and as the slice's property.
    assert_eq!(show(&slice, "MemoryMax"), (256u64 << 20).to_string());
    assert_eq!(
        read(&pod_dir.join("memory.max")),
        (256u64 << 20).to_string()
    );
    let infra = format!("carapace-{pod}.scope");
    assert_eq!(show(&infra, "ActiveState"), "active", "the infra scope");
    assert!(pod_dir.join(&infra).is_dir());

    let id = create(
        &mut rt,
        &pod,
        &pc,
        container("app", &["sleep", "1000"], 64 << 20),
    )
    .await
    .expect("create");
    start(&mut rt, &id).await;
    let unit = format!("carapace-{id}.scope");
    let dir = pod_dir.join(&unit);
    assert_eq!(show(&unit, "ActiveState"), "active");
    assert_eq!(show(&unit, "Slice"), slice);
    assert_eq!(show(&unit, "MemoryMax"), (64u64 << 20).to_string());
    assert_eq!(read(&dir.join("memory.max")), (64u64 << 20).to_string());
    assert!(!read(&dir.join("cgroup.procs")).is_empty());

    // A live update lands in the file and the unit: a reload keeps it.
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
    assert_eq!(show(&unit, "MemoryMax"), (128u64 << 20).to_string());
    systemctl(&["daemon-reload"]);
    assert_eq!(read(&dir.join("memory.max")), (128u64 << 20).to_string());

    // Stats read the scope's files.
    let stats = rt
        .container_stats(cri::ContainerStatsRequest {
            container_id: id.clone(),
        })
        .await
        .expect("stats")
        .into_inner()
        .stats
        .expect("stats");
    let mem = stats.memory.expect("memory stats");
    assert!(
        mem.working_set_bytes.map(|v| v.value).unwrap_or(0) > 0,
        "{mem:?}"
    );
    let r = exec(&mut rt, &id, &["true"], 10).await.expect("exec");
    assert_eq!(r.exit_code, 0);

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
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert_eq!(show(&unit, "ActiveState"), "inactive");

    stop_and_remove_pod(&mut rt, &pod).await;
    assert!(!pod_dir.exists(), "{} left behind", pod_dir.display());
    let left = units_of(&pod);
    assert!(
        left.iter().all(|u| show(u, "ActiveState") == "inactive"),
        "units left active: {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs systemd as PID 1: hack/test-v2.sh runs it in its systemd VM lane"]
async fn a_kubelet_style_slice_parent_is_made_and_removed_when_missing() {
    let (d, mut rt) = daemon().await;
    let mut pc = pod_config("sdkube");
    pc.log_directory = d.dir.path().join("logs").display().to_string();
    let uid = format!("u{}", std::process::id());
    let slice = format!("kubepods-besteffort-pod{uid}.slice");
    if let Some(l) = pc.linux.as_mut() {
        l.cgroup_parent = slice.clone();
    }
    let pod = run_pod(&mut rt, pc.clone()).await;
    let pod_dir = slice_dir(&format!(
        "/kubepods.slice/kubepods-besteffort.slice/{slice}"
    ));
    assert_eq!(show(&slice, "ActiveState"), "active");
    let id = create(&mut rt, &pod, &pc, container("app", &["sleep", "1000"], 0))
        .await
        .expect("create");
    start(&mut rt, &id).await;
    assert!(pod_dir.join(format!("carapace-{id}.scope")).is_dir());
    stop_and_remove_pod(&mut rt, &pod).await;
    assert!(!pod_dir.exists(), "{} left behind", pod_dir.display());
    assert_eq!(show(&slice, "ActiveState"), "inactive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs systemd as PID 1: hack/test-v2.sh runs it in its systemd VM lane"]
async fn an_oom_kill_in_a_scope_is_reported() {
    let (d, mut rt) = daemon().await;
    let mut pc = pod_config("sdoom");
    pc.log_directory = d.dir.path().join("logs").display().to_string();
    let pod = run_pod(&mut rt, pc.clone()).await;
    let id = create(
        &mut rt,
        &pod,
        &pc,
        container("hog", &["sh", "-c", "tail /dev/zero"], 32 << 20),
    )
    .await
    .expect("create");
    start(&mut rt, &id).await;
    let s = wait_exited(&mut rt, &id).await;
    assert_eq!(s.reason, "OOMKilled", "{s:?}");
    assert_eq!(s.exit_code, 137, "{s:?}");
    stop_and_remove_pod(&mut rt, &pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs systemd as PID 1: hack/test-v2.sh runs it in its systemd VM lane"]
async fn units_are_removed_after_the_daemon_was_killed() {
    let (mut d, mut rt) = daemon().await;
    let mut pc = pod_config("sdkill");
    pc.log_directory = d.dir.path().join("logs").display().to_string();
    let pod = run_pod(&mut rt, pc.clone()).await;
    let id = create(&mut rt, &pod, &pc, container("app", &["sleep", "1000"], 0))
        .await
        .expect("create");
    start(&mut rt, &id).await;
    d.stop(nix::sys::signal::Signal::SIGKILL);
    d.spawn();
    let mut rt = d.runtime().await;
    let unit = format!("carapace-{id}.scope");
    assert_eq!(
        show(&unit, "ActiveState"),
        "active",
        "the container outlives the daemon"
    );
    stop_and_remove_pod(&mut rt, &pod).await;
    let pod_dir = slice_dir(&format!("/carapace.slice/carapace-pod{pod}.slice"));
    assert!(!pod_dir.exists(), "{} left behind", pod_dir.display());
    for u in [unit, format!("carapace-pod{pod}.slice")] {
        assert_eq!(show(&u, "ActiveState"), "inactive", "{u}");
    }
}

/// Runs, in a new pod `name`, a container that notes when it started
/// (`/tmp/started`) and sleeps: (pod, container, the note), for the
/// service tests to tell a container that kept running from a new one.
async fn run_marked(rt: &mut Rt, name: &str) -> (String, String, String) {
    let mut pc = pod_config(name);
    pc.log_directory = log_dir(name).display().to_string();
    let pod = run_pod(rt, pc.clone()).await;
    // Its stdout is whatever lands in /tmp/say: assert_kept checks that
    // the shim still carries it to the CRI log.
    let mut c = container(
        "app",
        &[
            "sh",
            "-c",
            "date +%s%N > /tmp/started; touch /tmp/say; exec tail -f /tmp/say",
        ],
        64 << 20,
    );
    c.log_path = "app.log".into();
    let id = create(rt, &pod, &pc, c).await.expect("create");
    start(rt, &id).await;
    let started = started_at(rt, &id).await;
    (pod, id, started)
}

/// The container's start note (see [`run_marked`]).
async fn started_at(rt: &mut Rt, id: &str) -> String {
    let (code, out, err) = carapace_e2e::workload::sh(rt, id, "cat /tmp/started").await;
    assert_eq!(code, 0, "{err}");
    out
}

/// Where [`run_marked`] puts pod `name`'s logs.
fn log_dir(name: &str) -> PathBuf {
    Path::new("/var/log/carapace-e2e").join(format!("{name}-{}", std::process::id()))
}

/// After `step`, the container is the one that started at `started`, and
/// running; what it prints still reaches its CRI log.
async fn assert_kept(rt: &mut Rt, id: &str, started: &str, step: &str) {
    assert_eq!(
        started_at(rt, id).await,
        started,
        "{step}: the container was restarted"
    );
    let marker = format!("said-after-{step}");
    let (code, _, err) =
        carapace_e2e::workload::sh(rt, id, &format!("echo {marker} >> /tmp/say")).await;
    assert_eq!(code, 0, "{err}");
    let log = carapace_e2e::workload::status(rt, id).await.log_path;
    carapace_e2e::eventually(&format!("{step}: {marker} in {log}"), || {
        let log = log.clone();
        let marker = marker.clone();
        async move {
            let text = std::fs::read_to_string(&log).map_err(|e| e.to_string())?;
            if text.contains(&marker) {
                Ok(())
            } else {
                Err(text)
            }
        }
    })
    .await;
    let st = carapace_e2e::workload::status(rt, id).await;
    assert_eq!(
        st.state,
        cri::ContainerState::ContainerRunning as i32,
        "{step}"
    );
}

/// Stops and removes the container and its pod through the CRI.
async fn remove_marked(rt: &mut Rt, pod: &str, id: &str) {
    rt.stop_container(cri::StopContainerRequest {
        container_id: id.into(),
        timeout: 5,
    })
    .await
    .expect("stop");
    rt.remove_container(cri::RemoveContainerRequest {
        container_id: id.into(),
    })
    .await
    .expect("remove");
    stop_and_remove_pod(rt, pod).await;
}

/// The shipped unit (packaging/carapace.service), with this build's daemon
/// and the test's config: `systemctl start` returns only once the CRI
/// socket serves (Type=notify, READY=1); a restart of the daemon leaves the
/// running container running and manageable (KillMode=process); so does a
/// stop, and the next start recovers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs systemd as PID 1: hack/test-v2.sh runs it in its systemd VM lane"]
async fn the_shipped_unit_notifies_readiness_and_restarts_leave_containers_running() {
    let (mut d, rt) = daemon().await;
    drop(rt);
    d.stop(nix::sys::signal::Signal::SIGTERM);
    let unit = format!("carapace-e2e-{}.service", std::process::id());
    let path = Path::new("/run/systemd/system").join(&unit);
    let shipped = include_str!("../../../packaging/carapace.service");
    assert!(shipped.contains("\nType=notify\n") && shipped.contains("\nKillMode=process\n"));
    let text = shipped.replace(
        "ExecStart=/usr/bin/carapace\n",
        &format!(
            "ExecStart={} --config {}\n",
            carapace_e2e::daemon_bin().display(),
            d.config_path().display()
        ),
    );
    assert_ne!(
        text, shipped,
        "the unit's ExecStart line changed: update this test"
    );
    // The lane's systemd carries no sysinit.target, which a service's
    // default dependencies require.
    let text = text.replacen("[Unit]\n", "[Unit]\nDefaultDependencies=no\n", 1);
    std::fs::write(&path, text).expect("write the unit");
    systemctl(&["daemon-reload"]);
    // Ready means serving: the first call after `start` returns must work.
    let ready = || async {
        systemctl(&["start", &unit]);
        let ch = carapace_e2e::connect(&d.socket())
            .await
            .expect("the socket serves once systemctl start returns");
        let mut rt = Rt::new(ch);
        rt.version(cri::VersionRequest::default())
            .await
            .expect("Version right after start");
        assert_eq!(show(&unit, "ActiveState"), "active");
        rt
    };
    let mut rt = ready().await;
    let (pod, id, started) = run_marked(&mut rt, "svc").await;
    let runtime_pid = || {
        let out = Command::new(carapace_e2e::daemon_bin().with_file_name("carapace-runtime"))
            .arg("--root")
            .arg(d.dir.path().join("runtime"))
            .args(["state", &id])
            .output()
            .expect("carapace-runtime state");
        let st: serde_json::Value = serde_json::from_slice(&out.stdout).expect("state json");
        st["pid"].as_i64().expect("pid") as i32
    };
    let pid = runtime_pid();
    for step in ["restart", "stop-start"] {
        if step == "restart" {
            systemctl(&["restart", &unit]);
        } else {
            systemctl(&["stop", &unit]);
            assert_eq!(show(&unit, "ActiveState"), "inactive");
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
                .expect("the container runs on while the daemon is stopped");
        }
        let mut rt = ready().await;
        assert_kept(&mut rt, &id, &started, step).await;
        assert_eq!(runtime_pid(), pid, "{step}");
    }
    let mut rt = ready().await;
    remove_marked(&mut rt, &pod, &id).await;
    drop(rt);
    systemctl(&["stop", &unit]);
    std::fs::remove_file(&path).expect("remove the unit");
    systemctl(&["daemon-reload"]);
}

/// The Debian package (hack/build-deb.sh) installed with dpkg into this
/// VM, and upgraded to the next version's package under a running pod:
/// the service comes up from the package's own unit and config; a
/// `systemctl restart`, the upgrade (prerm/postinst restart the daemon)
/// and a stop and start leave the container running and manageable; the
/// operator's edits of the config survive the upgrade (a conffile);
/// removing the package keeps the node's data, purging removes it.
/// hack/test-v2.sh passes the two packages as CARAPACE_DEB_V1 and
/// CARAPACE_DEB_V2, and Debian's dpkg in CARAPACE_DPKG_DIR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs systemd as PID 1 and the packages: hack/test-v2.sh runs it in its systemd VM lane"]
async fn the_package_installs_restarts_and_upgrades_under_a_running_pod() {
    require_systemd();
    require_registry();
    let deb = |v: &str| {
        std::env::var(v)
            .unwrap_or_else(|_| panic!("{v} is not set: hack/test-v2.sh builds the packages"))
    };
    let (v1, v2) = (deb("CARAPACE_DEB_V1"), deb("CARAPACE_DEB_V2"));
    let tools = deb("CARAPACE_DPKG_DIR");
    let dpkg = |args: &[&str]| {
        // Debian's dpkg (not the guest busybox's applet of that name) and
        // its helpers, first on its PATH.
        let out = Command::new(Path::new(&tools).join("dpkg"))
            .env("PATH", format!("{tools}:/usr/sbin:/usr/bin:/sbin:/bin"))
            .args(args)
            .output()
            .expect("run dpkg");
        assert!(out.status.success(), "dpkg {args:?}: {out:?}");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .trim()
        .to_string()
    };
    // The VM's dpkg database starts empty; the dependencies' files are
    // there (the lane copies the CNI plugins), their packages not.
    for d in ["info", "updates", "triggers"] {
        std::fs::create_dir_all(Path::new("/var/lib/dpkg").join(d)).expect("dpkg dirs");
    }
    for f in ["status", "available"] {
        let p = Path::new("/var/lib/dpkg").join(f);
        if !p.exists() {
            std::fs::write(p, "").expect("dpkg db");
        }
    }
    // The node's own network (no masquerading: the VM has no iptables)
    // and the operator's config edit (the test registry): both before
    // the install, which keeps them.
    std::fs::create_dir_all("/etc/cni/net.d").expect("mkdir");
    std::fs::write(
        "/etc/cni/net.d/10-e2e.conflist",
        serde_json::json!({
            "cniVersion": "1.0.0", "name": "e2e-pkg",
            "plugins": [{"type": "bridge", "bridge": "cre2epkg0", "isGateway": true,
                         "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.77.0.0/24"}]]}}]
        })
        .to_string(),
    )
    .expect("cni conf");
    std::fs::create_dir_all("/etc/carapace").expect("mkdir");
    let edit = "[registry]\ninsecure = [\"127.0.0.1:5000\"]\n";
    std::fs::write("/etc/carapace/config.toml", edit).expect("config");
    // The lane's minimal systemd has no sysinit.target, which a
    // service's default dependencies require: a drop-in, as an operator's
    // would be, not an edit of the packaged unit.
    let dropin = Path::new("/run/systemd/system/carapace.service.d");
    std::fs::create_dir_all(dropin).expect("mkdir drop-in");
    std::fs::write(dropin.join("lane.conf"), "[Unit]\nDefaultDependencies=no\n").expect("drop-in");
    let install = |deb: &str| {
        let out = dpkg(&["-i", "--force-depends", "--force-confold", deb]);
        let state = show("carapace.service", "ActiveState");
        if state != "active" {
            let status = Command::new("systemctl")
                .args(["status", "--no-pager", "carapace.service"])
                .output()
                .expect("systemctl status");
            panic!(
                "after dpkg -i {deb}: carapace.service is {state}\ndpkg: {out}\n{}",
                String::from_utf8_lossy(&status.stdout)
            );
        }
    };
    let socket = Path::new("/run/carapace/carapace.sock");
    let connect = || async {
        let ch = carapace_e2e::connect(socket)
            .await
            .expect("the socket serves once the service is started");
        Rt::new(ch)
    };
    install(&v1);
    assert!(
        !Path::new("/etc/cni/net.d/10-carapace.conflist").exists(),
        "the package put its network beside the node's own"
    );
    for page in [
        "carapace.8.gz",
        "carapace-image-pull.8.gz",
        "carapace-runtime.8.gz",
        "carapace-shim.8.gz",
    ] {
        assert!(
            Path::new("/usr/share/man/man8").join(page).is_file(),
            "the package has no man page {page}"
        );
    }
    let mut rt = connect().await;
    let ch = carapace_e2e::connect(socket).await.expect("connect");
    let mut images = k8s_cri::v1::image_service_client::ImageServiceClient::new(ch);
    images
        .pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: BUSYBOX.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("pull through the packaged daemon");
    let (pod, id, started) = run_marked(&mut rt, "pkg").await;
    for step in ["restart", "upgrade", "stop-start"] {
        match step {
            "restart" => {
                systemctl(&["restart", "carapace.service"]);
            }
            "upgrade" => {
                let before = std::fs::read("/usr/bin/carapace").expect("read the daemon");
                install(&v2);
                let v = dpkg(&["-s", "carapace"]);
                assert!(v.contains("+upgrade"), "not upgraded: {v}");
                // Another build: the binary changed, and the service runs
                // the new one (a daemon left on the old binary would show
                // "/usr/bin/carapace (deleted)").
                assert_ne!(
                    before,
                    std::fs::read("/usr/bin/carapace").expect("read the daemon"),
                    "the upgrade installed the same daemon binary"
                );
                let out = Command::new("/usr/bin/carapace")
                    .arg("--version")
                    .output()
                    .expect("carapace --version");
                let version = String::from_utf8_lossy(&out.stdout);
                assert!(version.contains("(build upgrade1)"), "{version}");
                let pid = show("carapace.service", "MainPID");
                let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("daemon exe");
                assert_eq!(
                    exe,
                    Path::new("/usr/bin/carapace"),
                    "the service kept the old daemon"
                );
                assert!(
                    std::fs::read_to_string("/etc/carapace/config.toml")
                        .expect("config")
                        .contains("127.0.0.1:5000"),
                    "the upgrade lost the operator's config"
                );
            }
            _ => {
                systemctl(&["stop", "carapace.service"]);
                assert_eq!(show("carapace.service", "ActiveState"), "inactive");
                systemctl(&["start", "carapace.service"]);
            }
        }
        let mut rt = connect().await;
        assert_kept(&mut rt, &id, &started, step).await;
    }
    let mut rt = connect().await;
    remove_marked(&mut rt, &pod, &id).await;
    drop((rt, images));
    dpkg(&["-r", "carapace"]);
    assert_eq!(show("carapace.service", "ActiveState"), "inactive");
    assert!(
        Path::new("/var/lib/carapace").is_dir(),
        "remove deleted the node's data"
    );
    assert!(!Path::new("/usr/bin/carapace").exists());
    dpkg(&["-P", "carapace"]);
    assert!(
        !Path::new("/var/lib/carapace").exists(),
        "purge kept the node's data"
    );
    let _ = std::fs::remove_file("/etc/cni/net.d/10-e2e.conflist");
    let _ = std::fs::remove_dir_all(dropin);
}
