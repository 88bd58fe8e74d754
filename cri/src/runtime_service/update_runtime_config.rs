//! `UpdateRuntimeConfig`: kubelet hands over the node's pod CIDR, which the
//! CNI plugins get for address allocation.

use k8s_cri::v1 as cri;
use tonic::Status;

use crate::daemon::Daemon;

/// Records the pod CIDR; an empty one leaves the current one in place, as
/// containerd does.
pub fn handle(
    d: &Daemon,
    req: cri::UpdateRuntimeConfigRequest,
) -> Result<cri::UpdateRuntimeConfigResponse, Status> {
    let cidr = req
        .runtime_config
        .and_then(|c| c.network_config)
        .map(|n| n.pod_cidr)
        .unwrap_or_default();
    if cidr.is_empty() {
        return Ok(cri::UpdateRuntimeConfigResponse {});
    }
    for part in cidr.split(',') {
        validate_cidr(part.trim())
            .map_err(|m| Status::invalid_argument(format!("pod CIDR {cidr:?}: {m}")))?;
    }
    tracing::info!(pod_cidr = %cidr, "pod CIDR updated");
    d.set_pod_cidr(&cidr);
    Ok(cri::UpdateRuntimeConfigResponse {})
}

/// Checks `a.b.c.d/n` or an IPv6 prefix.
fn validate_cidr(s: &str) -> Result<(), String> {
    let (addr, len) = s.split_once('/').ok_or("missing /prefix length")?;
    let ip: std::net::IpAddr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an IP address"))?;
    let len: u8 = len
        .parse()
        .map_err(|_| format!("{len:?} is not a prefix length"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(format!("prefix length {len} exceeds {max}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn req(cidr: &str) -> cri::UpdateRuntimeConfigRequest {
        cri::UpdateRuntimeConfigRequest {
            runtime_config: Some(cri::RuntimeConfig {
                network_config: Some(cri::NetworkConfig {
                    pod_cidr: cidr.into(),
                }),
            }),
        }
    }

    #[test]
    fn pod_cidr_is_recorded_and_validated() {
        let d = Daemon::new(Config::default());
        handle(&d, req("10.88.0.0/16")).expect("v4");
        assert_eq!(d.pod_cidr(), "10.88.0.0/16");
        handle(&d, req("10.88.0.0/16,fd00::/64")).expect("dual stack");
        handle(&d, req("")).expect("empty keeps");
        assert_eq!(d.pod_cidr(), "10.88.0.0/16,fd00::/64");
        for bad in ["10.88.0.0", "10.88.0.0/33", "nope/8", "fd00::/129"] {
            let e = handle(&d, req(bad)).expect_err(bad);
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad}");
        }
        assert_eq!(d.pod_cidr(), "10.88.0.0/16,fd00::/64");
    }
}
