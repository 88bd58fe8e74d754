//! A pod's network counters: bytes and errors per interface, as the pod
//! sees them.
//!
//! They are read from `/proc/thread-self/net/dev` by a short-lived thread
//! that has joined the pod's pinned network namespace: procfs shows the
//! reading thread's namespace there, whereas `/sys/class/net` would show
//! the namespace sysfs was mounted in (the host's). The pin outlives the
//! infra process, so this works whatever became of it, and the thread
//! ends right after, so no other work ever runs in the pod's namespace.
//!
//! As containerd does, `lo` is left out, and the default interface is
//! `eth0` (the CNI convention), or the first one when there is no `eth0`.

use std::path::Path;

use k8s_cri::v1 as cri;

use super::StatsError;

/// The pod interface CNI plugins create and kubelet reports as default.
pub const DEFAULT_INTERFACE: &str = "eth0";

/// The loopback interface, which carries no pod traffic worth reporting.
const LOOPBACK: &str = "lo";

/// The counters of one interface.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// The interface name.
    pub name: String,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Received packets dropped.
    pub rx_dropped: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Transmit errors.
    pub tx_errors: u64,
    /// Sent packets dropped.
    pub tx_dropped: u64,
}

/// Parses `/proc/net/dev`: two header lines, then `name: ` and eight
/// receive fields (bytes packets errs drop fifo frame compressed
/// multicast) and eight transmit fields (bytes packets errs drop fifo
/// colls carrier compressed). The stats calls use bytes and errors; the
/// metrics also packets and drops.
pub fn parse(text: &str) -> Result<Vec<Counters>, StatsError> {
    let mut out = Vec::new();
    for line in text.lines().skip(2) {
        if line.trim().is_empty() {
            continue;
        }
        let bad = || StatsError::NetDev(line.to_string());
        // Interface names cannot hold ':' (the kernel refuses them).
        let (name, fields) = line.split_once(':').ok_or_else(bad)?;
        let v: Vec<u64> = fields
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|_| bad())?;
        if v.len() < 12 {
            return Err(bad());
        }
        out.push(Counters {
            name: name.trim().to_string(),
            rx_bytes: v[0],
            rx_packets: v[1],
            rx_errors: v[2],
            rx_dropped: v[3],
            tx_bytes: v[8],
            tx_packets: v[9],
            tx_errors: v[10],
            tx_dropped: v[11],
        });
    }
    Ok(out)
}

/// The CRI network usage of a pod's interfaces at `timestamp`: every
/// interface but `lo`, and the default one (see the module doc).
pub fn usage(counters: &[Counters], timestamp: i64) -> cri::NetworkUsage {
    let v = |value| Some(cri::UInt64Value { value });
    let interfaces: Vec<cri::NetworkInterfaceUsage> = counters
        .iter()
        .filter(|c| c.name != LOOPBACK)
        .map(|c| cri::NetworkInterfaceUsage {
            name: c.name.clone(),
            rx_bytes: v(c.rx_bytes),
            rx_errors: v(c.rx_errors),
            tx_bytes: v(c.tx_bytes),
            tx_errors: v(c.tx_errors),
        })
        .collect();
    let default_interface = interfaces
        .iter()
        .find(|i| i.name == DEFAULT_INTERFACE)
        .or_else(|| interfaces.first())
        .cloned();
    cri::NetworkUsage {
        timestamp,
        default_interface,
        interfaces,
    }
}

/// The counters of every interface of the network namespace pinned at
/// `netns`, read from inside it on a thread of its own.
pub fn read_in(netns: &Path) -> Result<Vec<Counters>, StatsError> {
    let ns = std::fs::File::open(netns).map_err(|source| StatsError::Read {
        path: netns.to_path_buf(),
        source,
    })?;
    let pin = netns.to_path_buf();
    let text = std::thread::Builder::new()
        .name("netns-stats".into())
        .spawn(move || -> Result<String, StatsError> {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|errno| {
                StatsError::Sys {
                    what: "setns",
                    path: pin,
                    errno,
                }
            })?;
            let dev = Path::new("/proc/thread-self/net/dev");
            std::fs::read_to_string(dev).map_err(|source| StatsError::Read {
                path: dev.to_path_buf(),
                source,
            })
        })
        .map_err(|e| StatsError::Thread(e.to_string()))?
        .join()
        .map_err(|_| StatsError::Thread("netns reader panicked".into()))??;
    parse(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1200      12    0    0    0     0          0         0     1200      12    0    0    0     0       0          0
  eth0: 98765     321    2    1    0     0          0         4    43210     123    3    0    0     0       0          0
veth1234567890abc:5 1 0 0 0 0 0 0 6 1 0 0 0 0 0 0
";

    #[test]
    fn parse_reads_bytes_and_errors_of_every_interface() {
        let c = parse(SAMPLE).expect("parse");
        assert_eq!(
            c,
            vec![
                Counters {
                    name: "lo".into(),
                    rx_bytes: 1200,
                    rx_errors: 0,
                    tx_bytes: 1200,
                    tx_errors: 0,
                    rx_packets: 12,
                    tx_packets: 12,
                    ..Default::default()
                },
                Counters {
                    name: "eth0".into(),
                    rx_bytes: 98765,
                    rx_errors: 2,
                    tx_bytes: 43210,
                    tx_errors: 3,
                    rx_packets: 321,
                    rx_dropped: 1,
                    tx_packets: 123,
                    ..Default::default()
                },
                Counters {
                    name: "veth1234567890abc".into(),
                    rx_bytes: 5,
                    rx_errors: 0,
                    tx_bytes: 6,
                    tx_errors: 0,
                    rx_packets: 1,
                    tx_packets: 1,
                    ..Default::default()
                },
            ]
        );
    }

    #[test]
    fn parse_rejects_garbage() {
        let head = "h1\nh2\n";
        assert!(parse(&format!("{head}eth0 1 2 3\n")).is_err());
        assert!(parse(&format!("{head}eth0: 1 2 x 4 5 6 7 8 9 10 11\n")).is_err());
        assert!(parse(&format!("{head}eth0: 1 2 3\n")).is_err());
        assert_eq!(parse(head).expect("empty"), vec![]);
    }

    #[test]
    fn usage_skips_loopback_and_defaults_to_eth0() {
        let c = parse(SAMPLE).expect("parse");
        let u = usage(&c, 42);
        assert_eq!(u.timestamp, 42);
        let names: Vec<&str> = u.interfaces.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["eth0", "veth1234567890abc"]);
        let d = u.default_interface.expect("default");
        assert_eq!(d.name, "eth0");
        assert_eq!(d.rx_bytes, Some(cri::UInt64Value { value: 98765 }));
        assert_eq!(d.tx_errors, Some(cri::UInt64Value { value: 3 }));
    }

    #[test]
    fn usage_defaults_to_the_first_interface_without_eth0() {
        let c = vec![
            Counters {
                name: "lo".into(),
                ..Default::default()
            },
            Counters {
                name: "net1".into(),
                rx_bytes: 7,
                ..Default::default()
            },
        ];
        let u = usage(&c, 1);
        assert_eq!(u.default_interface.expect("default").name, "net1");
        let only_lo = usage(&c[..1], 1);
        assert!(only_lo.interfaces.is_empty() && only_lo.default_interface.is_none());
    }
}
