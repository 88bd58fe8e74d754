//! Pure translations of OCI resource values into cgroup file values, shared
//! by the v1 and v2 writers and unit-tested without a kernel.

use oci_spec::runtime::{LinuxBlockIo, LinuxThrottleDevice};

use crate::error::Error;

/// cpu.shares bounds the kernel enforces on v1 (and that the v2 mapping assumes).
const MIN_SHARES: u64 = 2;
const MAX_SHARES: u64 = 262_144;

/// Maps v1 cpu.shares (2..=262144) onto v2 cpu.weight (1..=10000) linearly,
/// the formula runc and crun use, so one OCI spec yields the same weight
/// whichever runtime runs it. Out-of-range shares are clamped first.
pub fn shares_to_weight(shares: u64) -> u64 {
    let s = shares.clamp(MIN_SHARES, MAX_SHARES);
    1 + ((s - MIN_SHARES) * 9999) / (MAX_SHARES - MIN_SHARES)
}

/// Maps a v1 blkio weight (10..=1000) onto v2 io.weight (1..=10000), as runc
/// does when BFQ is not available. Out-of-range weights are clamped.
pub fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    let w = u64::from(weight).clamp(10, 1000);
    1 + (w - 10) * 9999 / 990
}

/// Computes the memory.swap.max value for cgroup v2 from the OCI values,
/// where OCI `swap` means memory+swap (v1 semantics) and v2 limits swap alone.
///
/// `None` means "leave memory.swap.max alone". Like runc: zero is "unset",
/// -1 is "max", and an unlimited memory limit with no swap value asks for
/// unlimited swap too.
pub fn swap_v2(limit: Option<i64>, swap: Option<i64>) -> Result<Option<String>, Error> {
    let limit = limit.filter(|&l| l != 0);
    let swap = swap.filter(|&s| s != 0);
    match (limit, swap) {
        (Some(-1), None) => Ok(Some("max".into())),
        (_, None) => Ok(None),
        (_, Some(-1)) => Ok(Some("max".into())),
        (_, Some(s)) if s < 0 => Err(Error::InvalidResources(format!(
            "memory.swap {s} is negative (only -1, meaning unlimited, is allowed)"
        ))),
        (None | Some(-1), Some(_)) => Err(Error::InvalidResources(
            "memory.swap needs a memory.limit: on cgroup v2 swap is limited as swap minus limit"
                .into(),
        )),
        (Some(l), Some(_)) if l < 0 => Err(Error::InvalidResources(format!(
            "memory.limit {l} is negative (only -1, meaning unlimited, is allowed)"
        ))),
        (Some(l), Some(s)) if s < l => Err(Error::InvalidResources(format!(
            "memory.swap {s} (memory+swap) is below memory.limit {l}"
        ))),
        (Some(l), Some(s)) => Ok(Some((s - l).to_string())),
    }
}

/// A byte/count limit for a v2 file: negative means "max".
pub(crate) fn v2_limit(v: i64) -> String {
    if v < 0 {
        "max".into()
    } else {
        v.to_string()
    }
}

/// One io.max line per device, merging the four OCI throttle lists so a
/// device with both read and write limits gets a single
/// `MAJ:MIN rbps=.. wbps=.. riops=.. wiops=..` line. A rate of 0 means "no
/// limit" in OCI (as on v1, where 0 removes the rule) and becomes `max`.
pub fn io_max_lines(b: &LinuxBlockIo) -> Vec<String> {
    let lists: [(&str, &Option<Vec<LinuxThrottleDevice>>); 4] = [
        ("rbps", b.throttle_read_bps_device()),
        ("wbps", b.throttle_write_bps_device()),
        ("riops", b.throttle_read_iops_device()),
        ("wiops", b.throttle_write_iops_device()),
    ];
    // (major, minor, [rbps, wbps, riops, wiops]) in first-seen order.
    let mut devices: Vec<(i64, i64, [Option<u64>; 4])> = Vec::new();
    for (idx, (_, list)) in lists.iter().enumerate() {
        for d in list.iter().flatten() {
            let pos = match devices
                .iter()
                .position(|(ma, mi, _)| *ma == d.major() && *mi == d.minor())
            {
                Some(p) => p,
                None => {
                    devices.push((d.major(), d.minor(), [None; 4]));
                    devices.len() - 1
                }
            };
            devices[pos].2[idx] = Some(d.rate());
        }
    }
    devices
        .into_iter()
        .map(|(major, minor, rates)| {
            let mut line = format!("{major}:{minor}");
            for (idx, rate) in rates.iter().enumerate() {
                if let Some(r) = rate {
                    let v = if *r == 0 {
                        "max".to_string()
                    } else {
                        r.to_string()
                    };
                    line.push_str(&format!(" {}={v}", lists[idx].0));
                }
            }
            line
        })
        .collect()
}

