//! `cri-bench`: times CRI calls against any CRI socket (Carapace or
//! containerd), the same requests for both, for hack/bench-cri.sh.
//!
//! Usage: cri-bench SOCKET N                  (pods)
//!        cri-bench SOCKET N pull IMAGE       (image pulls)
//!        cri-bench SOCKET N containers IMAGE (container lifecycle, exec)
//!        cri-bench SOCKET N streaming IMAGE [MIB] (streaming Exec, PortForward)
//!        cri-bench SOCKET N stats IMAGE [C]  (stats with C containers running)
//!        cri-bench SOCKET N density IMAGE C PID (N pods, C at a time; see density.rs)
//! Pods: runs N pods one after another; for each, times RunPodSandbox,
//! then StopPodSandbox + RemovePodSandbox (also each alone).
//! Pulls: N cold pulls of IMAGE, each followed by RemoveImage (untimed).
//! Containers: IMAGE pulled once; then N times, in a fresh pod (untimed),
//! a `sleep` container: CreateContainer, StartContainer, 5 ExecSync of
//! `true` (each timed), StopContainer (timeout 0) + RemoveContainer.
//! Streaming: IMAGE pulled, one pod with a busybox container serving two
//! ports with `nc` and `dd` (64 KiB blocks, so the pod's end is not what
//! is measured): 5601 swallows MIB MiB (default 256) and answers `done`,
//! 5602 sends MIB MiB of zeros. Then N times, timed: CRI Exec of `true`
//! → the URL → SPDY upgrade (v4.channel.k8s.io) → error/stdout/stderr
//! streams → the Success status received; and 3 times each way, one
//! PortForward connection pushing MIB MiB into 5601 until its `done`
//! comes back, and one pulling them from 5602, in 32 KiB DATA frames as
//! kubectl sends them.
//! Stats: IMAGE pulled, C (default 50) `sleep` containers started, five
//! to a pod; after one untimed warm-up, N times ListContainerStats
//! (every container; ListPodSandboxStats is left out: containerd 1.6
//! cannot answer it for pods without a cgroup_parent); then the memory of the daemon's shims while they run
//! (the processes named *shim* whose `-address` is SOCKET):
//! `shims <count> <total Pss KiB> <total VmRSS KiB>`.
//! Prints one line per measure: `<name> <median ms> <p95 ms>`; for the
//! transfers `<name> <median MiB/s> <worst MiB/s>`.

use std::path::PathBuf;
use std::time::Instant;

#[path = "cri_bench/density.rs"]
mod density;

use anyhow::{bail, Context};
use carapace_e2e::{quantile, report};
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
    if args.get(3).map(String::as_str) == Some("streaming") {
        let image = args.get(4).context("streaming needs an IMAGE")?;
        let mib: u64 = match args.get(5) {
            Some(m) => m.parse().context("MIB must be a number")?,
            None => 256,
        };
        return streaming(ch, n, image, mib).await;
    }
    if args.get(3).map(String::as_str) == Some("stats") {
        let image = args.get(4).context("stats needs an IMAGE")?;
        let c: usize = match args.get(5) {
            Some(c) => c.parse().context("C must be a number")?,
            None => 50,
        };
        return stats(ch, n, image, c, &sock).await;
    }
    if args.get(3).map(String::as_str) == Some("density") {
        let image = args.get(4).context("density needs an IMAGE")?;
        let c: usize = args
            .get(5)
            .context("density needs C")?
            .parse()
            .context("C")?;
        let pid: u32 = args
            .get(6)
            .context("density needs the daemon's PID")?
            .parse()
            .context("PID")?;
        return density::density(ch, n, image, c, pid, &sock).await;
    }
    if args.get(3).map(String::as_str) == Some("containers") {
        let image = args.get(4).context("containers needs an IMAGE")?;
        return containers(ch, n, image).await;
    }
    let mut rt = RuntimeServiceClient::new(ch);
    let (mut run, mut teardown) = (Vec::new(), Vec::new());
    let (mut stops, mut removes) = (Vec::new(), Vec::new());
    for i in 0..n {
        let t = Instant::now();
        let id = run_pod(&mut rt, &pod(i)).await?;
        run.push(t.elapsed().as_secs_f64() * 1e3);
        let (stop, remove) = remove_pod(&mut rt, id).await?;
        teardown.push(stop + remove);
        stops.push(stop);
        removes.push(remove);
    }
    report("run_pod_sandbox", run);
    report("stop_remove_pod_sandbox", teardown);
    report("stop_pod_sandbox", stops);
    report("remove_pod_sandbox", removes);
    Ok(())
}

