//! StopPodSandbox: stop the pod's containers, its infra, take it off the
//! network and release its namespaces and shm. Idempotent, and safe on a
//! pod that was only half created.

use std::sync::Arc;

use crate::network::{self, PodNetwork};

use super::registry::{Sandbox, Sandboxes};
use super::{infra, Phase, SandboxError, SandboxRecord};

/// Stops the pod `id`.
pub async fn stop(s: &Arc<Sandboxes>, id: &str) -> Result<(), SandboxError> {
    let sb = s.get(id)?;
    let _op = sb.op.lock().await;
    let mut rec = sb.record();
    stop_locked(s, &sb, &mut rec).await
}

/// Stop with the pod's operation lock held.
pub async fn stop_locked(
    s: &Sandboxes,
    sb: &Sandbox,
    rec: &mut SandboxRecord,
) -> Result<(), SandboxError> {
    // Containers are stopped here once they exist (the container service).
    // Then the infra and the network go at once: neither needs the other.
    let mut infra_rec = rec.clone();
    let snapshot = rec.clone();
    let network = async {
        if snapshot.network_attached {
            network_down(s, &snapshot).await
        } else {
            Ok(())
        }
    };
    let (infra_r, net_r) = tokio::join!(infra::stop(s, &mut infra_rec), network);
    let infra_r = infra_r.map(|_| ());
    let (infra_done, net_done) = (infra_r.is_ok(), net_r.is_ok());
    *rec = s
        .update(sb, |r| {
            if infra_done {
                r.shim_address.clear();
                r.exit = infra_rec.exit;
                if r.phase == Phase::Ready {
                    r.phase = Phase::NotReady;
                }
            }
            if net_done {
                r.network_attached = false;
            }
        })?
        .0;
    infra_r?;
    net_r?;
    release(s, rec).await
}

/// Unmounts the pod's shm and unpins its namespaces once its infra is
/// stopped and its network torn down, as containerd and CRI-O do at
/// StopPodSandbox: nothing joins a pod that is not Ready (its containers
/// are stopped first and no container is created in it), and kubelet may
/// call RemovePodSandbox long after (a finished Job's pod stays until the
/// Job is deleted), while each network namespace holds kernel memory
/// until its last pin goes. The teardown runs it again, idempotently, for
/// a pod stopped by an older daemon or whose release here failed, and for
/// a pod that never got as far as Ready.
pub(super) async fn release(s: &Sandboxes, rec: &SandboxRecord) -> Result<(), SandboxError> {
    let node = &s.effects.node;
    node.unmount_shm(&rec.dir.join("shm")).await?;
    node.unpin_namespaces(&rec.dir.join("ns")).await
}

/// What the CNI plugins are told about `rec`'s pod.
pub fn pod_network(s: &Sandboxes, rec: &SandboxRecord) -> PodNetwork {
    let m = rec.config.metadata.clone().unwrap_or_default();
    PodNetwork {
        id: rec.id.clone(),
        netns: rec.netns.clone().unwrap_or_default(),
        ifname: "eth0".into(),
        pod_name: m.name,
        pod_namespace: m.namespace,
        pod_uid: m.uid,
        port_mappings: rec
            .config
            .port_mappings
            .iter()
            .map(|p| network::PortMapping {
                host_port: p.host_port,
                container_port: p.container_port,
                protocol: match p.protocol {
                    1 => "udp".into(),
                    2 => "sctp".into(),
                    _ => "tcp".into(),
                },
                host_ip: p.host_ip.clone(),
            })
            .collect(),
        pod_cidr: s.daemon.pod_cidr(),
    }
}

/// CNI DEL for the pod, with the ADD result when there is one.
pub async fn network_down(s: &Sandboxes, rec: &SandboxRecord) -> Result<(), SandboxError> {
    let conf = network::find_conf(&s.daemon.config.cni.conf_dir)?;
    s.effects
        .node
        .network_del(
            &conf,
            &s.daemon.config.cni.bin_dirs,
            &pod_network(s, rec),
            rec.cni_result.as_ref(),
        )
        .await?;
    Ok(())
}
