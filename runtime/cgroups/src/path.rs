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

/// The systemd unit whose cgroup is `relative` (a normalized path, as
/// [`normalize`] returns): the last component names it, a `.slice` (at the
/// place its name gives it) or a `.scope` (in the slice whose directory
/// holds it). Returns the unit name and, for a scope, its slice. A path
/// systemd would not lay out that way names no unit and is refused: the
/// systemd driver can only manage units.
pub(crate) fn unit_of(relative: &str) -> Result<(String, Option<String>), Error> {
    let refuse = |reason: String| Error::InvalidPath {
        path: relative.to_string(),
        reason,
    };
    let (parent, last) = relative.rsplit_once('/').unwrap_or(("", relative));
    if last.ends_with(SLICE_SUFFIX) {
        let expected = expand_slice(last)?;
        if expected != relative {
            return Err(refuse(format!(
                "systemd puts slice {last} at {expected}, not here"
            )));
        }
        return Ok((last.to_string(), None));
    }
    if last.ends_with(".scope") && last.len() > ".scope".len() {
        let slice = match parent.rsplit_once('/') {
            _ if parent.is_empty() => "-.slice",
            Some((_, s)) => s,
            None => parent,
        };
        let expected = expand_slice(slice)
            .map_err(|_| refuse(format!("the parent of scope {last} is not a slice")))?;
        let actual = if parent.is_empty() { "/" } else { parent };
        if expected != actual {
            return Err(refuse(format!(
                "systemd puts slice {slice} at {expected}, not {actual}"
            )));
        }
        return Ok((last.to_string(), Some(slice.to_string())));
    }
    Err(refuse(
        "the systemd cgroup driver manages units: want slice:prefix:name, or a path \
         ending in a .scope or .slice where systemd would put it"
            .to_string(),
    ))
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
    fn unit_paths_name_their_unit_and_slice() {
        assert_eq!(
            unit_of("/system.slice/carapace-abc.scope").expect("scope"),
            (
                "carapace-abc.scope".to_string(),
                Some("system.slice".to_string())
            )
        );
        assert_eq!(
            unit_of("/a.slice/a-b.slice/x.scope").expect("nested"),
            ("x.scope".to_string(), Some("a-b.slice".to_string()))
        );
        assert_eq!(
            unit_of("/carapace.slice/carapace-pod1.slice").expect("slice"),
            ("carapace-pod1.slice".to_string(), None)
        );
        assert_eq!(
            unit_of("/x.scope").expect("root scope"),
            ("x.scope".to_string(), Some("-.slice".to_string()))
        );
        for bad in [
            "/carapace/abc",
            "/a-b.slice/x.scope",
            "/a.slice/b.slice",
            "/a.slice/a-b.slice/c/x.scope",
            "/a.slice/.scope",
        ] {
            assert!(unit_of(bad).is_err(), "{bad}");
        }
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
