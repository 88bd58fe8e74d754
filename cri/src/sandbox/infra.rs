//! The pod's infra process under its own shim: starting it, stopping it,
//! and watching it, so a pod whose infra dies turns NotReady (as a pod
//! whose pause container dies does under containerd).

use std::sync::Arc;

use crate::shim_client::RuntimeOptions;
use crate::task::{Stopped, Task};

use super::registry::{Sandbox, Sandboxes};
use super::spec::InfraSpec;
use super::{Phase, SandboxError, SandboxRecord};

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
    // The runtime makes the mount points in it as the pod's root, who is
    // nobody to a directory of host root's.
    if let Some(own) = &spec.own {
        let (uid, gid) = own.root_ids();
        std::os::unix::fs::chown(&rootfs, Some(uid), Some(gid))
            .map_err(|e| SandboxError::io("chown", &rootfs, e))?;
    }
    let config = bundle.join("config.json");
    let spec = spec
        .build()
        .map_err(|e| SandboxError::InvalidArgument(format!("infra spec: {e}")))?;
    let text = serde_json::to_vec(&spec)
        .map_err(|e| SandboxError::InvalidArgument(format!("infra spec: {e}")))?;
    crate::private::write_file(&config, &text)
        .map_err(|e| SandboxError::io("write", &config, e))?;

    let tasks = &s.effects.tasks;
    let address = tasks.launch(&s.launch(&rec.id, &bundle, &rec.shim)).await?;
    rec.shim_address = address.clone();
    s.update(sb, |r| r.shim_address = address.clone())?;
    let runtime = RuntimeOptions {
        binary: rec.runtime_binary.clone(),
        root: rec.runtime_root.clone(),
        systemd_cgroup: s.systemd_cgroups(),
        restore_from: None,
        runc_options: rec.shim.takes_runc_options(),
    };
    tasks
        .create(&address, &rec.id, &bundle, &Default::default(), &runtime)
        .await?;
    rec.infra_pid = tasks.start(&address, &rec.id).await?;
    Ok(())
}

/// The infra as a task to tear down (`runtime_root`: where its runtime
/// keeps its state, [`crate::shim_client::ShimKind::runtime_state_root`]).
fn task<'a>(
    rec: &'a SandboxRecord,
    bundle: &'a std::path::Path,
    runtime_root: &'a std::path::Path,
) -> Task<'a> {
    Task {
        id: &rec.id,
        bundle,
        shim_address: &rec.shim_address,
        runtime_binary: &rec.runtime_binary,
        runtime_root,
        cgroups_path: &rec.infra_cgroup,
    }
}

/// Stops and deletes the infra and ends its shim ([`Task::stop`]); how,
/// for [`reap`].
pub async fn stop(s: &Sandboxes, rec: &mut SandboxRecord) -> Result<Stopped, SandboxError> {
    let bundle = rec.bundle();
    let root = rec.shim.runtime_state_root(&rec.runtime_root);
    let stopped = s
        .effects
        .tasks
        .stop(
            &task(rec, &bundle, &root),
            &s.launch(&rec.id, &bundle, &rec.shim),
        )
        .await?;
    rec.exit = rec.exit.or(stopped.exit);
    Ok(stopped)
}

/// Makes sure nothing of the infra survives ([`Task::reap`]). Used by
/// teardown (removal, rollback, recovery), not by StopPodSandbox.
pub async fn reap(s: &Sandboxes, rec: &SandboxRecord, stopped: &Stopped) {
    let bundle = rec.bundle();
    let root = rec.shim.runtime_state_root(&rec.runtime_root);
    s.effects
        .tasks
        .reap(&task(rec, &bundle, &root), stopped)
        .await;
}

/// Watches the infra: when it exits (or its shim disappears), a Ready pod
/// turns NotReady with the exit recorded.
pub fn watch(s: Arc<Sandboxes>, sb: Arc<Sandbox>) {
    tokio::spawn(async move {
        let rec = sb.record();
        let exit = s.effects.tasks.wait(&rec.shim_address, &rec.id).await;
        // Stop may be under way (it kills the infra): let it finish first.
        let _op = sb.op.lock().await;
        let recorded = s.update(&sb, |r| {
            if r.phase != Phase::Ready {
                return false;
            }
            r.phase = Phase::NotReady;
            r.exit = exit.or(r.exit);
            true
        });
        match recorded {
            Ok((_, true)) => {
                tracing::info!(pod = %rec.id, ?exit, "infra process exited: pod is NotReady")
            }
            Ok((_, false)) => {}
            Err(e) => tracing::error!(pod = %rec.id, error = %e, "record infra exit"),
        }
    });
}
