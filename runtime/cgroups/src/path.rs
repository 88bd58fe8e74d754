//! Turning an OCI `linux.cgroupsPath` into the cgroup path below the root.
//!
//! Two forms exist in the wild:
//! * cgroupfs: `/kubepods/burstable/pod123/abc` (a relative path is taken
//!   relative to the root too);
//! * systemd: `slice:prefix:name`, e.g.
//!   `kubepods-burstable-pod123.slice:cri-containerd:abc`, which systemd lays
//!   out as `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod123.slice/cri-containerd-abc.scope`.
//!
//! Both are accepted by the cgroupfs driver; the systemd form is expanded the
//! way runc's `ExpandSlice` and `getUnitName` do, so a kubelet configured for
//! the systemd driver still finds its pods where it expects them.

use crate::error::Error;

/// Parent of container cgroups when the OCI spec gives no `cgroupsPath`.
pub const DEFAULT_PARENT: &str = "/carapace";

/// Slice used by systemd (and runc) for a unit whose slice is left empty.
pub const DEFAULT_SLICE: &str = "system.slice";

const SLICE_SUFFIX: &str = ".slice";

/// Expands a systemd slice name into its cgroup path, following systemd's
/// "-" nesting rule: `a-b-c.slice` is `/a.slice/a-b.slice/a-b-c.slice`, and
/// `-.slice` is the root (`/`).
///
/// Exists so the daemon can compute pod cgroup paths exactly as systemd
/// would; rejects names that systemd would reject (`a--b.slice`, `-a.slice`,
/// `a/b.slice`, `.slice`).
pub fn expand_slice(slice: &str) -> Result<String, Error> {
    let invalid = |reason: &str| Error::InvalidPath {
        path: slice.to_string(),
        reason: format!("invalid systemd slice name: {reason}"),
    };
    let Some(stem) = slice.strip_suffix(SLICE_SUFFIX) else {
        return Err(invalid("must end in .slice"));
    };
    if stem.is_empty() {
        return Err(invalid("empty name"));
    }
    if slice.contains('/') {
        return Err(invalid("contains '/'"));
    }
    if stem == "-" {
        return Ok("/".to_string());
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for component in stem.split('-') {
        if component.is_empty() {
            return Err(invalid("empty component between '-'"));
        }
        path.push('/');
        path.push_str(&prefix);
        path.push_str(component);
        path.push_str(SLICE_SUFFIX);
        prefix.push_str(component);
        prefix.push('-');
    }
    Ok(path)
}

/// The systemd unit a container gets: a scope `prefix-name.scope` (just
/// `name.scope` when the prefix is empty), or `name` itself when it already
/// names a slice — as runc's `getUnitName` does.
pub fn systemd_unit_name(prefix: &str, name: &str) -> String {
    if name.ends_with(SLICE_SUFFIX) {
        name.to_string()
    } else if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    }
}

/// Whether `path` has the systemd `slice:prefix:name` form.
pub fn is_systemd_form(path: &str) -> bool {
    !path.contains('/') && path.split(':').count() == 3
}

/// Normalizes an OCI `cgroupsPath` to an absolute cgroup path such as
/// `/carapace/abc`, refusing anything that could leave the root or name it.
pub(crate) fn normalize(cgroups_path: Option<&str>, id: &str) -> Result<String, Error> {
    match cgroups_path {
        None => {
            check_component(id, id)?;
            Ok(format!("{DEFAULT_PARENT}/{id}"))
        }
        Some(p) if is_systemd_form(p) => systemd_path(p),
        Some(p) => clean(p),
    }
}

fn systemd_path(p: &str) -> Result<String, Error> {
    let mut parts = p.splitn(3, ':');
    let (slice, prefix, name) = match (parts.next(), parts.next(), parts.next()) {
        (Some(s), Some(pr), Some(n)) => (s, pr, n),
        _ => {
            return Err(Error::InvalidPath {
                path: p.to_string(),
                reason: "expected slice:prefix:name".to_string(),
            })
        }
    };
    if name.is_empty() {
        return Err(Error::InvalidPath {
            path: p.to_string(),
            reason: "empty unit name in slice:prefix:name".to_string(),
        });
    }
    check_component(p, name)?;
    let slice = if slice.is_empty() {
        DEFAULT_SLICE
    } else {
        slice
    };
    let parent = expand_slice(slice)?;
    let unit = systemd_unit_name(prefix, name);
    let joined = if parent == "/" {
        format!("/{unit}")
    } else {
        format!("{parent}/{unit}")
    };
    clean(&joined)
}

