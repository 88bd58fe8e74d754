//! OCI `linux.resources` as systemd unit properties, for cgroup v2 (the
//! only hierarchy the driver supports).
//!
//! The limits are also written to the cgroup files directly (systemd does
//! not know every file), but systemd rewrites the files of the controllers
//! it manages from its own idea of the unit whenever it reloads or the unit
//! changes: a limit it was not told about would silently fall back to
//! "max" on the next `systemctl daemon-reload`. So every limit systemd has a
//! property for is passed as that property too, with runc's conversions.

use oci_spec::runtime::{LinuxCpu, LinuxResources};

use super::wire::Value;
use crate::convert::{blkio_weight_to_io_weight, shares_to_weight, swap_v2};
use crate::error::Error;

/// systemd's "infinity" for byte, count and time properties.
const INFINITY: u64 = u64::MAX;

/// The default CFS period when a quota comes without one (the kernel's).
const DEFAULT_PERIOD_US: u64 = 100_000;

/// The properties of every unit we create: accounting on, so systemd
/// enables the controllers on the way down from the root.
pub(crate) fn accounting() -> Vec<(String, Value)> {
    [
        "MemoryAccounting",
        "CPUAccounting",
        "TasksAccounting",
        "IOAccounting",
    ]
    .into_iter()
    .map(|p| (p.to_string(), Value::Bool(true)))
    .collect()
}

fn limit(v: i64) -> u64 {
    if v < 0 {
        INFINITY
    } else {
        v as u64
    }
}

fn prop(name: &str, v: Value) -> (String, Value) {
    (name.to_string(), v)
}

/// systemd's CPUQuotaPerSecUSec for a CFS quota and period. systemd keeps
/// quotas as whole percent of a CPU, so a fraction is rounded up to the
/// next 10 ms per second, as runc does, so the container gets at least the
/// quota it asked for after systemd rewrites cpu.max.
fn quota_per_sec(quota: i64, period: u64) -> u64 {
    if quota <= 0 {
        return INFINITY;
    }
    let per_sec = (quota as u64).saturating_mul(1_000_000) / period.max(1);
    per_sec.div_ceil(10_000).saturating_mul(10_000)
}

fn cpu_quota(props: &mut Vec<(String, Value)>, quota: Option<i64>, period: Option<u64>) {
    let quota = quota.filter(|&q| q != 0);
    let period = period.filter(|&p| p != 0);
    if quota.is_none() && period.is_none() {
        return;
    }
    let p = period.unwrap_or(DEFAULT_PERIOD_US);
    props.push(prop(
        "CPUQuotaPerSecUSec",
        Value::U64(quota_per_sec(quota.unwrap_or(-1), p)),
    ));
    if let Some(p) = period {
        props.push(prop("CPUQuotaPeriodUSec", Value::U64(p)));
    }
}

/// A cpuset list ("0-3,7") as the bitmask systemd's AllowedCPUs and
/// AllowedMemoryNodes take: byte i bit j is CPU (or node) 8i+j.
pub(crate) fn cpuset_bits(list: &str) -> Result<Vec<u8>, Error> {
    let bad = || Error::InvalidResources(format!("invalid cpuset list {list:?}"));
    let mut bits = Vec::new();
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part.trim(), part.trim()),
        };
        let lo: usize = lo.parse().map_err(|_| bad())?;
        let hi: usize = hi.parse().map_err(|_| bad())?;
        // The kernel's own ceiling for CPUs and memory nodes is far below.
        if lo > hi || hi >= 1 << 16 {
            return Err(bad());
        }
        if bits.len() <= hi / 8 {
            bits.resize(hi / 8 + 1, 0);
        }
        for i in lo..=hi {
            bits[i / 8] |= 1 << (i % 8);
        }
    }
    Ok(bits)
}

fn cpu(props: &mut Vec<(String, Value)>, c: &LinuxCpu) -> Result<(), Error> {
    if let Some(s) = c.shares().filter(|&v| v != 0) {
        props.push(prop("CPUWeight", Value::U64(shares_to_weight(s))));
    }
    cpu_quota(props, c.quota(), c.period());
    for (name, list) in [("AllowedCPUs", c.cpus()), ("AllowedMemoryNodes", c.mems())] {
        if let Some(l) = list.as_deref().filter(|l| !l.is_empty()) {
            props.push(prop(name, Value::Bytes(cpuset_bits(l)?)));
        }
    }
    Ok(())
}

/// A v2 file value as a systemd limit: "max" is infinity.
fn unified_limit(key: &str, v: &str) -> Result<u64, Error> {
    let v = v.trim();
    if v == "max" {
        return Ok(INFINITY);
    }
    v.parse().map_err(|_| {
        Error::InvalidResources(format!("unified {key}: {v:?} is not a number or max"))
    })
}

fn unified(props: &mut Vec<(String, Value)>, key: &str, v: &str) -> Result<(), Error> {
    let name = match key {
        "memory.min" => "MemoryMin",
        "memory.low" => "MemoryLow",
        "memory.high" => "MemoryHigh",
        "memory.max" => "MemoryMax",
        "memory.swap.max" => "MemorySwapMax",
        "pids.max" => "TasksMax",
        "cpu.weight" => "CPUWeight",
        "cpu.max" => {
            let mut it = v.split_whitespace();
            let quota = match it.next() {
                Some("max") | None => -1,
                Some(q) => q.parse().map_err(|_| {
                    Error::InvalidResources(format!("unified cpu.max: bad quota in {v:?}"))
                })?,
            };
            let period = it
                .next()
                .map(|p| {
                    p.parse().map_err(|_| {
                        Error::InvalidResources(format!("unified cpu.max: bad period in {v:?}"))
                    })
                })
                .transpose()?;
            cpu_quota(props, Some(quota), period);
            return Ok(());
        }
        "cpuset.cpus" => {
            props.push(prop("AllowedCPUs", Value::Bytes(cpuset_bits(v)?)));
            return Ok(());
        }
        "cpuset.mems" => {
            props.push(prop("AllowedMemoryNodes", Value::Bytes(cpuset_bits(v)?)));
            return Ok(());
        }
        // Files systemd does not manage: written to the cgroup only.
        _ => return Ok(()),
    };
    props.push(prop(name, Value::U64(unified_limit(key, v)?)));
    Ok(())
}

