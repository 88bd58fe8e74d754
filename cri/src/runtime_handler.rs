//! What the daemon knows of a runtime handler's OCI runtime: where its
//! binary is and which optional features it has. Used by Status, by
//! RunPodSandbox (a missing runtime is refused up front) and by
//! CreateContainer (recursive read-only mounts need `rro`).

use std::path::{Path, PathBuf};

/// How long a runtime's `features` may take before it counts as "no".
const FEATURES_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether the OCI runtime `binary` knows the `rro` mount option, from
/// its `features` document (runc 1.1+, carapace-runtime; a runtime
/// without the subcommand, like Debian's crun 1.8, does not). Asked once
/// per binary: Status is polled every few seconds, and CreateContainer
/// refuses `recursive_read_only` mounts for a runtime without it.
pub fn rro_supported(binary: &Path) -> bool {
    static KNOWN: std::sync::Mutex<Vec<(PathBuf, bool)>> = std::sync::Mutex::new(Vec::new());
    let Ok(mut known) = KNOWN.lock() else {
        return false;
    };
    if let Some((_, v)) = known.iter().find(|(b, _)| b == binary) {
        return *v;
    }
    let v = features(binary).is_some_and(|f| {
        f["mountOptions"]
            .as_array()
            .is_some_and(|o| o.iter().any(|x| x == "rro"))
    });
    known.push((binary.to_path_buf(), v));
    v
}

/// The runtime's `features` JSON, if it answers in time.
fn features(binary: &Path) -> Option<serde_json::Value> {
    let child = std::process::Command::new(binary)
        .arg("features")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(FEATURES_TIMEOUT) {
        Ok(Ok(out)) if out.status.success() => serde_json::from_slice(&out.stdout).ok(),
        Ok(_) => None,
        Err(_) => {
            // Our own child, still unreaped (its waiter holds it).
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            tracing::warn!(runtime = %binary.display(), "no answer to `features`");
            None
        }
    }
}

/// Finds a runtime binary: a path as given, a bare name beside the
/// daemon's own executable first, then on PATH.
pub fn find_binary(name: &Path) -> Option<PathBuf> {
    if name.components().count() > 1 || name.is_absolute() {
        return name.is_file().then(|| name.to_path_buf());
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join(name)));
    let path = std::env::var_os("PATH").unwrap_or_default();
    beside
        .into_iter()
        .chain(std::env::split_paths(&path).map(|d| d.join(name)))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rro_is_advertised_only_where_features_lists_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        let script = |name: &str, body: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            p
        };
        let yes = script("yes", r#"echo '{"mountOptions": ["ro", "rro"]}'"#);
        let no = script("no", r#"echo '{"mountOptions": ["ro"]}'"#);
        let old = script("old", "echo 'unknown command features' >&2; exit 1");
        let garbage = script("garbage", "echo '{'");
        assert!(rro_supported(&yes));
        assert!(!rro_supported(&no));
        assert!(!rro_supported(&old));
        assert!(!rro_supported(&garbage));
        assert!(!rro_supported(&dir.path().join("missing")));
        // Asked once: a changed answer is not seen (Status is polled).
        std::fs::write(&yes, "#!/bin/sh\nexit 1\n").expect("rewrite");
        assert!(rro_supported(&yes));
    }
}
