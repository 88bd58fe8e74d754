//! The daemon killed -9 in the middle of CreateContainer (its OCI runtime
//! hangs in `create`): after a restart the half-made container is rolled
//! back — not listed, its name free again, no rootfs mount, bundle, shim
//! or container cgroup left — and the pod still takes containers.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use carapace_e2e::workload::{assert_rolled_back, create, exec, pull, start};
use carapace_e2e::{
    daemon_bin, mounts_under, pod_config, require_registry, start_with_script_handler, HANG_GUARD,
};
use k8s_cri::v1 as cri;

const BUSYBOX: &str = "127.0.0.1:5000/test/busybox:latest";

/// An OCI runtime that is carapace-runtime, except that while `hang` exists
/// beside it, `create` records its PID and bundle and hangs.
fn hanging_runtime(dir: &Path) -> String {
    let real = daemon_bin().with_file_name("carapace-runtime");
    format!(
        r#"#!/bin/sh
if [ -e {dir}/hang ]; then
    for a in "$@"; do
        if [ "$a" = create ]; then
            echo "$$" > {dir}/hung.pid
            exec sleep 600
        fi
    done
fi
exec {real} "$@"
"#,
        dir = dir.display(),
        real = real.display()
    )
}

fn container(name: &str) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: BUSYBOX.into(),
            ..Default::default()
        }),
        command: vec!["sleep".into(), "300".into()],
        linux: Some(cri::LinuxContainerConfig::default()),
        ..Default::default()
    }
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| {
            let c = std::fs::read(e.path().join("cmdline")).ok()?;
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            c.contains(needle).then_some(c)
        })
        .collect()
}

/// cgroup directories (any hierarchy) whose name is `id`.
fn cgroups_named(id: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo: Vec<PathBuf> = vec![PathBuf::from("/sys/fs/cgroup")];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                if e.file_name().to_string_lossy().contains(id) {
                    out.push(e.path());
                }
                todo.push(e.path());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_inside_create_container_leaves_nothing_after_restart() {
    require_registry();
    let tools = tempfile::tempdir().expect("tmp");
    let mut d = start_with_script_handler(tools.path(), "hang", &hanging_runtime(tools.path()));
    pull(&d, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let pc = pod_config("crash");
    let pod = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pc.clone()),
            runtime_handler: "hang".into(),
        })
        .await
        .expect("run pod")
        .into_inner()
        .pod_sandbox_id;
    std::fs::write(tools.path().join("hang"), "").expect("arm");
    let mut rt2 = rt.clone();
    let (pod2, pc2) = (pod.clone(), pc.clone());
    let call =
        tokio::spawn(async move { create(&mut rt2, &pod2, &pc2, container("doomed")).await });
    let pid_file = tools.path().join("hung.pid");
    let deadline = Instant::now() + HANG_GUARD;
    let hung: i32 = loop {
        if let Some(p) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "runtime create never ran:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Which container it was: the bundle the daemon made for it.
    let bundles: Vec<String> = std::fs::read_dir(d.state_dir().join("containers"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(bundles.len(), 1, "{bundles:?}");
    let id = bundles[0].clone();
    assert!(
        !mounts_under(d.dir.path()).iter().all(|m| !m.contains(&id)),
        "rootfs not mounted yet"
    );
    d.stop(nix::sys::signal::Signal::SIGKILL);
    let _ = call.await;
    std::fs::remove_file(tools.path().join("hang")).expect("disarm");
    // The hung runtime belonged to the dead daemon's shim: end it.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(hung),
        nix::sys::signal::Signal::SIGKILL,
    );

    d.spawn();
    let mut rt = d.runtime().await;
    assert_rolled_back(&d, &mut rt, &id).await;
    assert_eq!(
        processes_mentioning(&id),
        Vec::<String>::new(),
        "shim or runtime left"
    );
    assert_eq!(
        cgroups_named(&id),
        Vec::<PathBuf>::new(),
        "container cgroup left"
    );
    // The name is free and the pod works.
    let ok = create(&mut rt, &pod, &pc, container("doomed"))
        .await
        .expect("create after recovery");
    start(&mut rt, &ok).await;
    let r = exec(&mut rt, &ok, &["true"], 10).await.expect("exec");
    assert_eq!(r.exit_code, 0);
}
