//! The pod cgroup: the `cgroup_parent` kubelet names (its
//! `kubepods/<qos>/pod<uid>` layout, or with the systemd driver its
//! `kubepods-<qos>-pod<uid>.slice`, which kubelet itself usually creates)
//! or, when none is given, one of the daemon's own per pod: a directory
//! with the cgroupfs driver, a transient slice unit with the systemd one.
//! Containers and the infra process get cgroups (systemd: scopes) below it.

use carapace_cgroups::Manager;

use super::SandboxError;

/// Where pods without a `cgroup_parent` go.
const DEFAULT_PARENT: &str = "/carapace";

/// The pod cgroup path for a pod config's `cgroup_parent` ("" for none):
/// with the systemd driver a slice, `carapace-pod<id>.slice`, which
/// systemd lays out as /carapace.slice/carapace-pod<id>.slice.
pub fn pod_path(cgroup_parent: &str, id: &str, systemd: bool) -> String {
    match (cgroup_parent.is_empty(), systemd) {
        (true, false) => format!("{DEFAULT_PARENT}/pod-{id}"),
        (true, true) => format!("carapace-pod{id}.slice"),
        (false, _) => cgroup_parent.to_string(),
    }
}

/// The `linux.cgroupsPath` of a process `id` in the pod cgroup: a plain
/// path with the cgroupfs driver, the `slice:prefix:name` form with the
/// systemd driver.
pub fn child_path(pod: &str, id: &str, systemd: bool) -> String {
    if systemd {
        format!("{pod}:carapace:{id}")
    } else {
        format!("{}/{id}", pod.trim_end_matches('/'))
    }
}

/// Where a pod cgroup (`cgroup_parent` as recorded) lives: a plain path,
/// or for a bare systemd slice name the path systemd would make.
pub fn pod_cgroup_path(pod: &str) -> Result<String, carapace_cgroups::Error> {
    if pod.ends_with(".slice") && !pod.contains('/') {
        carapace_cgroups::expand_slice(pod)
    } else {
        Ok(pod.to_string())
    }
}

/// Runs pod cgroup work off the async workers: with the systemd driver it
/// waits on systemd's jobs (stopping a slice kills what is left in it).
pub async fn off_runtime<T: Send + 'static>(
    pod: &str,
    f: impl FnOnce() -> Result<T, SandboxError> + Send + 'static,
) -> Result<T, SandboxError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(SandboxError::Io {
            what: "manage pod cgroup",
            path: pod.into(),
            source: std::io::Error::other(e.to_string()),
        }),
    }
}

/// The cgroup manager of pod cgroup `pod`, for the cgroupfs or the
/// systemd driver (then `pod` must name a slice).
pub(super) fn manager(pod: &str, systemd: bool) -> Result<Manager, SandboxError> {
    let err = |source| SandboxError::Cgroup {
        path: pod.to_string(),
        source,
    };
    let path = pod_cgroup_path(pod).map_err(err)?;
    Manager::new(Some(&path), "pod", systemd).map_err(err)
}

/// Whether the pod cgroup exists already (kubelet made it).
pub fn exists(pod: &str, systemd: bool) -> Result<bool, SandboxError> {
    Ok(manager(pod, systemd)?.exists())
}

/// Creates the pod cgroup unless it exists; whether it was created (and
/// so is the daemon's to remove).
pub fn ensure(pod: &str, systemd: bool) -> Result<bool, SandboxError> {
    let m = manager(pod, systemd)?;
    if m.exists() {
        return Ok(false);
    }
    m.create().map_err(|source| SandboxError::Cgroup {
        path: pod.to_string(),
        source,
    })?;
    Ok(true)
}

/// Removes the pod cgroup (with anything left below it; systemd: stops
/// the slice); a missing one is fine.
pub fn remove(pod: &str, systemd: bool) -> Result<(), SandboxError> {
    let m = manager(pod, systemd)?;
    // Nothing of a pod outlives its teardown: a process its infra or a
    // container left behind (a daemon killed mid-RunPodSandbox left one
    // in the VM lane) would hold the cgroup busy. On v2 this kills the
    // whole subtree at once (cgroup.kill).
    if m.exists() {
        let _ = m.kill_all(libc::SIGKILL);
    }
    m.destroy().map_err(|source| SandboxError::Cgroup {
        path: pod.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_and_child_paths_follow_the_driver() {
        assert_eq!(pod_path("", "abc", false), "/carapace/pod-abc");
        assert_eq!(pod_path("", "abc", true), "carapace-podabc.slice");
        assert_eq!(pod_path("/kubepods/pod1", "abc", false), "/kubepods/pod1");
        assert_eq!(
            pod_path("kubepods-pod1.slice", "abc", true),
            "kubepods-pod1.slice"
        );
        assert_eq!(
            child_path("/kubepods/pod1/", "c1", false),
            "/kubepods/pod1/c1"
        );
        assert_eq!(
            child_path("kubepods-pod1.slice", "c1", true),
            "kubepods-pod1.slice:carapace:c1"
        );
    }
}