/// The unit properties for `r`: only what is set, so an update that sets
/// one limit leaves systemd's others as they were.
pub(crate) fn resources(r: &LinuxResources) -> Result<Vec<(String, Value)>, Error> {
    let mut props = Vec::new();
    if let Some(m) = r.memory() {
        if let Some(l) = m.limit().filter(|&l| l != 0) {
            props.push(prop("MemoryMax", Value::U64(limit(l))));
        }
        if let Some(swap) = swap_v2(m.limit(), m.swap())? {
            let v = if swap == "max" {
                INFINITY
            } else {
                swap.parse().map_err(|_| {
                    Error::InvalidResources(format!("memory swap {swap:?} is not a number"))
                })?
            };
            props.push(prop("MemorySwapMax", Value::U64(v)));
        }
        if let Some(res) = m.reservation() {
            props.push(prop("MemoryLow", Value::U64(limit(res))));
        }
    }
    if let Some(c) = r.cpu() {
        cpu(&mut props, c)?;
    }
    if let Some(p) = r.pids() {
        let max = if p.limit() > 0 { p.limit() } else { -1 };
        props.push(prop("TasksMax", Value::U64(limit(max))));
    }
    if let Some(w) = r.block_io().as_ref().and_then(|b| b.weight()) {
        props.push(prop("IOWeight", Value::U64(blkio_weight_to_io_weight(w))));
    }
    if let Some(u) = r.unified() {
        let mut entries: Vec<_> = u.iter().collect();
        entries.sort();
        for (k, v) in entries {
            unified(&mut props, k, v)?;
        }
    }
    Ok(props)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder,
    };

    fn find<'a>(p: &'a [(String, Value)], name: &str) -> Option<&'a Value> {
        p.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    #[test]
    fn cpuset_lists_become_little_endian_bitmasks() {
        assert_eq!(cpuset_bits("0").expect("ok"), vec![0b1]);
        assert_eq!(cpuset_bits("0-2,5").expect("ok"), vec![0b10_0111]);
        assert_eq!(cpuset_bits("9").expect("ok"), vec![0, 0b10]);
        assert_eq!(cpuset_bits("").expect("ok"), Vec::<u8>::new());
        for bad in ["a", "3-1", "1-", "99999"] {
            assert!(cpuset_bits(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn quotas_round_up_to_whole_percent() {
        assert_eq!(quota_per_sec(50_000, 100_000), 500_000);
        assert_eq!(quota_per_sec(12_345, 100_000), 130_000);
        assert_eq!(quota_per_sec(-1, 100_000), INFINITY);
    }

    #[test]
    fn v2_resources_map_to_v2_properties() {
        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(64 << 20)
                    .swap(128 << 20)
                    .build()
                    .expect("memory"),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(1024u64)
                    .quota(50_000i64)
                    .period(100_000u64)
                    .cpus("0-1")
                    .build()
                    .expect("cpu"),
            )
            .pids(
                LinuxPidsBuilder::default()
                    .limit(100)
                    .build()
                    .expect("pids"),
            )
            .build()
            .expect("resources");
        let p = resources(&r).expect("props");
        assert_eq!(find(&p, "MemoryMax"), Some(&Value::U64(64 << 20)));
        assert_eq!(find(&p, "MemorySwapMax"), Some(&Value::U64(64 << 20)));
        assert_eq!(
            find(&p, "CPUWeight"),
            Some(&Value::U64(shares_to_weight(1024)))
        );
        assert_eq!(find(&p, "CPUQuotaPerSecUSec"), Some(&Value::U64(500_000)));
        assert_eq!(find(&p, "CPUQuotaPeriodUSec"), Some(&Value::U64(100_000)));
        assert_eq!(find(&p, "AllowedCPUs"), Some(&Value::Bytes(vec![0b11])));
        assert_eq!(find(&p, "TasksMax"), Some(&Value::U64(100)));
    }

    #[test]
    fn unified_keys_systemd_manages_become_properties() {
        let r = LinuxResourcesBuilder::default()
            .unified(
                [
                    ("memory.high".to_string(), "max".to_string()),
                    ("cpu.max".to_string(), "25000 50000".to_string()),
                    ("io.bfq.weight".to_string(), "10".to_string()),
                ]
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
            )
            .build()
            .expect("resources");
        let p = resources(&r).expect("props");
        assert_eq!(find(&p, "MemoryHigh"), Some(&Value::U64(INFINITY)));
        assert_eq!(find(&p, "CPUQuotaPerSecUSec"), Some(&Value::U64(500_000)));
        assert_eq!(find(&p, "CPUQuotaPeriodUSec"), Some(&Value::U64(50_000)));
        assert_eq!(p.len(), 3);
        let bad = LinuxResourcesBuilder::default()
            .unified(
                [("memory.max".to_string(), "lots".to_string())]
                    .into_iter()
                    .collect::<std::collections::HashMap<_, _>>(),
            )
            .build()
            .expect("resources");
        assert!(resources(&bad).is_err());
    }
}
