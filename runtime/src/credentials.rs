//! Who the container process is: rlimits, groups, uid/gid, the five
//! capability sets and no_new_privs, applied in the order that keeps the
//! rights needed for each step until the last one.

use caps::{CapSet, Capability as Cap, CapsHashSet};
use oci_spec::runtime::{Capabilities, LinuxCapabilities, PosixRlimit, PosixRlimitType, Process};

use crate::error::{Context, Error, Result};

/// Translate an oci-spec capability set into the caps crate's; capabilities
/// this kernel does not know are dropped (runc warns and ignores them too).
fn to_caps(set: &Option<Capabilities>, last_cap: u8) -> Result<CapsHashSet> {
    let mut out = CapsHashSet::new();
    for c in set.iter().flatten() {
        let name = format!("CAP_{c}");
        let cap: Cap = name
            .parse()
            .map_err(|_| Error::InvalidArgument(format!("unknown capability {name}")))?;
        if cap.index() <= last_cap {
            out.insert(cap);
        }
    }
    Ok(out)
}

/// The highest capability number the running kernel knows.
pub fn last_cap() -> u8 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// The resolved capability sets, computed before fork so a bad name fails
/// `create` itself.
#[derive(Debug, Clone, Default)]
pub struct CapSets {
    bounding: CapsHashSet,
    effective: CapsHashSet,
    permitted: CapsHashSet,
    inheritable: CapsHashSet,
    ambient: CapsHashSet,
}

impl CapSets {
    /// Resolve the process's capabilities (none given = none kept).
    pub fn from_spec(c: Option<&LinuxCapabilities>) -> Result<Self> {
        let last = last_cap();
        let Some(c) = c else {
            return Ok(Self::default());
        };
        Ok(Self {
            bounding: to_caps(c.bounding(), last)?,
            effective: to_caps(c.effective(), last)?,
            permitted: to_caps(c.permitted(), last)?,
            inheritable: to_caps(c.inheritable(), last)?,
            ambient: to_caps(c.ambient(), last)?,
        })
    }
}

/// Map an OCI rlimit type to the kernel's resource number.
fn rlimit_resource(t: PosixRlimitType) -> libc::c_int {
    use PosixRlimitType::*;
    (match t {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
    }) as libc::c_int
}

/// Apply the process's rlimits (before dropping privileges, so raising a
/// hard limit still works).
pub fn set_rlimits(limits: &[PosixRlimit]) -> Result<()> {
    for l in limits {
        let lim = libc::rlimit {
            rlim_cur: l.soft(),
            rlim_max: l.hard(),
        };
        // SAFETY: setrlimit with a valid resource number and a valid struct.
        let r = unsafe { libc::setrlimit(rlimit_resource(l.typ()) as _, &lim) };
        if r != 0 {
            return Err(nix::Error::last()).ctx(|| format!("setrlimit {:?}", l.typ()));
        }
    }
    Ok(())
}

/// Drop the bounding set to what the spec keeps (needs CAP_SETPCAP, so
/// before the uid switch).
pub fn drop_bounding(sets: &CapSets) -> Result<()> {
    let last = last_cap();
    for cap in caps::all() {
        if cap.index() > last || sets.bounding.contains(&cap) {
            continue;
        }
        caps::drop(None, CapSet::Bounding, cap)
            .map_err(|e| Error::Init(format!("drop {cap} from the bounding set: {e}")))?;
    }
    Ok(())
}

/// Switch to the process's user: supplementary groups, gid, uid, keeping
/// the permitted capabilities across the uid change so the final sets can
/// still be installed.
pub fn set_user(p: &Process, userns_without_setgroups: bool) -> Result<()> {
    let u = p.user();
    if !userns_without_setgroups {
        let gids: Vec<nix::unistd::Gid> = u
            .additional_gids()
            .iter()
            .flatten()
            .map(|g| nix::unistd::Gid::from_raw(*g))
            .collect();
        nix::unistd::setgroups(&gids).ctx(|| "setgroups")?;
    }
    nix::sys::prctl::set_keepcaps(true).ctx(|| "PR_SET_KEEPCAPS")?;
    let gid = nix::unistd::Gid::from_raw(u.gid());
    nix::unistd::setresgid(gid, gid, gid).ctx(|| format!("setresgid {}", u.gid()))?;
    let uid = nix::unistd::Uid::from_raw(u.uid());
    nix::unistd::setresuid(uid, uid, uid).ctx(|| format!("setresuid {}", u.uid()))?;
    nix::sys::prctl::set_keepcaps(false).ctx(|| "PR_SET_KEEPCAPS")?;
    if let Some(mask) = u.umask() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    } else {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    }
    Ok(())
}

/// Install the final permitted, inheritable, effective and ambient sets.
pub fn set_caps(sets: &CapSets) -> Result<()> {
    let err = |what: &str, e: caps::errors::CapsError| {
        Error::Init(format!("set {what} capabilities: {e}"))
    };
    // Permitted must be a superset of effective; set it first, then the rest.
    let mut permitted = sets.permitted.clone();
    permitted.extend(sets.effective.iter().copied());
    caps::set(
        None,
        CapSet::Effective,
        &sets.effective.intersection(&permitted).copied().collect(),
    )
    .map_err(|e| err("effective", e))?;
    caps::set(None, CapSet::Permitted, &permitted).map_err(|e| err("permitted", e))?;
    caps::set(None, CapSet::Inheritable, &sets.inheritable).map_err(|e| err("inheritable", e))?;
    caps::clear(None, CapSet::Ambient).map_err(|e| err("ambient", e))?;
    for c in &sets.ambient {
        // An ambient cap must be permitted and inheritable; runc ignores
        // the ones that are not.
        if permitted.contains(c) && sets.inheritable.contains(c) {
            caps::raise(None, CapSet::Ambient, *c).map_err(|e| err("ambient", e))?;
        }
    }
    Ok(())
}

/// Set no_new_privs (irreversible).
pub fn set_no_new_privs() -> Result<()> {
    nix::sys::prctl::set_no_new_privs().ctx(|| "PR_SET_NO_NEW_PRIVS")
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{Capability, LinuxCapabilitiesBuilder};

    #[test]
    fn capability_names_translate() {
        let set: Capabilities = [Capability::NetBindService, Capability::Chown]
            .into_iter()
            .collect();
        let c = LinuxCapabilitiesBuilder::default()
            .bounding(set.clone())
            .effective(set)
            .permitted(Capabilities::new())
            .build()
            .expect("caps");
        let s = CapSets::from_spec(Some(&c)).expect("resolve");
        assert!(s.bounding.contains(&Cap::CAP_NET_BIND_SERVICE));
        assert!(s.effective.contains(&Cap::CAP_CHOWN));
        assert!(s.permitted.is_empty());
    }

    #[test]
    fn rlimit_types_map_to_kernel_numbers() {
        assert_eq!(
            rlimit_resource(PosixRlimitType::RlimitNofile),
            libc::RLIMIT_NOFILE as i32
        );
        assert_eq!(
            rlimit_resource(PosixRlimitType::RlimitCore),
            libc::RLIMIT_CORE as i32
        );
    }
}
