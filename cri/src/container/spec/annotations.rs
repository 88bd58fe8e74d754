//! The spec's annotations: the container's CRI annotations (as CRI-O
//! passes them; containerd passes only configured ones) and the keys
//! containerd's CRI plugin writes (pkg/cri/annotations), which OCI hooks,
//! NRI plugins and tools such as gVisor and Kata read to tell containers
//! from sandboxes.

use std::collections::HashMap;

use k8s_cri::v1 as cri;

pub use crate::cri_annotations::{
    CONTAINER_NAME, CONTAINER_TYPE, CONTAINER_TYPE_CONTAINER, IMAGE_NAME, SANDBOX_ID,
};

/// Prefixes of annotation keys a request may not set: ours (set below),
/// and ones OCI runtimes act on — crun's `run.oci.*` (e.g. writing hook
/// output to any host file), runc's `org.criu.*` — which CRI-O also only
/// lets through per runtime handler.
const RESERVED_PREFIXES: [&str; 3] = ["io.kubernetes.cri.", "run.oci.", "org.criu."];

/// The annotations of a container's spec.
pub fn annotations(
    config: &cri::ContainerConfig,
    sandbox_id: &str,
    image_name: &str,
) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = config
        .annotations
        .iter()
        .filter(|(k, _)| !RESERVED_PREFIXES.iter().any(|p| k.starts_with(p)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let name = config
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    for (k, v) in [
        (CONTAINER_TYPE, CONTAINER_TYPE_CONTAINER.to_string()),
        (SANDBOX_ID, sandbox_id.to_string()),
        (CONTAINER_NAME, name),
        (IMAGE_NAME, image_name.to_string()),
    ] {
        out.insert(k.to_string(), v);
    }
    out
}