fn status_err(call: &'static str) -> impl Fn(tonic::Status) -> anyhow::Error {
    move |s| anyhow::anyhow!("{call}: {:?}: {}", s.code(), s.message())
}

/// The RuntimeService client every mode uses.
type Runtime = RuntimeServiceClient<tonic::transport::Channel>;

/// RunPodSandbox of `pc`: the pod's ID.
async fn run_pod(rt: &mut Runtime, pc: &cri::PodSandboxConfig) -> anyhow::Result<String> {
    Ok(rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pc.clone()),
            runtime_handler: String::new(),
        })
        .await
        .map_err(status_err("RunPodSandbox"))?
        .into_inner()
        .pod_sandbox_id)
}

/// StopPodSandbox, then RemovePodSandbox even if the stop failed; the
/// first failure, or how long each took (ms).
async fn remove_pod(rt: &mut Runtime, id: String) -> anyhow::Result<(f64, f64)> {
    let t = Instant::now();
    let stopped = rt
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .map_err(status_err("StopPodSandbox"));
    let stop = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let removed = rt
        .remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
        .await
        .map_err(status_err("RemovePodSandbox"));
    let remove = t.elapsed().as_secs_f64() * 1e3;
    stopped.and(removed).map(|_| (stop, remove))
}

/// Pulls `image` (untimed); its spec for container configs.
async fn pull(
    ch: &tonic::transport::Channel,
    image: &str,
) -> anyhow::Result<Option<cri::ImageSpec>> {
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
    Ok(spec)
}

/// A container config running `command` from `image`.
fn container(name: &str, image: &Option<cri::ImageSpec>, command: &[&str]) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: image.clone(),
        command: command.iter().map(|s| s.to_string()).collect(),
        linux: Some(cri::LinuxContainerConfig::default()),
        ..Default::default()
    }
}

/// The container lifecycle and ExecSync, timed call by call.
async fn containers(ch: tonic::transport::Channel, n: usize, image: &str) -> anyhow::Result<()> {
    let spec = pull(&ch, image).await?;
    let mut rt = RuntimeServiceClient::new(ch);
    let (mut create, mut start, mut exec, mut teardown) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let pc = pod(i);
        let pod_id = run_pod(&mut rt, &pc).await?;
        let config = container("bench", &spec, &["sleep", "3600"]);
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
        remove_pod(&mut rt, pod_id).await?;
    }
    report("create_container", create);
    report("start_container", start);
    report("exec_sync", exec);
    report("stop_remove_container", teardown);
    Ok(())
}

/// The ports the streaming benchmark's container serves.
const SINK_PORT: u16 = 5601;
const SOURCE_PORT: u16 = 5602;
/// What the sink answers once it has swallowed everything.
const DONE: &str = "done\n";