/// Checks an OCI hugepage size ("2MB", "1GB", "64KB") before it becomes part
/// of a file name such as `hugetlb.2MB.limit_in_bytes`.
pub(crate) fn check_page_size(size: &str) -> Result<(), Error> {
    let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &size[digits.len()..];
    let ok = !digits.is_empty()
        && digits.bytes().all(|c| c.is_ascii_digit())
        && ["KB", "MB", "GB", "TB", "PB"].contains(&unit);
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidResources(format!(
            "hugepage size {size:?} is not of the form <number>KB|MB|GB"
        )))
    }
}

/// Checks a `linux.resources.unified` key: it must be a plain file name
/// inside the cgroup directory.
pub(crate) fn check_unified_key(key: &str) -> Result<(), Error> {
    if key.is_empty() || key.contains('/') || key.contains('\0') || key.contains("..") {
        return Err(Error::InvalidResources(format!(
            "unified key {key:?} must be a file name in the cgroup directory (no '/' or '..')"
        )));
    }
    if matches!(key, "cgroup.procs" | "cgroup.threads" | "cgroup.kill") {
        return Err(Error::InvalidResources(format!(
            "unified key {key:?} is not a resource setting"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxBlockIoBuilder, LinuxThrottleDeviceBuilder};

    #[test]
    fn shares_to_weight_matches_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        // Clamped rather than wrapping around.
        assert_eq!(shares_to_weight(0), 1);
        assert_eq!(shares_to_weight(1), 1);
        assert_eq!(shares_to_weight(1 << 40), 10_000);
    }

    #[test]
    fn blkio_weight_maps_onto_io_weight_range() {
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
        assert_eq!(blkio_weight_to_io_weight(500), 1 + 490 * 9999 / 990);
        assert_eq!(blkio_weight_to_io_weight(1), 1);
    }

    #[test]
    fn swap_is_converted_from_memory_plus_swap() {
        assert_eq!(
            swap_v2(Some(100), Some(300)).unwrap().as_deref(),
            Some("200")
        );
        assert_eq!(swap_v2(Some(100), Some(100)).unwrap().as_deref(), Some("0"));
        assert_eq!(
            swap_v2(Some(100), Some(-1)).unwrap().as_deref(),
            Some("max")
        );
        assert_eq!(swap_v2(Some(-1), None).unwrap().as_deref(), Some("max"));
        assert_eq!(swap_v2(Some(100), None).unwrap(), None);
        assert_eq!(swap_v2(None, None).unwrap(), None);
        assert_eq!(swap_v2(Some(100), Some(0)).unwrap(), None);
        assert!(swap_v2(Some(100), Some(50)).is_err());
        assert!(swap_v2(None, Some(50)).is_err());
        assert!(swap_v2(Some(-1), Some(50)).is_err());
        assert!(swap_v2(Some(100), Some(-5)).is_err());
    }

    fn throttle(major: i64, minor: i64, rate: u64) -> LinuxThrottleDevice {
        LinuxThrottleDeviceBuilder::default()
            .major(major)
            .minor(minor)
            .rate(rate)
            .build()
            .unwrap()
    }

    #[test]
    fn io_max_merges_limits_per_device() {
        let b = LinuxBlockIoBuilder::default()
            .throttle_read_bps_device(vec![throttle(8, 0, 1000), throttle(8, 16, 0)])
            .throttle_write_bps_device(vec![throttle(8, 0, 2000)])
            .throttle_read_iops_device(vec![throttle(8, 16, 30)])
            .throttle_write_iops_device(vec![throttle(8, 0, 40)])
            .build()
            .unwrap();
        assert_eq!(
            io_max_lines(&b),
            vec![
                "8:0 rbps=1000 wbps=2000 wiops=40".to_string(),
                "8:16 rbps=max riops=30".to_string(),
            ]
        );
        assert!(io_max_lines(&LinuxBlockIo::default()).is_empty());
    }

    #[test]
    fn page_sizes_are_checked() {
        for ok in ["2MB", "1GB", "64KB"] {
            check_page_size(ok).unwrap();
        }
        for bad in ["", "MB", "2", "2mb", "../2MB", "2MB/x", "2 MB"] {
            assert!(check_page_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unified_keys_must_be_plain_file_names() {
        check_unified_key("memory.high").unwrap();
        for bad in ["", "../memory.max", "a/b", "..", "cgroup.procs"] {
            assert!(check_unified_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn v2_limits_use_max_for_negative() {
        assert_eq!(v2_limit(-1), "max");
        assert_eq!(v2_limit(0), "0");
        assert_eq!(v2_limit(4096), "4096");
    }
}
