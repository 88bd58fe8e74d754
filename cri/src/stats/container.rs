//! The stats of one container: its attributes, CPU and memory (and swap)
//! from its cgroup, and its writable layer.
//!
//! As under containerd, only a container with a live task — Created or
//! Running — has cgroup stats; an exited one reports its attributes and
//! writable layer only, and so does one whose cgroup is already gone.

use std::time::Instant;

use k8s_cri::v1 as cri;

use crate::clock::now_ns;
use crate::container::{ContainerRecord, Containers, Phase};

use super::{cgroup, Sampler, Subject};

/// What a container's stats are built from besides its record.
pub struct Context<'a> {
    /// The sampler of the daemon (CPU rates, layer cache).
    pub sampler: &'a Sampler,
    /// The image filesystem's identifier, the same ImageFsInfo reports,
    /// so kubelet charges writable layers to that filesystem.
    pub fs_mountpoint: String,
    /// The node's cgroup hierarchies, resolved once for the call.
    pub host: cgroup::Host,
}

impl<'a> Context<'a> {
    /// The context of the daemon's containers.
    pub fn new(cs: &Containers, sampler: &'a Sampler) -> Self {
        Context {
            sampler,
            fs_mountpoint: cs.images.dir().to_string_lossy().into_owned(),
            host: cgroup::Host::resolve(),
        }
    }
}

/// The CRI attributes of a container.
pub fn attributes(rec: &ContainerRecord) -> cri::ContainerAttributes {
    cri::ContainerAttributes {
        id: rec.id.clone(),
        metadata: rec.config.metadata.clone(),
        labels: rec.config.labels.clone(),
        annotations: rec.config.annotations.clone(),
    }
}

/// The stats of container `rec` now, with what could be read (every part
/// that could not is logged and left out).
pub fn stats(ctx: &Context<'_>, rec: &ContainerRecord) -> cri::ContainerStats {
    let mut out = cri::ContainerStats {
        attributes: Some(attributes(rec)),
        writable_layer: writable_layer(ctx, rec),
        ..Default::default()
    };
    if !matches!(rec.phase, Phase::Created | Phase::Running) {
        return out;
    }
    let read = cgroup::read(&ctx.host, &rec.cgroups_path, &rec.id);
    let at = Instant::now();
    let timestamp = now_ns();
    match read {
        Ok(Some(s)) => {
            let rate = s.cpu.usage_ns.and_then(|u| {
                ctx.sampler
                    .cpu
                    .nano_cores(Subject::Container, &rec.id, u, at)
            });
            out.cpu = cgroup::cpu_usage(&s.cpu, timestamp, rate);
            out.memory = cgroup::memory_usage(&s.memory, timestamp);
            out.swap = cgroup::swap_usage(&s.memory, timestamp);
        }
        Ok(None) => tracing::debug!(container = %rec.id, "no cgroup: no CPU or memory stats"),
        Err(e) => tracing::warn!(container = %rec.id, error = %e, "container cgroup stats"),
    }
    out
}

fn writable_layer(ctx: &Context<'_>, rec: &ContainerRecord) -> Option<cri::FilesystemUsage> {
    let upper = rec.data.join("upper");
    match ctx.sampler.layers.usage(&rec.id, &upper) {
        Ok(u) => Some(cri::FilesystemUsage {
            timestamp: u.at_ns,
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: ctx.fs_mountpoint.clone(),
            }),
            used_bytes: Some(cri::UInt64Value { value: u.bytes }),
            inodes_used: Some(cri::UInt64Value { value: u.inodes }),
        }),
        Err(e) => {
            tracing::warn!(container = %rec.id, error = %e, "writable layer usage");
            None
        }
    }
}
