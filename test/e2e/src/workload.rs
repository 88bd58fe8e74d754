//! CRI calls the container-level e2e suites all make (pull an image,
//! create and start a container, ExecSync, status, waiting for an exit),
//! in one place.

use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

use crate::Daemon;

/// A RuntimeService client.
pub type Rt = RuntimeServiceClient<Channel>;

/// Pulls `image` (panics on failure: the suites need it).
pub async fn pull(d: &Daemon, image: &str) {
    try_pull(d, image).await.expect("pull");
}

/// Pulls `image`; its image ref, or the daemon's status.
pub async fn try_pull(d: &Daemon, image: &str) -> Result<String, tonic::Status> {
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
        .map(|r| r.into_inner().image_ref)
}

/// RunPodSandbox with `config` (panics on failure); the pod's ID.
pub async fn run_pod(rt: &mut Rt, config: cri::PodSandboxConfig) -> String {
    rt.run_pod_sandbox(cri::RunPodSandboxRequest {
        config: Some(config),
        runtime_handler: String::new(),
    })
    .await
    .expect("run pod")
    .into_inner()
    .pod_sandbox_id
}

/// The pod's primary IP (panics when it has none).
pub async fn pod_ip(rt: &mut Rt, pod: &str) -> String {
    rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
        pod_sandbox_id: pod.into(),
        verbose: false,
    })
    .await
    .expect("pod status")
    .into_inner()
    .status
    .and_then(|s| s.network)
    .expect("pod network")
    .ip
}

/// Sends a few packets across the pod's eth0: a TCP connect to its IP
/// (refused or not), so its interface counters move.
pub async fn knock_on_pod(rt: &mut Rt, pod: &str) {
    let ip = pod_ip(rt, pod).await;
    let addr: std::net::IpAddr = ip.parse().expect("pod IP");
    let _ =
        std::net::TcpStream::connect_timeout(&(addr, 9).into(), std::time::Duration::from_secs(5));
}

/// CreateContainer in `pod`.
pub async fn create(
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

/// StartContainer (panics on failure).
pub async fn start(rt: &mut Rt, id: &str) {
    rt.start_container(cri::StartContainerRequest {
        container_id: id.into(),
    })
    .await
    .expect("start");
}

/// ExecSync of `cmd` with `timeout` seconds (0: none).
pub async fn exec(
    rt: &mut Rt,
    id: &str,
    cmd: &[&str],
    timeout: i64,
) -> Result<cri::ExecSyncResponse, tonic::Status> {
    rt.exec_sync(cri::ExecSyncRequest {
        container_id: id.into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        timeout,
    })
    .await
    .map(|r| r.into_inner())
}

/// ListContainers without a filter (panics on failure).
pub async fn list_containers(rt: &mut Rt) -> Vec<cri::Container> {
    rt.list_containers(cri::ListContainersRequest { filter: None })
        .await
        .expect("list containers")
        .into_inner()
        .containers
}

/// What every crash-inside-CreateContainer test checks after the daemon's
/// restart: container `id` was rolled back — not listed, no mount naming
/// it, no bundle. Each suite then checks what its runtime leaves (state,
/// processes, cgroups).
pub async fn assert_rolled_back(d: &Daemon, rt: &mut Rt, id: &str) {
    let listed = list_containers(rt).await;
    assert!(
        listed.is_empty(),
        "not rolled back: {listed:?}\n{}",
        d.log()
    );
    let mounts: Vec<String> = crate::mounts_under(d.dir.path())
        .into_iter()
        .filter(|m| m.contains(id))
        .collect();
    assert!(mounts.is_empty(), "{mounts:?}");
    assert!(
        !d.state_dir().join("containers").join(id).exists(),
        "bundle left"
    );
}

/// StopContainer without grace, then RemoveContainer (panics on failure).
pub async fn stop_and_remove(rt: &mut Rt, id: &str) {
    rt.stop_container(cri::StopContainerRequest {
        container_id: id.into(),
        timeout: 0,
    })
    .await
    .expect("stop container");
    rt.remove_container(cri::RemoveContainerRequest {
        container_id: id.into(),
    })
    .await
    .expect("remove container");
}

/// StopPodSandbox, then RemovePodSandbox (panics on failure).
pub async fn stop_and_remove_pod(rt: &mut Rt, pod: &str) {
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.into(),
    })
    .await
    .expect("stop pod");
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod.into(),
    })
    .await
    .expect("remove pod");
}

