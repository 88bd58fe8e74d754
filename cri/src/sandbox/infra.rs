//! The pod's infra process under its own shim: starting it, stopping it,
//! and watching it, so a pod whose infra dies turns NotReady (as a pod
//! whose pause container dies does under containerd).

use std::sync::Arc;

use crate::shim_client::{self, Launch, RuntimeOptions, Shim, ShimError};

use super::registry::{Sandbox, Sandboxes};
use super::spec::InfraSpec;
use super::{Phase, SandboxError, SandboxRecord};

/// SIGKILL: the infra holds nothing worth a graceful stop.
const SIGKILL: u32 = 9;

/// How the daemon starts the shim of `rec`'s infra.
fn launch<'a>(s: &'a Sandboxes, rec: &'a SandboxRecord, bundle: &'a std::path::Path) -> Launch<'a> {
    Launch {
        binary: &s.paths.shim,
        id: &rec.id,
        bundle,
        daemon_address: &s.daemon.config.socket,
        events_address: &s.paths.events_address,
        socket_dir: &s.paths.shim_sockets,
    }
}

/// Writes the infra bundle, starts its shim (recording the address before
/// anything runs under it) and the infra process.
pub async fn start(
    s: &Sandboxes,
    sb: &Sandbox,
    rec: &mut SandboxRecord,
    spec: &InfraSpec,
) -> Result<(), SandboxError> {
    let bundle = rec.bundle();
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(&rootfs).map_err(|e| SandboxError::io("create", &rootfs, e))?;
    let config = bundle.join("config.json");
    let spec = spec
        .build()
        .map_err(|e| SandboxError::InvalidArgument(format!("infra spec: {e}")))?;
    let text = serde_json::to_vec(&spec)
        .map_err(|e| SandboxError::InvalidArgument(format!("infra spec: {e}")))?;
    std::fs::write(&config, text).map_err(|e| SandboxError::io("write", &config, e))?;

    let address = shim_client::launch(&launch(s, rec, &bundle)).await?;
    rec.shim_address = address.clone();
    s.save(sb, rec.clone())?;
    let shim = Shim::connect(&address).await?;
    let runtime = RuntimeOptions {
        binary: rec.runtime_binary.clone(),
        root: rec.runtime_root.clone(),
    };
    shim.create(&rec.id, &bundle, &Default::default(), &runtime)
        .await?;
    rec.infra_pid = shim.start(&rec.id, "").await?;
    Ok(())
}

/// The shim address of `rec`: recorded, or written by the shim into the
/// bundle before the daemon could record it (a crash in between).
pub fn address(rec: &SandboxRecord) -> Option<String> {
    if !rec.shim_address.is_empty() {
        return Some(rec.shim_address.clone());
    }
    std::fs::read_to_string(rec.bundle().join("address"))
        .ok()
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
}

/// Stops and deletes the infra and ends its shim. Idempotent: a shim that
/// is gone is cleaned up with `carapace-shim delete` (which force-deletes
/// the runtime's container); no shim at all is fine.
pub async fn stop(s: &Sandboxes, rec: &mut SandboxRecord) -> Result<Option<u32>, SandboxError> {
    let Some(address) = address(rec) else {
        return Ok(None);
    };
    let bundle = rec.bundle();
    let mut shim_pid = None;
    match Shim::connect(&address).await {
        Ok(shim) => {
            shim_pid = shim.pid(&rec.id).await.ok();
            match shim.kill(&rec.id, "", SIGKILL, true).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() || is_not_running(&e) => {}
                Err(e) => return Err(e.into()),
            }
            match shim.wait(&rec.id, "").await {
                Ok(exit) => rec.exit = rec.exit.or(Some(exit)),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
            match shim.delete(&rec.id, "").await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
            shim.shutdown(&rec.id).await?;
        }
        Err(e) if e.is_gone() => {
            if bundle.join("config.json").exists() {
                shim_client::cleanup(&launch(s, rec, &bundle)).await?;
            }
        }
        Err(e) => return Err(e.into()),
    }
    Ok(shim_pid)
}

/// Makes sure nothing of `rec`'s infra survives, whatever state its shim
/// was left in — a daemon killed while the shim was still creating the
/// infra leaves a shim that answers NotFound now and creates the process a
/// moment later. After the graceful [`stop`]: the shim is killed if it
/// still runs, every process left in the infra's cgroup is killed until
/// none is left, and the runtime's record of the container is deleted.
/// Used by teardown (removal, rollback, recovery), not by StopPodSandbox.
pub async fn reap(rec: &SandboxRecord, shim_pid: Option<u32>) {
    if let Some(pid) = shim_pid.filter(|p| *p > 0) {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(rec.id.as_str()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    if let Ok(m) = carapace_cgroups::Manager::new(Some(&rec.infra_cgroup), &rec.id, false) {
        for _ in 0..500 {
            match m.pids() {
                Ok(p) if !p.is_empty() => {
                    let _ = m.kill_all(nix::sys::signal::Signal::SIGKILL as i32);
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                _ => break,
            }
        }
    }
    let _ = tokio::process::Command::new(&rec.runtime_binary)
        .arg("--root")
        .arg(&rec.runtime_root)
        .args(["delete", "--force", &rec.id])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await;
}

/// Whether the shim refused a kill because the process already exited.
fn is_not_running(e: &ShimError) -> bool {
    matches!(e, ShimError::Call { message, .. } if message.contains("not running") || message.contains("stopped") || message.contains("exited"))
}

/// Watches the infra: when it exits (or its shim disappears), a Ready pod
/// turns NotReady with the exit recorded.
pub fn watch(s: Arc<Sandboxes>, sb: Arc<Sandbox>) {
    tokio::spawn(async move {
        let rec = sb.record();
        let exit = match Shim::connect(&rec.shim_address).await {
            Ok(shim) => shim.wait(&rec.id, "").await.ok(),
            Err(_) => None,
        };
        // Stop may be under way (it kills the infra): let it finish first.
        let _op = sb.op.lock().await;
        let mut rec = sb.record();
        if rec.phase != Phase::Ready {
            return;
        }
        rec.phase = Phase::NotReady;
        rec.exit = exit.or(rec.exit);
        tracing::info!(pod = %rec.id, ?exit, "infra process exited: pod is NotReady");
        if let Err(e) = s.save(&sb, rec) {
            tracing::error!(error = %e, "record infra exit");
        }
    });
}
