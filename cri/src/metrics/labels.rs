//! The labels every metric starts with, and their values for a container
//! or a pod.
//!
//! Kubelet turns each descriptor's label keys into Prometheus labels as
//! they are and adds none of its own, so the runtime must send the
//! Kubernetes identity itself. The set is CRI-O's (internal/lib/
//! statsserver/metrics.go, since it dropped cAdvisor's `name` alias as
//! containerd did): `id`, `image`, `namespace`, `pod`, `container` — the
//! labels queries against /metrics/cadvisor select on. Pod-level samples
//! (network) carry the pod ID, no image and cAdvisor's container name
//! `POD` for the infra.

use crate::container::ContainerRecord;
use crate::sandbox::SandboxRecord;

/// The label keys every metric starts with, in this order.
pub const BASE_LABEL_KEYS: [&str; 5] = ["id", "image", "namespace", "pod", "container"];

/// The `container` label of pod-level samples, as cAdvisor names the
/// infra container.
pub const POD_CONTAINER_NAME: &str = "POD";

/// Values for [`BASE_LABEL_KEYS`], in the same order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseLabels([String; 5]);

impl BaseLabels {
    /// The labels of pod-level samples of pod `id` (`name` in
    /// `namespace`).
    pub fn pod(id: &str, namespace: &str, name: &str) -> Self {
        BaseLabels([
            id.to_string(),
            String::new(),
            namespace.to_string(),
            name.to_string(),
            POD_CONTAINER_NAME.to_string(),
        ])
    }

    /// The labels of pod `rec`'s own samples.
    pub fn of_pod(rec: &SandboxRecord) -> Self {
        let m = rec.config.metadata.clone().unwrap_or_default();
        Self::pod(&rec.id, &m.namespace, &m.name)
    }

    /// The labels of container `c`'s samples in pod `pod`: the image as
    /// the request named it, the container name from its metadata.
    pub fn of_container(c: &ContainerRecord, pod: &SandboxRecord) -> Self {
        let p = pod.config.metadata.clone().unwrap_or_default();
        let name = c
            .config
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        BaseLabels([
            c.id.clone(),
            c.image_name.clone(),
            p.namespace,
            p.name,
            name,
        ])
    }

    /// The values, in [`BASE_LABEL_KEYS`] order.
    pub fn values(&self) -> &[String; 5] {
        &self.0
    }
}
