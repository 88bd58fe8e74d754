//! Linux security modules and other per-process settings applied right
//! before exec: AppArmor profile and SELinux label (only where the LSM is
//! enabled: runc ignores them elsewhere, and so do we), execution domain
//! (`linux.personality`) and I/O priority (`process.ioPriority`).

use oci_spec::runtime::{IOPriorityClass, LinuxPersonality, LinuxPersonalityDomain, Process};

use crate::error::{Context, Error, Result};

/// Is AppArmor enabled on this host?
pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
}

/// Is SELinux enabled on this host?
pub fn selinux_enabled() -> bool {
    std::path::Path::new("/sys/fs/selinux/enforce").exists()
}

/// Arrange for the exec to enter the AppArmor profile / SELinux label.
pub fn apply_labels(p: &Process) -> Result<()> {
    if let Some(profile) = p.apparmor_profile().as_deref().filter(|s| !s.is_empty()) {
        if apparmor_enabled() {
            let path = if std::path::Path::new("/proc/self/attr/apparmor/exec").exists() {
                "/proc/self/attr/apparmor/exec"
            } else {
                "/proc/self/attr/exec"
            };
            crate::procfs::write(std::path::Path::new(path), &format!("exec {profile}"))
                .map_err(|e| Error::Init(format!("set AppArmor profile {profile}: {e}")))?;
        }
    }
    if let Some(label) = p.selinux_label().as_deref().filter(|s| !s.is_empty()) {
        if selinux_enabled() {
            crate::procfs::write(std::path::Path::new("/proc/self/attr/exec"), label)
                .map_err(|e| Error::Init(format!("set SELinux label {label}: {e}")))?;
        }
    }
    Ok(())
}

/// Set the execution domain (`LINUX` or `LINUX32`).
pub fn apply_personality(pers: &LinuxPersonality) -> Result<()> {
    let domain = match pers.domain() {
        LinuxPersonalityDomain::PerLinux => 0x0000,
        LinuxPersonalityDomain::PerLinux32 => 0x0008,
    };
    // SAFETY: personality(2) takes a plain integer.
    if unsafe { libc::personality(domain) } == -1 {
        return Err(nix::Error::last()).ctx(|| "personality");
    }
    Ok(())
}

/// Set the process's I/O scheduling class and priority.
pub fn apply_io_priority(p: &Process) -> Result<()> {
    let Some(io) = p.io_priority() else {
        return Ok(());
    };
    let class: i64 = match io.class() {
        IOPriorityClass::IoprioClassRt => 1,
        IOPriorityClass::IoprioClassBe => 2,
        IOPriorityClass::IoprioClassIdle => 3,
    };
    if !(0..=7).contains(&io.priority()) {
        return Err(Error::InvalidArgument(format!(
            "ioPriority.priority {} not in 0..=7",
            io.priority()
        )));
    }
    let value = (class << 13) | io.priority();
    // SAFETY: ioprio_set(IOPRIO_WHO_PROCESS, 0 = self, value).
    let r = unsafe { libc::syscall(libc::SYS_ioprio_set, 1, 0, value) };
    if r < 0 {
        return Err(nix::Error::last()).ctx(|| "ioprio_set");
    }
    Ok(())
}

/// Fields of the spec this runtime does not implement: refuse them up
/// front instead of ignoring them silently.
pub fn check_supported(spec: &oci_spec::runtime::Spec) -> Result<()> {
    if let Some(p) = spec.process() {
        if p.scheduler().is_some() {
            return Err(Error::Unsupported("process.scheduler".into()));
        }
        if p.exec_cpu_affinity().is_some() {
            return Err(Error::Unsupported("process.execCPUAffinity".into()));
        }
    }
    if let Some(l) = spec.linux() {
        if l.intel_rdt().is_some() {
            return Err(Error::Unsupported("linux.intelRdt".into()));
        }
        if l.net_devices().as_ref().is_some_and(|d| !d.is_empty()) {
            return Err(Error::Unsupported("linux.netDevices".into()));
        }
        if l.memory_policy().is_some() {
            return Err(Error::Unsupported("linux.memoryPolicy".into()));
        }
        if let Some(s) = l.seccomp() {
            if s.listener_path().is_some() {
                return Err(Error::Unsupported(
                    "linux.seccomp.listenerPath (SCMP_ACT_NOTIFY)".into(),
                ));
            }
        }
    }
    for m in spec.mounts().iter().flatten() {
        if m.uid_mappings().is_some() || m.gid_mappings().is_some() {
            return Err(Error::Unsupported(format!(
                "idmapped mount at {}",
                m.destination().display()
            )));
        }
    }
    Ok(())
}