/// A read-only image volume (CRI `Mount.image`) of `image` at `path`,
/// from `sub` inside the image (empty: all of it).
pub fn image_mount(path: &str, image: &str, sub: &str) -> cri::Mount {
    cri::Mount {
        container_path: path.into(),
        readonly: true,
        image: Some(cri::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        image_sub_path: sub.into(),
        ..Default::default()
    }
}

/// ContainerStatus (non-verbose; panics on failure).
pub async fn status(rt: &mut Rt, id: &str) -> cri::ContainerStatus {
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

/// Polls until container `id` has exited (hang-guarded); its status.
pub async fn wait_exited(rt: &mut Rt, id: &str) -> cri::ContainerStatus {
    let deadline = std::time::Instant::now() + crate::HANG_GUARD;
    loop {
        let s = status(rt, id).await;
        if s.state == cri::ContainerState::ContainerExited as i32 {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "container {id} never exited: {s:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// UpdatePodSandboxResources as kubelet calls it after an in-place resize.
pub async fn update_pod_resources(
    d: &Daemon,
    req: cri::UpdatePodSandboxResourcesRequest,
) -> Result<(), tonic::Status> {
    d.runtime()
        .await
        .update_pod_sandbox_resources(req)
        .await
        .map(|_| ())
}

/// The busybox image of the test registry (hack/registry.sh).
pub const BUSYBOX: &str = "127.0.0.1:5000/test/busybox:latest";

/// A daemon (with the test network) with busybox pulled and one running
/// pod named `name`, whose config `tweak` adjusts first: what most
/// container-level suites start from.
pub async fn busybox_pod(
    name: &str,
    tweak: impl FnOnce(&mut cri::PodSandboxConfig),
) -> (Daemon, Rt, String, cri::PodSandboxConfig) {
    crate::require_registry();
    let d = Daemon::start_with_network("[registry]\ninsecure = [\"127.0.0.1:5000\"]\n", &[]);
    pull(&d, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let mut pc = crate::pod_config(name);
    pc.log_directory = d.dir.path().join("logs").display().to_string();
    tweak(&mut pc);
    let pod = run_pod(&mut rt, pc.clone()).await;
    (d, rt, pod, pc)
}

/// A busybox container `name` running `args` with security context `sc`.
pub fn busybox_container(
    name: &str,
    args: &[&str],
    sc: cri::LinuxContainerSecurityContext,
) -> cri::ContainerConfig {
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
        log_path: format!("{name}.log"),
        linux: Some(cri::LinuxContainerConfig {
            security_context: Some(sc),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Creates and starts `c` in the pod; its ID.
pub async fn run(
    rt: &mut Rt,
    pod: &str,
    pc: &cri::PodSandboxConfig,
    c: cri::ContainerConfig,
) -> String {
    let id = create(rt, pod, pc, c).await.expect("create");
    start(rt, &id).await;
    id
}

/// `sh -c script` in the container: (exit code, stdout, stderr).
pub async fn sh(rt: &mut Rt, id: &str, script: &str) -> (i32, String, String) {
    let r = exec(rt, id, &["sh", "-c", script], 30).await.expect("exec");
    (
        r.exit_code,
        String::from_utf8_lossy(&r.stdout).into_owned(),
        String::from_utf8_lossy(&r.stderr).into_owned(),
    )
}
