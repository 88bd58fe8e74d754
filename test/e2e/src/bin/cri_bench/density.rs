//! Density: N pods with one `sleep` container each, started C at a time
//! (kubelet starts a node's pods in parallel), then, with all of them
//! running, what each costs the node and how fast the List calls answer,
//! then all removed C at a time. Prints:
//! `up_ms <wall ms>`, `down_ms <wall ms>`,
//! `list_pod_sandbox|list_containers|list_container_stats <median> <p95>`
//! (10 calls each, after one untimed),
//! `shims <count> <Pss KiB> <VmRSS KiB>` (the daemon's shims),
//! `infra <count> <Pss KiB> <VmRSS KiB>` (the pods' infra/pause processes:
//! the shims' children that are not the containers' `sleep`),
//! `daemon <Pss KiB> <VmRSS KiB>` (the PID given, right after the List
//! calls) and `daemon_settled <Pss KiB> <VmRSS KiB>` (the same once the
//! node has been left alone for SETTLE: what an operator sees at rest with
//! N pods; both daemons give memory back in the background, Go's
//! scavenger and Carapace's arena trimmer).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use k8s_cri::v1 as cri;
use tokio::sync::Semaphore;

use super::{
    container, memory, pod, pull, remove_pod, report, run_pod, shim_pids, status_err, total_memory,
    Runtime,
};

/// The children of `parents` that are not running `sleep` (the pods'
/// infra or pause processes).
fn infra_pids(parents: &[u32]) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_string())
        };
        let ppid = field("PPid:").and_then(|v| v.parse::<u32>().ok());
        if ppid.is_some_and(|p| parents.contains(&p)) && field("Name:").as_deref() != Some("sleep")
        {
            out.push(pid);
        }
    }
    out
}

async fn up_one(
    mut rt: Runtime,
    i: usize,
    image: Option<cri::ImageSpec>,
) -> anyhow::Result<String> {
    let pc = pod(i);
    let id = run_pod(&mut rt, &pc).await?;
    let c = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: id.clone(),
            config: Some(container("c", &image, &["sleep", "3600"])),
            sandbox_config: Some(pc),
        })
        .await
        .map_err(status_err("CreateContainer"))?
        .into_inner()
        .container_id;
    rt.start_container(cri::StartContainerRequest { container_id: c })
        .await
        .map_err(status_err("StartContainer"))?;
    Ok(id)
}

/// Times `call` 10 times after one untimed call.
async fn time_list<F, Fut>(name: &str, mut call: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<usize>>,
{
    call().await?;
    let mut ms = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        call().await?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    report(name, ms);
    Ok(())
}

/// How long the node is left alone before the settled memory figure.
const SETTLE: Duration = Duration::from_secs(5);

/// See the module doc.
pub async fn density(
    ch: tonic::transport::Channel,
    n: usize,
    image: &str,
    c: usize,
    daemon_pid: u32,
    sock: &std::path::Path,
) -> anyhow::Result<()> {
    let spec = pull(&ch, image).await?;
    let gate = Arc::new(Semaphore::new(c.max(1)));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..n {
        let (rt, spec, gate) = (Runtime::new(ch.clone()), spec.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let _slot = gate.acquire_owned().await.context("semaphore")?;
            up_one(rt, i, spec).await
        }));
    }
    let mut pods = Vec::new();
    let mut first_err = None;
    for task in tasks {
        match task.await.context("join")? {
            Ok(id) => pods.push(id),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    let up = t.elapsed().as_secs_f64() * 1e3;
    let measured = async {
        if let Some(e) = first_err.take() {
            return Err(e);
        }
        let mut rt = Runtime::new(ch.clone());
        time_list("list_pod_sandbox", || {
            let mut rt = rt.clone();
            async move {
                let got = rt
                    .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
                    .await
                    .map_err(status_err("ListPodSandbox"))?
                    .into_inner()
                    .items
                    .len();
                Ok(got)
            }
        })
        .await?;
        time_list("list_containers", || {
            let mut rt = rt.clone();
            async move {
                Ok(rt
                    .list_containers(cri::ListContainersRequest { filter: None })
                    .await
                    .map_err(status_err("ListContainers"))?
                    .into_inner()
                    .containers
                    .len())
            }
        })
        .await?;
        time_list("list_container_stats", || {
            let mut rt = rt.clone();
            async move {
                Ok(rt
                    .list_container_stats(cri::ListContainerStatsRequest { filter: None })
                    .await
                    .map_err(status_err("ListContainerStats"))?
                    .into_inner()
                    .stats
                    .len())
            }
        })
        .await?;
        let running = rt
            .list_containers(cri::ListContainersRequest { filter: None })
            .await
            .map_err(status_err("ListContainers"))?
            .into_inner()
            .containers
            .len();
        if running != n {
            bail!("{running} containers listed, not {n}");
        }
        let shims = shim_pids(sock)?;
        let infra = infra_pids(&shims);
        let measured = (
            total_memory(&shims),
            total_memory(&infra),
            memory(daemon_pid),
        );
        tokio::time::sleep(SETTLE).await;
        anyhow::Ok((measured.0, measured.1, measured.2, memory(daemon_pid)))
    }
    .await;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for id in pods {
        let (mut rt, gate) = (Runtime::new(ch.clone()), gate.clone());
        tasks.push(tokio::spawn(async move {
            let _slot = gate.acquire_owned().await.context("semaphore")?;
            remove_pod(&mut rt, id).await.map(drop)
        }));
    }
    let mut teardown = Ok(());
    for task in tasks {
        let r = task.await.context("join")?;
        if teardown.is_ok() {
            teardown = r;
        }
    }
    let down = t.elapsed().as_secs_f64() * 1e3;
    let (shims, infra, daemon, settled) = measured?;
    teardown?;
    println!("up_ms {up:.0}");
    println!("down_ms {down:.0}");
    println!("shims {} {} {}", shims.0, shims.1, shims.2);
    println!("infra {} {} {}", infra.0, infra.1, infra.2);
    let (dp, dr) = daemon.context("the daemon's memory")?;
    println!("daemon {dp} {dr}");
    let (sp, sr) = settled.context("the daemon's memory")?;
    println!("daemon_settled {sp} {sr}");
    Ok(())
}