/// Streaming Exec round trips and PortForward throughput in one pod.
async fn streaming(
    ch: tonic::transport::Channel,
    n: usize,
    image: &str,
    mib: u64,
) -> anyhow::Result<()> {
    let spec = pull(&ch, image).await?;
    let mut rt = RuntimeServiceClient::new(ch);
    let pc = pod(0);
    let pod_id = run_pod(&mut rt, &pc).await?;
    if mib == 0 {
        bail!("MIB must be at least 1");
    }
    let bytes = mib << 20;
    let blocks = mib * 16;
    let script = format!(
        "nc -ll -p {SINK_PORT} -e sh -c \
           'dd bs=65536 count={blocks} iflag=fullblock of=/dev/null 2>/dev/null; echo done' & \
         exec nc -ll -p {SOURCE_PORT} -e sh -c 'dd if=/dev/zero bs=65536 count={blocks} 2>/dev/null'"
    );
    let config = container("bench", &spec, &["sh", "-c", &script]);
    let result = async {
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
        rt.start_container(cri::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .map_err(status_err("StartContainer"))?;
        let exec = stream_execs(&mut rt, &id, n).await?;
        let dialer = carapace_e2e::spdy_client::Dialer::default();
        // nc has had the execs' time to listen; wait for it all the same.
        let mut ready = false;
        for _ in 0..100 {
            let url = port_forward_url(&mut rt, &pod_id, SINK_PORT).await?;
            let t =
                carapace_e2e::spdy_client::port_forward_transfer(&dialer, &url, SINK_PORT, 0, 0)
                    .await?;
            if t.error.is_empty() {
                ready = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        if !ready {
            bail!("nothing listens on port {SINK_PORT} in the benchmark pod");
        }
        let (mut push, mut pull) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            let url = port_forward_url(&mut rt, &pod_id, SINK_PORT).await?;
            let t = carapace_e2e::spdy_client::port_forward_transfer(
                &dialer,
                &url,
                SINK_PORT,
                bytes,
                DONE.len() as u64,
            )
            .await?;
            if !t.error.is_empty() || t.http_status != 101 {
                bail!("push: HTTP {}: {}", t.http_status, t.error);
            }
            push.push(mib as f64 / t.elapsed.as_secs_f64());
            let url = port_forward_url(&mut rt, &pod_id, SOURCE_PORT).await?;
            let t = carapace_e2e::spdy_client::port_forward_transfer(
                &dialer,
                &url,
                SOURCE_PORT,
                0,
                bytes,
            )
            .await?;
            if !t.error.is_empty() || t.received != bytes {
                bail!(
                    "pull: HTTP {}, {} of {bytes} bytes: {}",
                    t.http_status,
                    t.received,
                    t.error
                );
            }
            pull.push(mib as f64 / t.elapsed.as_secs_f64());
        }
        rt.stop_container(cri::StopContainerRequest {
            container_id: id.clone(),
            timeout: 0,
        })
        .await
        .map_err(status_err("StopContainer"))?;
        rt.remove_container(cri::RemoveContainerRequest { container_id: id })
            .await
            .map_err(status_err("RemoveContainer"))?;
        anyhow::Ok((exec, push, pull))
    }
    .await;
    let removed = remove_pod(&mut rt, pod_id).await;
    let (exec, push, pull) = result?;
    removed?;
    report("exec_stream", exec);
    report_rate("portforward_push", push);
    report_rate("portforward_pull", pull);
    Ok(())
}

/// Times `n` streaming execs of `true`, each from the CRI call to the
/// Success status on the error stream.
async fn stream_execs(rt: &mut Runtime, id: &str, n: usize) -> anyhow::Result<Vec<f64>> {
    let mut times = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let url = rt
            .exec(cri::ExecRequest {
                container_id: id.to_string(),
                cmd: vec!["true".into()],
                tty: false,
                stdin: false,
                stdout: true,
                stderr: true,
            })
            .await
            .map_err(status_err("Exec"))?
            .into_inner()
            .url;
        let out = carapace_e2e::spdy_client::exec(
            &url,
            &["v4.channel.k8s.io"],
            &["error", "stdout", "stderr"],
            b"",
            None,
        )
        .await?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        let status = out.text("error");
        if out.http_status != 101 || !status.contains("Success") {
            bail!(
                "streaming exec: HTTP {}, status {status:?}",
                out.http_status
            );
        }
    }
    Ok(times)
}

/// A PortForward URL for `port` of `pod`.
async fn port_forward_url(rt: &mut Runtime, pod: &str, port: u16) -> anyhow::Result<String> {
    Ok(rt
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: pod.to_string(),
            port: vec![i32::from(port)],
        })
        .await
        .map_err(status_err("PortForward"))?
        .into_inner()
        .url)
}

/// Prints `<name> <median> <worst>` of rates (higher is better).
fn report_rate(name: &str, mut rates: Vec<f64>) {
    rates.sort_by(f64::total_cmp);
    println!(
        "{name} {:.1} {:.1}",
        quantile(&rates, 0.5),
        rates.first().copied().unwrap_or(0.0)
    );
}

