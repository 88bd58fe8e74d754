//! A pod's network metrics: bytes, packets, drops and errors of every
//! interface but `lo`, one sample per interface (label `interface`).
//!
//! Read as the stats calls read them ([`crate::stats::netdev`]): from
//! `/proc/thread-self/net/dev` by a short-lived thread inside the pod's
//! pinned network namespace.

use k8s_cri::v1 as cri;

pub use crate::stats::netdev::{read_in, Counters};

use super::descriptors as d;
use super::labels::BaseLabels;

/// The loopback interface, which carries no pod traffic.
const LOOPBACK: &str = "lo";

/// The samples of `counters` (every interface but `lo`), labelled `base`
/// plus the interface name, taken at `timestamp` (ns).
pub fn from_counters(counters: &[Counters], base: &BaseLabels, timestamp: i64) -> Vec<cri::Metric> {
    let mut out = Vec::new();
    for c in counters.iter().filter(|c| c.name != LOOPBACK) {
        let iface = [c.name.as_str()];
        for (desc, value) in [
            (&d::NET_RX_BYTES, c.rx_bytes),
            (&d::NET_RX_PACKETS, c.rx_packets),
            (&d::NET_RX_DROPPED, c.rx_dropped),
            (&d::NET_RX_ERRORS, c.rx_errors),
            (&d::NET_TX_BYTES, c.tx_bytes),
            (&d::NET_TX_PACKETS, c.tx_packets),
            (&d::NET_TX_DROPPED, c.tx_dropped),
            (&d::NET_TX_ERRORS, c.tx_errors),
        ] {
            out.push(desc.sample(base, &iface, value, timestamp));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::netdev::parse;

    const SAMPLE: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1200      12    0    0    0     0          0         0     1200      12    0    0    0     0       0          0
  eth0: 98765     321    2    1    0     0          0         4    43210     123    3    5    0     0       0          0
";

    #[test]
    fn parse_reads_packets_and_drops_too() {
        let c = parse(SAMPLE).expect("parse");
        assert_eq!(c.len(), 2);
        assert_eq!(
            c[1],
            Counters {
                name: "eth0".into(),
                rx_bytes: 98765,
                rx_packets: 321,
                rx_errors: 2,
                rx_dropped: 1,
                tx_bytes: 43210,
                tx_packets: 123,
                tx_errors: 3,
                tx_dropped: 5,
            }
        );
        assert!(parse("h\nh\neth0: 1 2 3\n").is_err());
        assert!(parse("h\nh\neth0 1 2 3 4 5 6 7 8 9 10 11 12\n").is_err());
    }

    #[test]
    fn samples_skip_loopback_and_name_the_interface() {
        let c = parse(SAMPLE).expect("parse");
        let base = BaseLabels::pod("pod1", "ns", "web");
        let ms = from_counters(&c, &base, 9);
        assert_eq!(ms.len(), 8, "eight counters of eth0 only: {ms:?}");
        let rx = ms
            .iter()
            .find(|m| m.name == "container_network_receive_packets_total")
            .expect("rx packets");
        assert_eq!(rx.value, Some(cri::UInt64Value { value: 321 }));
        assert_eq!(rx.label_values, ["pod1", "", "ns", "web", "POD", "eth0"]);
        let tx = ms
            .iter()
            .find(|m| m.name == "container_network_transmit_errors_total")
            .expect("tx errors");
        assert_eq!(tx.value, Some(cri::UInt64Value { value: 3 }));
    }
}
