//! `ContainerStatus` and `ListContainers`: what kubelet's PLEG reads.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_cri::v1 as cri;
use tonic::Status;

use crate::container::{ContainerRecord, Containers, Phase};

/// The CRI state of a container phase.
pub fn state(p: Phase) -> cri::ContainerState {
    match p {
        Phase::Creating | Phase::Created => cri::ContainerState::ContainerCreated,
        Phase::Running => cri::ContainerState::ContainerRunning,
        // A container being removed was stopped first (or never ran); a
        // removal that failed or that a crash interrupted leaves it here
        // until RemoveContainer is retried: kubelet sees it exited, as
        // containerd reports it, never Unknown for good.
        Phase::Exited | Phase::Removing => cri::ContainerState::ContainerExited,
    }
}

/// The exit of a record as reported: a removal that began before any exit
/// was recorded reports an unknown exit (255), as containerd does.
fn exit_of(rec: &ContainerRecord) -> (i64, i32, String, String) {
    if rec.phase == Phase::Removing && rec.finished_at == 0 {
        return (
            rec.created_at,
            255,
            "Unknown".into(),
            "exit status unknown: the container is being removed".into(),
        );
    }
    (
        rec.finished_at,
        rec.exit_code,
        rec.reason.clone(),
        rec.message.clone(),
    )
}

/// The status of a record.
pub fn status(rec: &ContainerRecord) -> cri::ContainerStatus {
    let (finished_at, exit_code, reason, message) = exit_of(rec);
    cri::ContainerStatus {
        id: rec.id.clone(),
        metadata: rec.config.metadata.clone(),
        state: state(rec.phase) as i32,
        created_at: rec.created_at,
        started_at: rec.started_at,
        finished_at,
        exit_code,
        image: rec.config.image.clone(),
        image_ref: rec.image_id.clone(),
        reason,
        message,
        labels: rec.config.labels.clone(),
        annotations: rec.config.annotations.clone(),
        mounts: rec.config.mounts.clone(),
        log_path: rec.log_path.to_string_lossy().into_owned(),
        resources: rec
            .config
            .linux
            .as_ref()
            .and_then(|l| l.resources.clone())
            .map(|r| cri::ContainerResources {
                linux: Some(r),
                ..Default::default()
            }),
        image_id: rec.image_id.clone(),
        user: Some(cri::ContainerUser {
            linux: Some(cri::LinuxContainerUser {
                uid: i64::from(rec.uid),
                gid: i64::from(rec.gid),
                supplemental_groups: rec.additional_gids.iter().map(|g| i64::from(*g)).collect(),
            }),
        }),
        stop_signal: reported_stop_signal(&rec.stop_signal) as i32,
    }
}

/// The stop signal as CRI names it (`SIGQUIT`, also written `QUIT` or
/// `3` in an image config); RUNTIME_DEFAULT for one CRI has no name for.
fn reported_stop_signal(sig: &str) -> cri::Signal {
    let sig = sig.trim();
    let name = match crate::container::stop::signal_number(sig) {
        Some(n) => nix::sys::signal::Signal::try_from(n as i32)
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        None => sig.to_string(),
    };
    cri::Signal::from_str_name(&name).unwrap_or(cri::Signal::RuntimeDefault)
}

/// The statuses of pod `sandbox_id`'s containers (those kubelet has seen:
/// not the ones still being created), oldest first.
pub fn of_pod(cs: &Containers, sandbox_id: &str) -> Vec<cri::ContainerStatus> {
    let mut recs: Vec<ContainerRecord> = cs
        .of_pod(sandbox_id)
        .iter()
        .map(|c| c.record())
        .filter(|r| r.phase != Phase::Creating)
        .collect();
    recs.sort_by_key(|r| r.created_at);
    recs.iter().map(status).collect()
}

/// Answers ContainerStatus.
pub fn handle_status(
    cs: &Arc<Containers>,
    req: cri::ContainerStatusRequest,
) -> Result<cri::ContainerStatusResponse, Status> {
    let rec = cs.get(&req.container_id)?.record();
    let mut info = HashMap::new();
    if req.verbose {
        let doc = serde_json::json!({
            "sandboxID": rec.sandbox_id,
            "pid": rec.pid,
            "phase": format!("{:?}", rec.phase),
            "bundle": rec.bundle,
            "rootfs": rec.rootfs(),
            "cgroupsPath": rec.cgroups_path,
            "shimAddress": rec.shim_address,
            "runtimeBinary": rec.runtime_binary,
            "oomKilled": rec.oom_killed,
            "config": rec.config,
        });
        info.insert("info".to_string(), doc.to_string());
    }
    Ok(cri::ContainerStatusResponse {
        status: Some(status(&rec)),
        info,
    })
}

/// Whether `rec` passes `f`.
fn matches(rec: &ContainerRecord, f: &cri::ContainerFilter) -> bool {
    if !f.id.is_empty() && !rec.id.starts_with(&f.id) {
        return false;
    }
    if !f.pod_sandbox_id.is_empty() && !rec.sandbox_id.starts_with(&f.pod_sandbox_id) {
        return false;
    }
    if let Some(s) = &f.state {
        if state(rec.phase) as i32 != s.state {
            return false;
        }
    }
    f.label_selector
        .iter()
        .all(|(k, v)| rec.config.labels.get(k) == Some(v))
}

/// Answers ListContainers (containers being created are not listed yet).
pub fn handle_list(
    cs: &Arc<Containers>,
    req: cri::ListContainersRequest,
) -> Result<cri::ListContainersResponse, Status> {
    let f = req.filter.unwrap_or_default();
    let mut containers: Vec<cri::Container> = cs
        .all()
        .iter()
        .filter_map(|c| {
            c.with_record(|r| {
                (r.phase != Phase::Creating && matches(r, &f)).then(|| cri::Container {
                    id: r.id.clone(),
                    pod_sandbox_id: r.sandbox_id.clone(),
                    metadata: r.config.metadata.clone(),
                    image: r.config.image.clone(),
                    image_ref: r.image_id.clone(),
                    state: state(r.phase) as i32,
                    created_at: r.created_at,
                    labels: r.config.labels.clone(),
                    annotations: r.config.annotations.clone(),
                    image_id: r.image_id.clone(),
                })
            })
        })
        .collect();
    containers.sort_by_key(|c| c.created_at);
    Ok(cri::ListContainersResponse { containers })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_stuck_in_removal_is_exited_not_unknown() {
        let mut r = ContainerRecord::for_test("c", Phase::Removing);
        let s = status(&r);
        assert_eq!(s.state, cri::ContainerState::ContainerExited as i32);
        assert_eq!((s.exit_code, s.reason.as_str()), (255, "Unknown"));
        r.finished_at = 7;
        r.exit_code = 137;
        r.reason = "Error".into();
        let s = status(&r);
        assert_eq!(
            (s.finished_at, s.exit_code, s.reason.as_str()),
            (7, 137, "Error")
        );
    }
}
