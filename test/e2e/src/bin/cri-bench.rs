//! `cri-bench`: times CRI calls against any CRI socket (Carapace or
//! containerd), the same requests for both, for hack/bench-cri.sh.
//!
//! Usage: cri-bench SOCKET N                  (pods)
//!        cri-bench SOCKET N pull IMAGE       (image pulls)
//!        cri-bench SOCKET N containers IMAGE (container lifecycle, exec)
//! Pods: runs N pods one after another; for each, times RunPodSandbox,
//! then StopPodSandbox + RemovePodSandbox.
//! Pulls: N cold pulls of IMAGE, each followed by RemoveImage (untimed).
//! Containers: IMAGE pulled once; then N times, in a fresh pod (untimed),
//! a `sleep` container: CreateContainer, StartContainer, 5 ExecSync of
//! `true` (each timed), StopContainer (timeout 0) + RemoveContainer.
//! Prints one line per measure: `<name> <median ms> <p95 ms>`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;

fn pod(i: usize) -> cri::PodSandboxConfig {
    let name = format!("bench-{}-{i}", std::process::id());
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.clone(),
            uid: format!("uid-{name}"),
            namespace: "bench".into(),
            attempt: 0,
        }),
        hostname: name,
        linux: Some(cri::LinuxPodSandboxConfig::default()),
        ..Default::default()
    }
}

/// `q`-quantile (nearest rank) of sorted milliseconds.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() as f64) * q).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1]
}

fn report(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    println!(
        "{name} {:.2} {:.2}",
        quantile(&ms, 0.5),
        quantile(&ms, 0.95)
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(sock), Some(n)) = (args.get(1), args.get(2)) else {
        bail!("usage: cri-bench SOCKET N");
    };
    let n: usize = n.parse().context("N must be a number")?;
    if n == 0 {
        bail!("N must be at least 1");
    }
    let sock = PathBuf::from(sock);
    let ch = carapace_e2e::connect(&sock)
        .await
        .context("connect to the CRI socket")?;
    if args.get(3).map(String::as_str) == Some("pull") {
        let image = args.get(4).context("pull needs an IMAGE")?;
        let mut img = ImageServiceClient::new(ch);
        let spec = Some(cri::ImageSpec {
            image: image.clone(),
            ..Default::default()
        });
        let mut times = Vec::new();
        for _ in 0..n {
            let t = Instant::now();
            let id = img
                .pull_image(cri::PullImageRequest {
                    image: spec.clone(),
                    auth: None,
                    sandbox_config: None,
                })
                .await
                .map_err(|s| anyhow::anyhow!("PullImage: {:?}: {}", s.code(), s.message()))?
                .into_inner()
                .image_ref;
            times.push(t.elapsed().as_secs_f64() * 1e3);
            img.remove_image(cri::RemoveImageRequest {
                image: Some(cri::ImageSpec {
                    image: id,
                    ..Default::default()
                }),
            })
            .await
            .context("RemoveImage")?;
        }
        report("pull_image", times);
        return Ok(());
    }
    if args.get(3).map(String::as_str) == Some("containers") {
        let image = args.get(4).context("containers needs an IMAGE")?;
        return containers(ch, n, image).await;
    }
    let mut rt = RuntimeServiceClient::new(ch);
    let (mut run, mut teardown) = (Vec::new(), Vec::new());
    for i in 0..n {
        let t = Instant::now();
        let id = rt
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(pod(i)),
                runtime_handler: String::new(),
            })
            .await
            .map_err(|s| anyhow::anyhow!("RunPodSandbox: {:?}: {}", s.code(), s.message()))?
            .into_inner()
            .pod_sandbox_id;
        run.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .context("StopPodSandbox")?;
        rt.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
            .await
            .context("RemovePodSandbox")?;
        teardown.push(t.elapsed().as_secs_f64() * 1e3);
    }
    report("run_pod_sandbox", run);
    report("stop_remove_pod_sandbox", teardown);
    Ok(())
}

fn status_err(call: &'static str) -> impl Fn(tonic::Status) -> anyhow::Error {
    move |s| anyhow::anyhow!("{call}: {:?}: {}", s.code(), s.message())
}

/// The container lifecycle and ExecSync, timed call by call.
async fn containers(ch: tonic::transport::Channel, n: usize, image: &str) -> anyhow::Result<()> {
    let spec = Some(cri::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    });
    ImageServiceClient::new(ch.clone())
        .pull_image(cri::PullImageRequest {
            image: spec.clone(),
            auth: None,
            sandbox_config: None,
        })
        .await
        .map_err(status_err("PullImage"))?;
    let mut rt = RuntimeServiceClient::new(ch);
    let (mut create, mut start, mut exec, mut teardown) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let pc = pod(i);
        let pod_id = rt
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(pc.clone()),
                runtime_handler: String::new(),
            })
            .await
            .map_err(status_err("RunPodSandbox"))?
            .into_inner()
            .pod_sandbox_id;
        let config = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: "bench".into(),
                attempt: 0,
            }),
            image: spec.clone(),
            command: vec!["sleep".into(), "3600".into()],
            linux: Some(cri::LinuxContainerConfig::default()),
            ..Default::default()
        };
        let t = Instant::now();
        let id = rt
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod_id.clone(),
                config: Some(config),
                sandbox_config: Some(pc),
            })
            .await
            .map_err(status_err("CreateContainer"))?
            .into_inner()
            .container_id;
        create.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        rt.start_container(cri::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .map_err(status_err("StartContainer"))?;
        start.push(t.elapsed().as_secs_f64() * 1e3);
        for _ in 0..5 {
            let t = Instant::now();
            let r = rt
                .exec_sync(cri::ExecSyncRequest {
                    container_id: id.clone(),
                    cmd: vec!["true".into()],
                    timeout: 10,
                })
                .await
                .map_err(status_err("ExecSync"))?
                .into_inner();
            exec.push(t.elapsed().as_secs_f64() * 1e3);
            if r.exit_code != 0 {
                bail!("ExecSync true exited {}", r.exit_code);
            }
        }
        let t = Instant::now();
        rt.stop_container(cri::StopContainerRequest {
            container_id: id.clone(),
            timeout: 0,
        })
        .await
        .map_err(status_err("StopContainer"))?;
        rt.remove_container(cri::RemoveContainerRequest { container_id: id })
            .await
            .map_err(status_err("RemoveContainer"))?;
        teardown.push(t.elapsed().as_secs_f64() * 1e3);
        rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod_id.clone(),
        })
        .await
        .map_err(status_err("StopPodSandbox"))?;
        rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod_id,
        })
        .await
        .map_err(status_err("RemovePodSandbox"))?;
    }
    report("create_container", create);
    report("start_container", start);
    report("exec_sync", exec);
    report("stop_remove_container", teardown);
    Ok(())
}