/// Stats calls with `c` containers running, five to a pod; then the
/// memory of the daemon's shims.
async fn stats(
    ch: tonic::transport::Channel,
    n: usize,
    image: &str,
    c: usize,
    sock: &std::path::Path,
) -> anyhow::Result<()> {
    let spec = pull(&ch, image).await?;
    let mut rt = RuntimeServiceClient::new(ch);
    let mut pods = Vec::new();
    let result = async {
        for i in 0..c {
            if i % 5 == 0 {
                let pc = pod(i / 5);
                let id = run_pod(&mut rt, &pc).await?;
                pods.push((id, pc));
            }
            let Some((pod_id, pc)) = pods.last().cloned() else {
                bail!("no pod");
            };
            let id = rt
                .create_container(cri::CreateContainerRequest {
                    pod_sandbox_id: pod_id,
                    config: Some(container(&format!("c{i}"), &spec, &["sleep", "3600"])),
                    sandbox_config: Some(pc),
                })
                .await
                .map_err(status_err("CreateContainer"))?
                .into_inner()
                .container_id;
            rt.start_container(cri::StartContainerRequest { container_id: id })
                .await
                .map_err(status_err("StartContainer"))?;
        }
        let all_containers = cri::ListContainerStatsRequest { filter: None };
        // The first call may fill caches: untimed.
        rt.list_container_stats(all_containers.clone())
            .await
            .map_err(status_err("ListContainerStats"))?;
        let mut containers = Vec::new();
        for _ in 0..n {
            let t = Instant::now();
            let got = rt
                .list_container_stats(all_containers.clone())
                .await
                .map_err(status_err("ListContainerStats"))?
                .into_inner()
                .stats
                .len();
            containers.push(t.elapsed().as_secs_f64() * 1e3);
            if got != c {
                bail!("ListContainerStats gave {got} containers, not {c}");
            }
        }
        anyhow::Ok((containers, shim_memory(sock)?))
    }
    .await;
    // Removing a pod removes its containers.
    let mut teardown = Ok(());
    for (id, _) in pods {
        // The first failure is the one reported; every pod is tried.
        let removed = remove_pod(&mut rt, id).await.map(drop);
        if teardown.is_ok() {
            teardown = removed;
        }
    }
    let (containers, (count, pss, rss)) = result?;
    teardown?;
    report("list_container_stats", containers);
    println!("shims {count} {pss} {rss}");
    Ok(())
}

/// The shims serving the daemon on `sock` (processes whose name has
/// "shim" in it and whose `-address` is `sock`): (count, total Pss KiB,
/// total VmRSS KiB).
fn shim_memory(sock: &std::path::Path) -> anyhow::Result<(usize, u64, u64)> {
    Ok(total_memory(&shim_pids(sock)?))
}

/// Pss and VmRSS (KiB) of a process; None once it is gone.
fn memory(pid: u32) -> Option<(u64, u64)> {
    let kib = |file: &str, key: &str| -> Option<u64> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
        let line = text.lines().find(|l| l.starts_with(key))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    Some((kib("smaps_rollup", "Pss:")?, kib("status", "VmRSS:")?))
}

/// The memory of `pids` still running: (count, total Pss, total VmRSS).
fn total_memory(pids: &[u32]) -> (usize, u64, u64) {
    pids.iter()
        .filter_map(|p| memory(*p))
        .fold((0, 0, 0), |(n, p, r), (pp, rr)| (n + 1, p + pp, r + rr))
}

/// The PIDs of the shims serving the daemon on `sock` (processes whose
/// name has "shim" in it and whose `-address` is `sock`).
fn shim_pids(sock: &std::path::Path) -> anyhow::Result<Vec<u32>> {
    let want = sock.as_os_str().as_encoded_bytes();
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").context("read /proc")? {
        let dir = e.context("read /proc")?.path();
        let Some(pid) = dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // Processes come and go: one that is gone is skipped.
        let Ok(cmdline) = std::fs::read(dir.join("cmdline")) else {
            continue;
        };
        let argv: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let named_shim = argv
            .first()
            .and_then(|a| a.rsplit(|&b| b == b'/').next())
            .is_some_and(|name| name.windows(4).any(|w| w == b"shim"));
        let serves_sock = argv.windows(2).any(|w| w[0] == b"-address" && w[1] == want);
        if named_shim && serves_sock {
            pids.push(pid);
        }
    }
    Ok(pids)
}
