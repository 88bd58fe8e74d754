//! The CNI runner with the real plugins of Debian's
//! `containernetworking-plugins` (bridge, host-local, portmap in
//! /usr/lib/cni) on real network namespaces. Needs root: the plugins make
//! bridges, veths and NAT rules. Each test has its own bridge, subnet,
//! host port and sandbox id so they can run in parallel, and a guard that
//! tears everything down even when an assertion fails.

use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use carapace_cri::namespaces::{Kind, Pinned, Setup};
use carapace_cri::network::{self, CniError, NetworkConf, PodNetwork, PortMapping};
use serde_json::json;

const BIN_DIR: &str = "/usr/lib/cni";

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "CNI tests need root: the plugins make bridges, veths and NAT rules (CI runs them as root)"
    );
    for p in ["bridge", "host-local", "portmap"] {
        assert!(
            Path::new(BIN_DIR).join(p).is_file(),
            "CNI tests need {BIN_DIR}/{p}: install Debian's containernetworking-plugins"
        );
    }
}

fn bin_dirs() -> Vec<PathBuf> {
    vec![PathBuf::from(BIN_DIR)]
}

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// One test pod on one test network; dropping it undoes all of it: DEL
/// (addresses, NAT rules), the pinned namespace, the bridge.
struct TestNet {
    tmp: tempfile::TempDir,
    bridge: String,
    pinned: Pinned,
    conf: NetworkConf,
    pod: PodNetwork,
}

impl TestNet {
    /// A bridge network `name` on `bridge` with host-local addresses from
    /// `subnet` and portmap, and a pod with a fresh network namespace.
    fn new(name: &str, bridge: &str, subnet: &str, ports: Vec<PortMapping>) -> TestNet {
        let tmp = tempfile::tempdir().expect("tmp");
        let confs = tmp.path().join("net.d");
        std::fs::create_dir_all(&confs).expect("conf dir");
        let list = json!({
            "cniVersion": "1.0.0",
            "name": name,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": bridge,
                    "isGateway": true,
                    "ipMasq": false,
                    "ipam": {
                        "type": "host-local",
                        "subnet": subnet,
                        "dataDir": tmp.path().join("ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": true}},
            ],
        });
        std::fs::write(confs.join("10-test.conflist"), list.to_string()).expect("write conf");
        let conf = network::find_conf(&confs).expect("conf found");
        let pinned = Pinned::create(&tmp.path().join("ns"), &[Kind::Net], &Setup::default())
            .expect("pod netns");
        let pod = PodNetwork {
            id: format!("{name}-sandbox"),
            netns: pinned.path(Kind::Net).expect("net pinned"),
            ifname: "eth0".into(),
            pod_name: format!("{name}-pod"),
            pod_namespace: "cnitest".into(),
            pod_uid: format!("{name}-uid"),
            port_mappings: ports,
            pod_cidr: String::new(),
        };
        TestNet {
            tmp,
            bridge: bridge.to_string(),
            pinned,
            conf,
            pod,
        }
    }

    fn add(&self) -> Result<network::AddResult, CniError> {
        block_on(network::add(&self.conf, &bin_dirs(), &self.pod))
    }

    fn del(&self, prev: Option<&serde_json::Value>) -> Result<(), CniError> {
        block_on(network::del(&self.conf, &bin_dirs(), &self.pod, prev))
    }

    /// Runs `ip args…` in the pod's network namespace.
    fn ip_in_pod(&self, args: &[&str]) -> std::process::Output {
        let netns = self.pod.netns.display();
        Command::new("nsenter")
            .arg(format!("--net={netns}"))
            .arg("ip")
            .args(args)
            .output()
            .expect("run nsenter (util-linux)")
    }

    /// The addresses host-local has reserved on this network.
    fn reservations(&self) -> Vec<String> {
        let dir = self.tmp.path().join("ipam").join(&self.conf.name);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.parse::<IpAddr>().is_ok())
            .collect()
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        let _ = self.del(None);
        let _ = self.pinned.remove();
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

