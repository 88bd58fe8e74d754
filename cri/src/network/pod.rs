//! What the plugins are told about one pod, and how: its identity goes into
//! `CNI_ARGS`, its port mappings and pod CIDR into the capability arguments
//! that end up in `runtimeConfig` (as containerd's go-cni passes them).

use serde_json::{json, Map, Value};

use super::CniError;

/// The capability `portmap` declares to receive host ports.
pub const CAP_PORT_MAPPINGS: &str = "portMappings";
/// The capability `host-local` declares to receive its ranges at run time.
pub const CAP_IP_RANGES: &str = "ipRanges";

/// One host port forwarded to the pod, as CRI asks for it; kept with the
/// sandbox so DEL is told the same mappings ADD was.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortMapping {
    /// The port on the host; mappings without one (0) are not forwarded.
    pub host_port: i32,
    /// The port in the pod.
    pub container_port: i32,
    /// "tcp", "udp" or "sctp", lower case.
    pub protocol: String,
    /// The host address to listen on; "" for all.
    pub host_ip: String,
}

/// What the plugins are told about one pod: the same on ADD and DEL, so
/// that DEL finds what ADD made.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodNetwork {
    /// The sandbox id: `CNI_CONTAINERID` and `K8S_POD_INFRA_CONTAINER_ID`.
    pub id: String,
    /// The pinned network namespace: `CNI_NETNS`.
    pub netns: std::path::PathBuf,
    /// The interface to make in it: `CNI_IFNAME` ("eth0").
    pub ifname: String,
    /// The pod's name (`K8S_POD_NAME`).
    pub pod_name: String,
    /// The pod's namespace (`K8S_POD_NAMESPACE`).
    pub pod_namespace: String,
    /// The pod's UID (`K8S_POD_UID`).
    pub pod_uid: String,
    /// Host ports to forward (the `portMappings` capability).
    pub port_mappings: Vec<PortMapping>,
    /// The node's pod CIDR(s), comma-separated as kubelet sends them; ""
    /// when unset (the `ipRanges` capability).
    pub pod_cidr: String,
}

impl PodNetwork {
    /// `CNI_ARGS`: the pod's identity, with `IgnoreUnknown=1` so plugins
    /// that know none of the keys do not fail.
    pub(crate) fn cni_args(&self) -> Result<String, CniError> {
        let pairs = [
            ("K8S_POD_NAMESPACE", &self.pod_namespace),
            ("K8S_POD_NAME", &self.pod_name),
            ("K8S_POD_INFRA_CONTAINER_ID", &self.id),
            ("K8S_POD_UID", &self.pod_uid),
        ];
        let mut s = String::from("IgnoreUnknown=1");
        for (key, value) in pairs {
            if value.contains([';', '=']) {
                return Err(CniError::BadArg {
                    key,
                    value: value.clone(),
                });
            }
            s.push(';');
            s.push_str(key);
            s.push('=');
            s.push_str(value);
        }
        Ok(s)
    }

    /// The capability arguments this pod offers, by capability name; a
    /// plugin gets those it declares in its `runtimeConfig`. A capability
    /// with nothing to say is absent rather than empty.
    pub(crate) fn capability_args(&self) -> Map<String, Value> {
        let mut caps = Map::new();
        let ports: Vec<Value> = self
            .port_mappings
            .iter()
            .filter(|m| m.host_port > 0)
            .map(port_mapping)
            .collect();
        if !ports.is_empty() {
            caps.insert(CAP_PORT_MAPPINGS.to_string(), Value::Array(ports));
        }
        // One range set per CIDR: a dual-stack pod gets an address of each
        // family.
        let ranges: Vec<Value> = self
            .pod_cidr
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(|c| json!([{ "subnet": c }]))
            .collect();
        if !ranges.is_empty() {
            caps.insert(CAP_IP_RANGES.to_string(), Value::Array(ranges));
        }
        caps
    }
}

/// One mapping in portmap's `runtimeConfig.portMappings` form.
fn port_mapping(m: &PortMapping) -> Value {
    let protocol = match m.protocol.to_ascii_lowercase() {
        p if p.is_empty() => "tcp".to_string(),
        p => p,
    };
    let mut v = json!({
        "hostPort": m.host_port,
        "containerPort": m.container_port,
        "protocol": protocol,
    });
    if !m.host_ip.is_empty() {
        v["hostIP"] = Value::String(m.host_ip.clone());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> PodNetwork {
        PodNetwork {
            id: "0123abcd".into(),
            netns: "/run/carapace/pods/0123abcd/ns/net".into(),
            ifname: "eth0".into(),
            pod_name: "web-0".into(),
            pod_namespace: "default".into(),
            pod_uid: "5f0c-11".into(),
            ..Default::default()
        }
    }

    #[test]
    fn cni_args_carry_the_pod_identity() {
        assert_eq!(
            pod().cni_args().expect("args"),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;\
             K8S_POD_INFRA_CONTAINER_ID=0123abcd;K8S_POD_UID=5f0c-11"
        );
    }

    #[test]
    fn cni_args_refuse_values_that_would_break_the_syntax() {
        let p = PodNetwork {
            pod_name: "a;K8S_POD_NAMESPACE=kube-system".into(),
            ..pod()
        };
        let e = p.cni_args().expect_err("must refuse");
        assert!(e.to_string().contains("K8S_POD_NAME"), "{e}");
    }

    #[test]
    fn a_pod_without_ports_or_cidr_offers_no_capabilities() {
        let p = PodNetwork {
            port_mappings: vec![PortMapping {
                host_port: 0,
                container_port: 80,
                protocol: "tcp".into(),
                host_ip: String::new(),
            }],
            ..pod()
        };
        assert!(p.capability_args().is_empty());
    }

    #[test]
    fn host_ports_become_port_mappings() {
        let p = PodNetwork {
            port_mappings: vec![
                PortMapping {
                    host_port: 8080,
                    container_port: 80,
                    protocol: "TCP".into(),
                    host_ip: String::new(),
                },
                PortMapping {
                    host_port: 0,
                    container_port: 81,
                    protocol: "tcp".into(),
                    host_ip: String::new(),
                },
                PortMapping {
                    host_port: 5353,
                    container_port: 53,
                    protocol: "udp".into(),
                    host_ip: "127.0.0.1".into(),
                },
            ],
            ..pod()
        };
        assert_eq!(
            Value::Object(p.capability_args()),
            json!({"portMappings": [
                {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"},
            ]})
        );
    }

    #[test]
    fn pod_cidrs_become_ip_ranges() {
        let p = PodNetwork {
            pod_cidr: "10.244.1.0/24".into(),
            ..pod()
        };
        assert_eq!(
            Value::Object(p.capability_args()),
            json!({"ipRanges": [[{"subnet": "10.244.1.0/24"}]]})
        );
        let p = PodNetwork {
            pod_cidr: "10.244.1.0/24, fd00:1::/64".into(),
            ..pod()
        };
        assert_eq!(
            Value::Object(p.capability_args()),
            json!({"ipRanges": [[{"subnet": "10.244.1.0/24"}], [{"subnet": "fd00:1::/64"}]]})
        );
    }
}
