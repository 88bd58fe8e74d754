//! Sysctls from `linux.sysctl`: only namespaced ones are accepted (as runc
//! validates), so a container can never change a host-wide kernel setting.

use std::collections::HashMap;

use oci_spec::runtime::LinuxNamespaceType;

use crate::error::{Error, Result};
use crate::namespaces::Plan;

/// Refuse sysctls that are not isolated by the container's namespaces.
pub fn validate(sysctls: &HashMap<String, String>, plan: &Plan) -> Result<()> {
    for key in sysctls.keys() {
        let k = key.replace('/', ".");
        let ipc = [
            "kernel.msgmax",
            "kernel.msgmnb",
            "kernel.msgmni",
            "kernel.sem",
            "kernel.shmall",
            "kernel.shmmax",
            "kernel.shmmni",
            "kernel.shm_rmid_forced",
        ];
        let needs = if ipc.contains(&k.as_str()) || k.starts_with("fs.mqueue.") {
            LinuxNamespaceType::Ipc
        } else if k.starts_with("net.") {
            LinuxNamespaceType::Network
        } else if k == "kernel.hostname" || k == "kernel.domainname" {
            LinuxNamespaceType::Uts
        } else {
            return Err(Error::InvalidArgument(format!(
                "sysctl {key} is not namespaced and cannot be set in a container"
            )));
        };
        if !plan.isolates(needs) {
            return Err(Error::InvalidArgument(format!(
                "sysctl {key} needs the container's own {} namespace",
                crate::namespaces::proc_name(needs)
            )));
        }
        if k.contains("..") {
            return Err(Error::InvalidArgument(format!(
                "sysctl {key}: invalid name"
            )));
        }
    }
    Ok(())
}

/// Write the sysctls (in the container init, after its /proc is its own).
pub fn apply(sysctls: &HashMap<String, String>) -> Result<()> {
    for (key, value) in sysctls {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        crate::procfs::write(std::path::Path::new(&path), value)
            .map_err(|e| Error::Init(format!("set sysctl {key}={value}: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sched::CloneFlags;

    #[test]
    fn only_namespaced_sysctls_pass() {
        let plan = Plan {
            new: CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWIPC,
            ..Default::default()
        };
        let ok: HashMap<_, _> = [
            ("net.ipv4.ip_forward".to_string(), "1".to_string()),
            ("kernel.shmmax".into(), "1".into()),
        ]
        .into();
        assert!(validate(&ok, &plan).is_ok());
        let host: HashMap<_, _> = [("kernel.panic".to_string(), "1".to_string())].into();
        assert!(validate(&host, &plan).is_err());
        let uts: HashMap<_, _> = [("kernel.hostname".to_string(), "x".to_string())].into();
        assert!(validate(&uts, &plan).is_err(), "no uts namespace");
    }
}
