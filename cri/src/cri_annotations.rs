//! The OCI spec annotation keys containerd's CRI plugin writes
//! (pkg/cri/annotations) on sandbox and container specs. Shim v2 runtimes
//! group a pod's tasks into one shim by them (containerd's runc shim,
//! Kata, gVisor), and OCI hooks, NRI plugins and tools read them to tell
//! containers from sandboxes.

/// What kind of CRI object the spec is for.
pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
/// [`CONTAINER_TYPE`] of a pod's sandbox (its infra process).
pub const CONTAINER_TYPE_SANDBOX: &str = "sandbox";
/// [`CONTAINER_TYPE`] of an application container.
pub const CONTAINER_TYPE_CONTAINER: &str = "container";
/// The pod sandbox the task belongs to.
pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
/// The pod's name (sandbox specs).
pub const SANDBOX_NAME: &str = "io.kubernetes.cri.sandbox-name";
/// The pod's namespace (sandbox specs).
pub const SANDBOX_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
/// The pod's UID (sandbox specs).
pub const SANDBOX_UID: &str = "io.kubernetes.cri.sandbox-uid";
/// The pod's log directory (sandbox specs).
pub const SANDBOX_LOG_DIR: &str = "io.kubernetes.cri.sandbox-log-directory";
/// The container's name in its pod (its CRI metadata name).
pub const CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
/// The image the container was created from, as the request named it.
pub const IMAGE_NAME: &str = "io.kubernetes.cri.image-name";
