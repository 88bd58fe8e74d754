//! CVE-2019-5736 defence: before any command that lets a process enter a
//! container's namespaces (create, run, exec), the runtime re-executes
//! itself from a copy the container cannot write (`carapace-exe`), unless
//! its caller already ran it from one (the shim does, sparing every call
//! a second process start).

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use crate::error::{Context, Error, Result};

/// The commands that let a process into a container, as spelled on the
/// command line.
pub const ENTERING: [&str; 3] = ["create", "run", "exec"];

/// Whether the command line `args` (without argv\[0\]) may be one of the
/// commands that enter a container. Decided on the raw words, before the
/// command line is parsed, so a protected re-exec parses it only once: any
/// word spelled as such a command counts (a container named `run` too),
/// which costs nothing but the re-exec. The command line parser knows no
/// aliases or abbreviations (a test checks), so none is missed.
pub fn may_enter<'a>(mut args: impl Iterator<Item = &'a OsStr>) -> bool {
    args.any(|a| ENTERING.iter().any(|c| a == OsStr::new(c)))
}

/// Are we already running from a copy the container cannot write?
pub fn is_protected() -> bool {
    File::open("/proc/self/exe").is_ok_and(|exe| carapace_exe::is_protected(&exe))
}

/// Re-exec from a protected copy unless already done. Returns only when
/// already protected; otherwise it replaces the process (or fails).
pub fn ensure_sealed() -> Result<()> {
    if is_protected() {
        return Ok(());
    }
    let exe: PathBuf = std::fs::read_link("/proc/self/exe").ctx(|| "readlink /proc/self/exe")?;
    let fd = match carapace_exe::overlay_copy(&exe) {
        Ok(fd) => {
            crate::logging::debug("re-executing from a read-only overlay of the runtime binary");
            fd
        }
        Err(e) => {
            crate::logging::debug(&format!(
                "read-only overlay of the runtime binary: {e}; re-executing from a sealed memfd copy"
            ));
            let mut src = File::open("/proc/self/exe").ctx(|| "open /proc/self/exe")?;
            carapace_exe::memfd_copy(&mut src).map_err(|e| Error::Io {
                what: e.what,
                source: e.source,
            })?
        }
    };
    reexec(fd)
}

fn reexec(fd: OwnedFd) -> Result<()> {
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.into_encoded_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| Error::InvalidArgument("argument with a NUL byte".into()))?;
    let env: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.into_encoded_bytes();
            kv.push(b'=');
            kv.extend(v.into_encoded_bytes());
            CString::new(kv).ok()
        })
        .collect();
    nix::unistd::fexecve(fd.as_fd(), &args, &env).ctx(|| "re-exec from the protected copy")?;
    Err(Error::Init("fexecve returned".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<&OsStr> {
        s.split(' ').map(OsStr::new).collect()
    }

    #[test]
    fn commands_that_enter_a_container_are_found_before_parsing() {
        for line in [
            "create --bundle b c1",
            "--root /r --log l --log-format json create c1",
            "--root /r run -d c1",
            "exec -t c1 sh",
        ] {
            assert!(may_enter(words(line).into_iter()), "{line}");
        }
        for line in [
            "state c1",
            "--root /r delete -f c1",
            "kill c1 KILL",
            "start c1",
        ] {
            assert!(!may_enter(words(line).into_iter()), "{line}");
        }
        // Over-matching only costs a re-exec.
        assert!(may_enter(words("state run").into_iter()));
        assert!(!may_enter(words("--root /runtime state c").into_iter()));
    }
}
