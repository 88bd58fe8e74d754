//! The files every container of a pod shares: hostname, /etc/hosts and
//! resolv.conf, written once per pod into its directory and bind-mounted
//! into each container.

use std::path::Path;

use k8s_cri::v1 as cri;

/// The pod's resolv.conf: its `DNSConfig` when given (as kubelet computes
/// it), else the host's own file, as containerd and CRI-O do.
pub fn resolv_conf(dns: Option<&cri::DnsConfig>, host: &str) -> String {
    let Some(d) = dns else {
        return host.to_string();
    };
    let mut out = String::new();
    if !d.searches.is_empty() {
        out.push_str(&format!("search {}\n", d.searches.join(" ")));
    }
    for s in &d.servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !d.options.is_empty() {
        out.push_str(&format!("options {}\n", d.options.join(" ")));
    }
    out
}

/// The pod's /etc/hosts: loopback names plus the pod's hostname on each of
/// its IPs (so the pod resolves itself); on the host network, the host's.
pub fn hosts(host_network: bool, host: &str, hostname: &str, ips: &[String]) -> String {
    if host_network {
        return host.to_string();
    }
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    for ip in ips {
        out.push_str(&format!("{ip}\t{hostname}\n"));
    }
    out
}

/// Reads a host file, empty when it does not exist.
pub fn read_host(path: &Path) -> std::io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_config_becomes_resolv_conf() {
        let d = cri::DnsConfig {
            servers: vec!["10.0.0.10".into(), "10.0.0.11".into()],
            searches: vec!["ns.svc.cluster.local".into(), "cluster.local".into()],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            resolv_conf(Some(&d), "nameserver 1.1.1.1\n"),
            "search ns.svc.cluster.local cluster.local\n\
             nameserver 10.0.0.10\nnameserver 10.0.0.11\noptions ndots:5\n"
        );
    }

    #[test]
    fn without_dns_config_the_host_resolv_conf_is_used() {
        assert_eq!(
            resolv_conf(None, "nameserver 9.9.9.9\n"),
            "nameserver 9.9.9.9\n"
        );
    }

    #[test]
    fn hosts_name_the_pod_on_its_ips() {
        let h = hosts(false, "host file", "web-0", &["10.88.0.7".into()]);
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"), "{h}");
        assert!(h.ends_with("10.88.0.7\tweb-0\n"), "{h}");
        assert_eq!(hosts(true, "host file", "web-0", &[]), "host file");
    }
}
