//! RemoveContainer, and the teardown every failure path shares: end the
//! process and its shim, unmount the root filesystem, delete the bundle,
//! the writable layer and the record — each step idempotent.

use std::sync::Arc;

use crate::image::rootfs;
use crate::shim_client::{self, Launch, Shim};
use crate::store::Kind;

use super::registry::Containers;
use super::{ContainerError, ContainerRecord, Phase};

/// Removes the container `id`, stopping it first if it runs. Removing an
/// unknown container succeeds (kubelet retries removals).
pub async fn remove(cs: &Arc<Containers>, id: &str) -> Result<(), ContainerError> {
    let c = match cs.get(id) {
        Ok(c) => c,
        Err(ContainerError::NotFound(_)) if !id.is_empty() => return Ok(()),
        Err(e) => return Err(e),
    };
    if matches!(c.record().phase, Phase::Running | Phase::Created) {
        super::stop::stop(cs, id, 0).await?;
    }
    let _op = c.op.lock().await;
    let mut rec = c.record();
    rec.phase = Phase::Removing;
    cs.save(&c, rec.clone())?;
    teardown(cs, &rec).await?;
    cs.forget(&rec.id);
    Ok(())
}

/// Undoes everything of `rec`, then deletes its record.
pub async fn teardown(cs: &Containers, rec: &ContainerRecord) -> Result<(), ContainerError> {
    let paths = &cs.sandboxes.paths;
    let address = if rec.shim_address.is_empty() {
        std::fs::read_to_string(rec.bundle.join("address"))
            .ok()
            .map(|a| a.trim().to_string())
    } else {
        Some(rec.shim_address.clone())
    };
    let mut shim_pid = None;
    if let Some(address) = address.filter(|a| !a.is_empty()) {
        match Shim::connect(&address).await {
            Ok(shim) => {
                shim_pid = shim.pid(&rec.id).await.ok();
                let _ = shim.kill(&rec.id, "", 9, true).await;
                let _ = shim.wait(&rec.id, "").await;
                match shim.delete(&rec.id, "").await {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                }
                shim.shutdown(&rec.id).await?;
            }
            Err(e) if e.is_gone() => {
                if rec.bundle.join("config.json").exists() {
                    shim_client::cleanup(&Launch {
                        binary: &paths.shim,
                        id: &rec.id,
                        bundle: &rec.bundle,
                        daemon_address: &cs.sandboxes.daemon.config.socket,
                        events_address: &paths.events_address,
                        socket_dir: &paths.shim_sockets,
                    })
                    .await?;
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    // Whatever a shim caught mid-create may still have made.
    if let Some(pid) = shim_pid.filter(|p| *p > 0) {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(rec.id.as_str()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    if !rec.cgroups_path.is_empty() {
        if let Ok(m) = carapace_cgroups::Manager::new(Some(&rec.cgroups_path), &rec.id, false) {
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
    }
    let _ = tokio::process::Command::new(&rec.runtime_binary)
        .arg("--root")
        .arg(&rec.runtime_root)
        .args(["delete", "--force", &rec.id])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await;
    rootfs::unmount(&rec.rootfs())?;
    for dir in [&rec.bundle, &rec.data] {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ContainerError::io("remove", dir, e)),
        }
    }
    cs.store.delete(Kind::Container, &rec.id)?;
    Ok(())
}
