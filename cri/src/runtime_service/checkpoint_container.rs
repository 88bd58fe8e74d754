//! `CheckpointContainer` (KEP 2008, kubelet's `/checkpoint` API): the
//! container is checked (it must exist and run), then the node: without a
//! CRIU that passes `criu check` the call is FailedPrecondition naming why.
//! Then its shim has the runtime dump it with CRIU (it runs on), and the
//! archive is written at the requested location in CRI-O's layout
//! ([`crate::checkpoint::archive`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_cri::v1 as cri;
use tonic::Status;

use crate::checkpoint::{self, archive, rootfs_diff, Criu};
use crate::container::{ContainerError, ContainerRecord, Containers};
use crate::shim_client::Shim;

/// How long a dump may take when the request sets no timeout: CRIU
/// writes the container's whole memory out.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// See the module doc.
pub async fn handle(
    cs: &Arc<Containers>,
    req: cri::CheckpointContainerRequest,
) -> Result<cri::CheckpointContainerResponse, Status> {
    tracing::info!(container = %req.container_id, location = %req.location, "CheckpointContainer");
    if req.container_id.is_empty() {
        return Err(Status::invalid_argument(
            "CheckpointContainer without a container ID",
        ));
    }
    let c = cs.get(&req.container_id)?;
    // No stop, remove or second checkpoint of this container meanwhile.
    let _op = c.op.lock().await;
    let rec = c.record();
    rec.ensure_running()?;
    let location = PathBuf::from(&req.location);
    if !location.is_absolute() {
        return Err(Status::invalid_argument(format!(
            "checkpoint location {:?} is not an absolute path",
            req.location
        )));
    }
    match location.parent() {
        Some(p) if p.is_dir() => {}
        _ => {
            return Err(Status::invalid_argument(format!(
                "the directory of checkpoint location {} does not exist",
                location.display()
            )))
        }
    }
    let criu = tokio::task::spawn_blocking(checkpoint::criu)
        .await
        .map_err(|e| Status::internal(format!("probe CRIU: {e}")))?;
    if let Criu::Unusable(why) = criu {
        return Err(Status::failed_precondition(format!(
            "cannot checkpoint container {} on this node: {why}",
            rec.id
        )));
    }
    refuse_unsupported(cs, &rec)?;
    let staging = rec.data.join("checkpoint");
    let s = staging.clone();
    tokio::task::spawn_blocking(move || {
        match std::fs::remove_dir_all(&s) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        crate::private::dir(&s, crate::private::DIR_MODE)
    })
    .await
    .map_err(|e| Status::internal(format!("staging: {e}")))?
    .map_err(|e| ContainerError::io("create", &staging, e))?;
    let limit = if req.timeout > 0 {
        Duration::from_secs(u64::try_from(req.timeout).unwrap_or(1))
    } else {
        DEFAULT_TIMEOUT
    };
    let dumped = async {
        let shim = Shim::connect(&rec.shim_address)
            .await
            .map_err(|e| ContainerError::from_shim(&rec.id, e))?;
        shim.checkpoint(&rec.id, &staging.join(archive::IMAGES_DIR), limit)
            .await
            .map_err(|e| ContainerError::from_shim(&rec.id, e))
    }
    .await;
    let written = match dumped {
        Ok(()) => {
            let (rec, staging, location) = (rec.clone(), staging.clone(), location.clone());
            tokio::task::spawn_blocking(move || write_archive(&rec, &staging, &location))
                .await
                .map_err(|e| Status::internal(format!("write checkpoint: {e}")))
                .and_then(|r| r)
        }
        Err(e) => Err(e.into()),
    };
    let s = staging.clone();
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(s)).await;
    written?;
    tracing::info!(container = %rec.id, location = %location.display(), "container checkpointed");
    Ok(cri::CheckpointContainerResponse {})
}

/// What CRIU (as the runtime drives it) cannot checkpoint, refused before
/// the dump with the reason.
fn refuse_unsupported(cs: &Containers, rec: &ContainerRecord) -> Result<(), Status> {
    if rec.shim.is_v2() {
        // The archive's layout (CRIU images, stdio descriptors) is the one
        // carapace-shim and carapace-runtime write.
        return Err(Status::failed_precondition(format!(
            "container {} runs under a shim v2 handler: checkpointing it needs carapace-shim",
            rec.id
        )));
    }
    if rec.config.tty {
        return Err(Status::failed_precondition(format!(
            "container {} has a terminal: checkpointing it is not supported",
            rec.id
        )));
    }
    let pod = cs.sandboxes.get(&rec.sandbox_id).map(|p| p.record());
    if let Ok(pod) = pod {
        if crate::container::userns::pod_userns(&pod).is_some() {
            return Err(Status::failed_precondition(format!(
                "container {} runs in a user namespace: checkpointing it is not supported",
                rec.id
            )));
        }
    }
    Ok(())
}

/// config.dump, spec.dump, the rootfs changes, then the archive.
fn write_archive(rec: &ContainerRecord, staging: &Path, location: &Path) -> Result<(), Status> {
    let internal = |what: &str, e: &dyn std::fmt::Display| Status::internal(format!("{what}: {e}"));
    let config = archive::ConfigDump {
        id: rec.id.clone(),
        name: rec
            .config
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default(),
        rootfs_image: rec.image_name.clone(),
        rootfs_image_ref: rec.image_id.clone(),
        rootfs_image_name: rec.image_name.clone(),
        oci_runtime: rec.runtime_binary.display().to_string(),
        created_time: archive::at_ns(rec.created_at),
        checkpointed_at: archive::now(),
        restored_at: "0001-01-01T00:00:00Z".into(),
        restored: false,
    };
    let json = serde_json::to_vec_pretty(&config).map_err(|e| internal("config.dump", &e))?;
    std::fs::write(staging.join(archive::CONFIG_DUMP), json)
        .map_err(|e| internal("write config.dump", &e))?;
    std::fs::copy(
        rec.bundle.join("config.json"),
        staging.join(archive::SPEC_DUMP),
    )
    .map_err(|e| internal("write spec.dump", &e))?;
    let deleted = rootfs_diff::write(&rec.data.join("upper"), &staging.join(archive::ROOTFS_DIFF))
        .map_err(|e| internal("write rootfs-diff.tar", &e))?;
    if !deleted.is_empty() {
        let json = serde_json::to_vec(&deleted).map_err(|e| internal("deleted.files", &e))?;
        std::fs::write(staging.join(archive::DELETED_FILES), json)
            .map_err(|e| internal("write deleted.files", &e))?;
    }
    archive::write(staging, location).map_err(|e| internal("write checkpoint archive", &e))
}
