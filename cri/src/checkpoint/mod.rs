//! Whether this node can checkpoint containers (CRI CheckpointContainer,
//! KEP 2008): that takes CRIU, and CRIU must pass `criu check` on the
//! running kernel. The answer is found once per daemon (the kernel and the
//! installed CRIU do not change under it) and said in Status's verbose
//! info and in CheckpointContainer's refusal.

pub mod archive;
pub mod rootfs_diff;

use std::process::Command;
use std::sync::OnceLock;

/// CRIU as this node has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Criu {
    /// `criu check` passed: the version it reported.
    Ready(String),
    /// CRIU cannot checkpoint here, and why.
    Unusable(String),
}

impl Criu {
    /// What Status's verbose info says.
    pub fn describe(&self) -> String {
        match self {
            Criu::Ready(v) => format!("criu {v}: ready"),
            Criu::Unusable(why) => format!("unusable: {why}"),
        }
    }
}

/// The node's CRIU, found on first use.
pub fn criu() -> &'static Criu {
    static CRIU: OnceLock<Criu> = OnceLock::new();
    CRIU.get_or_init(|| probe("criu"))
}

/// Runs `binary --version` and `binary check`.
fn probe(binary: &str) -> Criu {
    let version = match Command::new(binary).arg("--version").output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("Version:")
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_else(|| "(unknown version)".into()),
        Ok(out) => {
            return Criu::Unusable(format!(
                "`{binary} --version` failed: {}",
                last_line(&out.stderr)
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Criu::Unusable(format!(
                "{binary} is not installed (Debian: apt install criu)"
            ))
        }
        Err(e) => return Criu::Unusable(format!("run {binary}: {e}")),
    };
    match Command::new(binary).arg("check").output() {
        Ok(out) if out.status.success() => Criu::Ready(version),
        Ok(out) => {
            let mut why = last_line(&out.stderr);
            if why.is_empty() {
                why = last_line(&out.stdout);
            }
            Criu::Unusable(format!(
                "`{binary} check` (criu {version}) fails on this kernel: {why}"
            ))
        }
        Err(e) => Criu::Unusable(format!("run {binary} check: {e}")),
    }
}

/// The last non-empty line of a command's output (CRIU ends with the
/// reason it gave up).
fn last_line(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn fake(dir: &std::path::Path, check_exit: i32) -> String {
        let p = dir.join("criu");
        std::fs::write(
            &p,
            format!(
                "#!/bin/sh\ncase \"$1\" in\n--version) echo 'Version: 3.17.1';;\n\
                 check) echo 'Error (criu/vdso.c:1): vdso: Failed to fill self vdso symtable' >&2;\n\
                 echo 'Looks good but some kernel features are missing' >&2; exit {check_exit};;\nesac\n"
            ),
        )
        .expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        p.display().to_string()
    }

    #[test]
    fn criu_is_ready_only_when_its_check_passes() {
        let d = tempfile::tempdir().expect("tmp");
        assert_eq!(probe(&fake(d.path(), 0)), Criu::Ready("3.17.1".into()));
        let e = tempfile::tempdir().expect("tmp");
        match probe(&fake(e.path(), 1)) {
            Criu::Unusable(why) => {
                assert!(why.contains("check") && why.contains("3.17.1"), "{why}");
                assert!(why.contains("some kernel features are missing"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        match probe("/nonexistent/criu") {
            Criu::Unusable(why) => assert!(why.contains("not installed"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