fn check_component(whole: &str, c: &str) -> Result<(), Error> {
    let bad = |reason: &str| Error::InvalidPath {
        path: whole.to_string(),
        reason: reason.to_string(),
    };
    if c.is_empty() {
        return Err(bad("empty name"));
    }
    if c == "." || c == ".." {
        return Err(bad("'.' and '..' are not cgroup names"));
    }
    if c.contains('/') || c.contains('\0') {
        return Err(bad("a name may not contain '/' or NUL"));
    }
    Ok(())
}

fn clean(p: &str) -> Result<String, Error> {
    let mut out = String::new();
    for c in p.split('/') {
        match c {
            "" | "." => continue,
            ".." => {
                return Err(Error::InvalidPath {
                    path: p.to_string(),
                    reason: "'..' is not allowed in a cgroup path".to_string(),
                })
            }
            _ => {
                check_component(p, c)?;
                out.push('/');
                out.push_str(c);
            }
        }
    }
    if out.is_empty() {
        return Err(Error::InvalidPath {
            path: p.to_string(),
            reason: "the root cgroup cannot be a container's cgroup".to_string(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expand_slice_nests_on_dashes() {
        assert_eq!(expand_slice("-.slice").unwrap(), "/");
        assert_eq!(expand_slice("system.slice").unwrap(), "/system.slice");
        assert_eq!(
            expand_slice("kubepods-burstable-pod123.slice").unwrap(),
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod123.slice"
        );
    }

    #[test]
    fn expand_slice_rejects_what_systemd_rejects() {
        for bad in [
            "",
            ".slice",
            "a",
            "a--b.slice",
            "-a.slice",
            "a-.slice",
            "a/b.slice",
        ] {
            assert!(expand_slice(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn unit_name_follows_runc() {
        assert_eq!(
            systemd_unit_name("cri-containerd", "abc"),
            "cri-containerd-abc.scope"
        );
        assert_eq!(systemd_unit_name("", "abc"), "abc.scope");
        assert_eq!(systemd_unit_name("x", "pod-a.slice"), "pod-a.slice");
    }

    #[test]
    fn systemd_form_expands_to_systemd_layout() {
        assert_eq!(
            normalize(
                Some("kubepods-burstable-pod123.slice:cri-containerd:abc"),
                "abc"
            )
            .unwrap(),
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod123.slice/cri-containerd-abc.scope"
        );
        assert_eq!(
            normalize(Some("-.slice:crio:abc"), "abc").unwrap(),
            "/crio-abc.scope"
        );
        assert_eq!(
            normalize(Some(":carapace:abc"), "abc").unwrap(),
            "/system.slice/carapace-abc.scope"
        );
        assert!(normalize(Some("kubepods.slice:p:"), "x").is_err());
        assert!(normalize(Some("kubepods:p:x"), "x").is_err());
    }

    #[test]
    fn default_path_is_under_carapace() {
        assert_eq!(normalize(None, "abc").unwrap(), "/carapace/abc");
        assert!(normalize(None, "").is_err());
        assert!(normalize(None, "a/b").is_err());
        assert!(normalize(None, "..").is_err());
    }

    #[test]
    fn plain_paths_are_cleaned_and_relative_to_root() {
        assert_eq!(
            normalize(Some("/kubepods/burstable//pod1/./c"), "c").unwrap(),
            "/kubepods/burstable/pod1/c"
        );
        assert_eq!(normalize(Some("kubepods/c"), "c").unwrap(), "/kubepods/c");
        assert!(normalize(Some("/a/../../etc"), "c").is_err());
        assert!(normalize(Some("/"), "c").is_err());
        assert!(normalize(Some(""), "c").is_err());
    }
}