fn nat_rules() -> String {
    let out = Command::new("iptables")
        .args(["-w", "-t", "nat", "-S"])
        .output()
        .expect("run iptables");
    assert!(
        out.status.success(),
        "iptables: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn add_gives_the_pod_an_address_and_del_takes_it_back() {
    require_root();
    let net = TestNet::new("cnitest-basic", "cnitest0", "10.99.0.0/24", Vec::new());

    let r = net.add().expect("ADD");
    assert_eq!(r.ips.len(), 1, "{:?}", r.ips);
    let ip: IpAddr = r.ips[0].parse().expect("an IP");
    let IpAddr::V4(v4) = ip else {
        panic!("expected IPv4, got {ip}");
    };
    assert_eq!(v4.octets()[..3], [10, 99, 0], "{ip} not in 10.99.0.0/24");
    assert_ne!(v4.octets()[3], 1, "the gateway's address went to the pod");
    let out = net.ip_in_pod(&["-o", "-4", "addr", "show", "eth0"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains(&format!("inet {ip}/24")),
        "eth0 in the pod: {shown} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(net.reservations(), [ip.to_string()]);

    net.del(Some(&r.result)).expect("DEL");
    let out = net.ip_in_pod(&["link", "show", "eth0"]);
    assert!(
        !out.status.success(),
        "eth0 still in the pod: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(net.reservations().is_empty(), "{:?}", net.reservations());

    net.del(Some(&r.result)).expect("second DEL");
    net.del(None).expect("DEL without a result");
}

#[test]
fn del_succeeds_once_the_netns_is_gone_and_still_frees_the_address() {
    require_root();
    let net = TestNet::new("cnitest-gone", "cnitest3", "10.99.3.0/24", Vec::new());
    let r = net.add().expect("ADD");
    assert_eq!(net.reservations().len(), 1);

    net.pinned.remove().expect("unpin netns");
    assert!(!net.pod.netns.exists());
    net.del(Some(&r.result)).expect("DEL without netns");
    assert!(net.reservations().is_empty(), "{:?}", net.reservations());
    net.del(Some(&r.result)).expect("second DEL");
}

#[test]
fn del_of_a_pod_never_added_succeeds() {
    require_root();
    let net = TestNet::new("cnitest-never", "cnitest4", "10.99.4.0/24", Vec::new());
    net.del(None).expect("DEL before ADD");
}

#[test]
fn port_mappings_become_nat_rules_until_del() {
    require_root();
    let net = TestNet::new(
        "cnitest-ports",
        "cnitest1",
        "10.99.1.0/24",
        vec![PortMapping {
            host_port: 18080,
            container_port: 80,
            protocol: "tcp".into(),
            host_ip: String::new(),
        }],
    );
    let r = net.add().expect("ADD");
    let rules = nat_rules();
    let forwarded: Vec<&str> = rules.lines().filter(|l| l.contains("18080")).collect();
    assert!(!forwarded.is_empty(), "no rule for port 18080 in\n{rules}");
    assert!(
        forwarded
            .iter()
            .any(|l| l.contains(&format!("{}:80", r.ips[0]))),
        "18080 not forwarded to {}:80 in\n{rules}",
        r.ips[0]
    );

    net.del(Some(&r.result)).expect("DEL");
    let rules = nat_rules();
    assert!(
        !rules.lines().any(|l| l.contains("18080")),
        "port 18080 still mapped after DEL:\n{rules}"
    );
}

#[test]
fn an_unknown_plugin_type_is_named_in_the_error() {
    require_root();
    let tmp = tempfile::tempdir().expect("tmp");
    let conf = network::parse_conf(
        &tmp.path().join("10-x.conflist"),
        r#"{"cniVersion":"1.0.0","name":"cnitest-unknown","plugins":[{"type":"no-such-cni-plugin"}]}"#,
    )
    .expect("conf");
    let pod = PodNetwork {
        id: "cnitest-unknown-sandbox".into(),
        netns: tmp.path().join("net"),
        ifname: "eth0".into(),
        ..Default::default()
    };
    let e = block_on(network::add(&conf, &bin_dirs(), &pod)).expect_err("must fail");
    assert!(matches!(e, CniError::PluginNotFound { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("no-such-cni-plugin"), "{msg}");
    assert!(msg.contains(BIN_DIR), "{msg}");
}

#[test]
fn a_failing_plugin_reports_its_own_message() {
    require_root();
    let net = TestNet::new("cnitest-bad", "cnitest2", "10.99.2.0/33", Vec::new());
    let e = net.add().expect_err("an invalid subnet must fail");
    assert!(matches!(e, CniError::PluginFailed { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("\"bridge\""), "{msg}");
    assert!(msg.contains("invalid CIDR address: 10.99.2.0/33"), "{msg}");
}
