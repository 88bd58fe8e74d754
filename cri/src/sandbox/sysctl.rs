//! Which of a pod's sysctls belong to which of its namespaces. Only
//! namespaced sysctls can be set for a pod (as runc and kubelet's own
//! validation allow); each is written into the pod's own namespace of its
//! kind, so a pod on the host's network cannot change `net.*` for the node.

use crate::namespaces::Kind;

/// IPC-namespaced sysctls outside `fs.mqueue.*`.
const IPC: [&str; 8] = [
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// Why a sysctl was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SysctlError {
    /// Not isolated by any namespace: it would change the node.
    #[error("sysctl {0} is not namespaced and cannot be set for a pod")]
    NotNamespaced(String),
    /// Its namespace is the host's for this pod.
    #[error("sysctl {0} needs the pod's own {1} namespace, but the pod uses the host's")]
    HostNamespace(String, &'static str),
    /// Not a sysctl name.
    #[error("sysctl name {0:?} is invalid")]
    Invalid(String),
}

/// Sorts `sysctls` (slash or dot form) into the kinds of namespace they
/// live in; `own` lists the kinds the pod has of its own.
pub fn classify<'a>(
    sysctls: impl IntoIterator<Item = (&'a String, &'a String)>,
    own: &[Kind],
) -> Result<Vec<(Kind, String, String)>, SysctlError> {
    let mut out = Vec::new();
    for (key, value) in sysctls {
        let name = key.replace('/', ".");
        if name.is_empty()
            || name.split('.').any(|p| p.is_empty() || p == "..")
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(SysctlError::Invalid(key.clone()));
        }
        let kind = if IPC.contains(&name.as_str()) || name.starts_with("fs.mqueue.") {
            Kind::Ipc
        } else if name.starts_with("net.") {
            Kind::Net
        } else {
            return Err(SysctlError::NotNamespaced(key.clone()));
        };
        if !own.contains(&kind) {
            return Err(SysctlError::HostNamespace(key.clone(), kind.name()));
        }
        out.push((kind, name, value.clone()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn namespaced_sysctls_are_sorted_by_namespace() {
        let m = map(&[("net/ipv4/ip_forward", "1"), ("kernel.shmmax", "9")]);
        let got = classify(&m, &[Kind::Net, Kind::Ipc]).expect("ok");
        assert_eq!(
            got,
            vec![
                (Kind::Ipc, "kernel.shmmax".into(), "9".into()),
                (Kind::Net, "net.ipv4.ip_forward".into(), "1".into()),
            ]
        );
    }

    #[test]
    fn host_wide_and_host_namespace_sysctls_are_refused() {
        let e = classify(&map(&[("kernel.panic", "1")]), &[Kind::Net]);
        assert_eq!(e, Err(SysctlError::NotNamespaced("kernel.panic".into())));
        let e = classify(&map(&[("net.core.somaxconn", "1")]), &[Kind::Ipc]);
        assert!(matches!(e, Err(SysctlError::HostNamespace(_, "net"))));
        let e = classify(&map(&[("net/../../x", "1")]), &[Kind::Net]);
        assert!(matches!(e, Err(SysctlError::Invalid(_))));
    }
}
