//! Which seccomp profile a container gets, as containerd's
//! `GenerateSeccompSecurityProfile` / `GenerateSeccompSpecOpts`
//! (internal/cri/sputil) decide: none for privileged containers; the
//! `seccomp` SecurityProfile, else the deprecated `seccomp_profile_path`
//! (`runtime/default`, `docker/default`, `unconfined`, `localhost/<path>`);
//! nothing asked for means unconfined. A localhost profile is an OCI
//! `LinuxSeccomp` JSON document the caller read from the node.

use k8s_cri::v1 as cri;
use oci_spec::runtime::{Capabilities, LinuxSeccomp};

use crate::container::seccomp_default;

use super::SpecError;

/// The profile a container asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Profile {
    /// No seccomp filter.
    Unconfined,
    /// [`seccomp_default::profile`].
    RuntimeDefault,
    /// The OCI profile at this absolute path on the node.
    Localhost(String),
}

/// The profile asked for, ignoring privilege.
pub fn requested(sc: Option<&cri::LinuxContainerSecurityContext>) -> Result<Profile, SpecError> {
    let Some(sc) = sc else {
        return Ok(Profile::Unconfined);
    };
    if let Some(p) = &sc.seccomp {
        use cri::security_profile::ProfileType;
        let t = ProfileType::try_from(p.profile_type).map_err(|_| {
            SpecError::InvalidSeccomp(format!("unknown profile type {}", p.profile_type))
        })?;
        if t != ProfileType::Localhost && !p.localhost_ref.is_empty() {
            return Err(SpecError::InvalidSeccomp(
                "localhost_ref must only be set if the profile type is Localhost".into(),
            ));
        }
        return match t {
            ProfileType::Unconfined => Ok(Profile::Unconfined),
            ProfileType::RuntimeDefault => Ok(Profile::RuntimeDefault),
            ProfileType::Localhost if p.localhost_ref.is_empty() => Err(SpecError::InvalidSeccomp(
                "profile type Localhost needs a localhost_ref".into(),
            )),
            ProfileType::Localhost => Ok(Profile::Localhost(p.localhost_ref.clone())),
        };
    }
    #[allow(deprecated)]
    let path = sc.seccomp_profile_path.as_str();
    match path {
        "" | "unconfined" => Ok(Profile::Unconfined),
        "runtime/default" | "docker/default" => Ok(Profile::RuntimeDefault),
        p => match p.strip_prefix("localhost/") {
            Some(rest) if !rest.is_empty() => Ok(Profile::Localhost(rest.to_string())),
            _ => Err(SpecError::InvalidSeccomp(format!("invalid profile {p:?}"))),
        },
    }
}

/// The profile file the caller must read and pass as `seccomp_localhost`,
/// if the container needs one (privileged containers never do).
pub fn localhost_ref(config: &cri::ContainerConfig) -> Result<Option<String>, SpecError> {
    let sc = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref());
    if sc.is_some_and(|s| s.privileged) {
        return Ok(None);
    }
    Ok(match requested(sc)? {
        Profile::Localhost(p) => Some(p),
        _ => None,
    })
}

/// `linux.seccomp`: the default profile is built for the bounding set.
pub fn seccomp(
    sc: Option<&cri::LinuxContainerSecurityContext>,
    privileged: bool,
    bounding: &Capabilities,
    localhost: Option<&str>,
) -> Result<Option<LinuxSeccomp>, SpecError> {
    let profile = requested(sc)?;
    if privileged {
        return Ok(None);
    }
    match profile {
        Profile::Unconfined => Ok(None),
        Profile::RuntimeDefault => seccomp_default::profile(bounding)
            .map(Some)
            .map_err(SpecError::DefaultSeccomp),
        Profile::Localhost(path) => {
            let text = localhost.ok_or_else(|| SpecError::SeccompProfileMissing(path.clone()))?;
            serde_json::from_str(text)
                .map(Some)
                .map_err(|e| SpecError::InvalidSeccomp(format!("profile {path}: {e}")))
        }
    }
}
