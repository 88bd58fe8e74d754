//! Manager tests against a temporary directory laid out like cgroupfs: the
//! spec → file writes translation, without a kernel. Files the kernel would
//! provide are created up front; writes to a missing file fail, as they do
//! on cgroupfs. The order of writes is checked through `fs::take_writes`.

use std::collections::HashMap;
use std::fs as stdfs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxHugepageLimitBuilder, LinuxMemoryBuilder,
    LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder, LinuxThrottleDeviceBuilder,
    LinuxWeightDeviceBuilder,
};
use tempfile::TempDir;

use crate::devices::tests::default_rules;
use crate::fs::take_writes;
use crate::{Error, Hierarchy, Manager};

const LEAF: &str = "/pod/ctr";

/// Creates `root/<dir>/<file>` with `content`, making directories as needed.
fn put(root: &Path, rel: &str, content: &str) -> PathBuf {
    let p = root.join(rel);
    if let Some(parent) = p.parent() {
        stdfs::create_dir_all(parent).unwrap();
    }
    stdfs::write(&p, content).unwrap();
    p
}

fn get(root: &Path, rel: &str) -> String {
    stdfs::read_to_string(root.join(rel)).unwrap()
}

/// Writes recorded since the last call, as (path relative to root, value).
fn writes(root: &Path) -> Vec<(String, String)> {
    take_writes()
        .into_iter()
        .map(|(p, v)| {
            (
                p.strip_prefix(root)
                    .unwrap_or(&p)
                    .to_string_lossy()
                    .into_owned(),
                v,
            )
        })
        .collect()
}

/// A v1 tree with the controllers of this project's CI host, cpu,cpuacct
/// co-mounted, and the files the tests write to already present in the leaf.
fn v1_tree() -> (TempDir, Manager) {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    for (ctl, files) in [
        (
            "memory",
            &[
                "memory.limit_in_bytes",
                "memory.memsw.limit_in_bytes",
                "memory.soft_limit_in_bytes",
                "memory.swappiness",
                "memory.oom_control",
                "memory.usage_in_bytes",
            ][..],
        ),
        (
            "cpu,cpuacct",
            &[
                "cpu.shares",
                "cpu.cfs_period_us",
                "cpu.cfs_quota_us",
                "cpu.cfs_burst_us",
                "cpu.rt_period_us",
                "cpu.rt_runtime_us",
                "cpu.idle",
            ][..],
        ),
        ("cpuset", &["cpuset.cpus", "cpuset.mems"][..]),
        ("pids", &["pids.max"][..]),
        ("freezer", &["freezer.state"][..]),
        (
            "devices",
            &["devices.allow", "devices.deny", "devices.list"][..],
        ),
        (
            "blkio",
            &[
                "blkio.bfq.weight",
                "blkio.bfq.weight_device",
                "blkio.leaf_weight",
                "blkio.throttle.read_bps_device",
                "blkio.throttle.write_bps_device",
                "blkio.throttle.read_iops_device",
                "blkio.throttle.write_iops_device",
            ][..],
        ),
        ("hugetlb", &["hugetlb.2MB.limit_in_bytes"][..]),
        ("systemd", &[][..]),
    ] {
        stdfs::create_dir_all(r.join(ctl).join("pod/ctr")).unwrap();
        for f in files {
            put(r, &format!("{ctl}/pod/ctr/{f}"), "");
        }
    }
    put(
        r,
        "memory/pod/ctr/memory.limit_in_bytes",
        "9223372036854771712\n",
    );
    put(
        r,
        "memory/pod/ctr/memory.memsw.limit_in_bytes",
        "9223372036854771712\n",
    );
    put(r, "devices/pod/ctr/devices.list", "a *:* rwm\n");
    put(r, "cpuset/cpuset.cpus", "0-3\n");
    put(r, "cpuset/cpuset.mems", "0\n");
    put(r, "cpuset/pod/cpuset.cpus", "");
    put(r, "cpuset/pod/cpuset.mems", "");
    let m = Manager::with_root(r, Hierarchy::V1, Some(LEAF), "ctr").unwrap();
    take_writes();
    (t, m)
}

/// A v2 tree whose root offers (and whose leaf has) the usual controllers.
fn v2_tree() -> (TempDir, Manager) {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    put(
        r,
        "cgroup.controllers",
        "cpuset cpu io memory hugetlb pids rdma\n",
    );
    put(r, "cgroup.subtree_control", "");
    put(
        r,
        "pod/cgroup.controllers",
        "cpuset cpu io memory hugetlb pids rdma\n",
    );
    put(r, "pod/cgroup.subtree_control", "cpu memory\n");
    for f in [
        "cgroup.controllers",
        "memory.max",
        "memory.swap.max",
        "memory.low",
        "memory.current",
        "cpu.weight",
        "cpu.max",
        "cpu.max.burst",
        "cpu.idle",
        "cpuset.cpus",
        "cpuset.mems",
        "pids.max",
        "io.weight",
        "io.max",
        "hugetlb.2MB.max",
        "memory.high",
    ] {
        put(r, &format!("pod/ctr/{f}"), "");
    }
    put(
        r,
        "pod/ctr/cgroup.controllers",
        "cpuset cpu io memory hugetlb pids\n",
    );
    let m = Manager::with_root(r, Hierarchy::V2, Some(LEAF), "ctr").unwrap();
    take_writes();
    (t, m)
}

fn memory(limit: Option<i64>, swap: Option<i64>) -> LinuxResources {
    let mut b = LinuxMemoryBuilder::default();
    if let Some(l) = limit {
        b = b.limit(l);
    }
    if let Some(s) = swap {
        b = b.swap(s);
    }
    LinuxResourcesBuilder::default()
        .memory(b.build().unwrap())
        .build()
        .unwrap()
}

fn w(file: &str, value: &str) -> (String, String) {
    (file.to_string(), value.to_string())
}

#[test]
fn manager_reports_paths_per_controller() {
    let (t, m) = v1_tree();
    let r = t.path();
    assert_eq!(m.relative_path(), "/pod/ctr");
    assert_eq!(m.hierarchy(), Hierarchy::V1);
    assert_eq!(m.path_for("cpuacct"), Some(r.join("cpu,cpuacct/pod/ctr")));
    assert_eq!(m.path_for("cpu"), Some(r.join("cpu,cpuacct/pod/ctr")));
    assert_eq!(m.path_for("systemd"), Some(r.join("systemd/pod/ctr")));
    assert_eq!(m.path_for("name=systemd"), Some(r.join("systemd/pod/ctr")));
    assert_eq!(m.path_for("net_cls"), None);
    let (t2, m2) = v2_tree();
    assert_eq!(m2.path_for("memory"), Some(t2.path().join("pod/ctr")));
    assert_eq!(m2.path_for("whatever"), Some(t2.path().join("pod/ctr")));
}

#[test]
fn new_is_cheap_and_defaults_to_carapace_parent() {
    let t = tempfile::tempdir().unwrap();
    let m = Manager::with_root(t.path(), Hierarchy::V2, None, "abc").unwrap();
    assert_eq!(m.relative_path(), "/carapace/abc");
    assert!(!m.exists());
    assert_eq!(stdfs::read_dir(t.path()).unwrap().count(), 0);
}

#[test]
fn systemd_driver_needs_systemd() {
    let r = Manager::new(None, "abc", true);
    if Path::new("/run/systemd/system").is_dir() {
        let m = r.unwrap();
        assert_eq!(m.unit_name(), Some("carapace-abc.scope"));
        assert_eq!(m.relative_path(), "/system.slice/carapace-abc.scope");
    } else {
        let err = r.unwrap_err();
        assert!(matches!(err, Error::SystemdNotRunning), "{err}");
        assert_eq!(
            err.to_string(),
            "systemd cgroup driver requested but systemd is not running (no /run/systemd/system)"
        );
    }
}

#[test]
fn v1_create_copies_cpuset_from_parent_into_new_levels() {
    let (t, m) = v1_tree();
    let r = t.path();
    m.create().unwrap();
    assert_eq!(get(r, "cpuset/pod/cpuset.cpus"), "0-3");
    assert_eq!(get(r, "cpuset/pod/ctr/cpuset.cpus"), "0-3");
    assert_eq!(get(r, "cpuset/pod/ctr/cpuset.mems"), "0");
    // Idempotent: a second create writes nothing.
    take_writes();
    m.create().unwrap();
    assert!(writes(r).is_empty());
}

#[test]
fn v1_memory_growing_swap_is_written_before_limit() {
    let (t, m) = v1_tree();
    let r = t.path();
    put(r, "memory/pod/ctr/memory.limit_in_bytes", "1000\n");
    m.apply(&memory(Some(4000), Some(8000))).unwrap();
    assert_eq!(
        writes(r),
        vec![
            w("memory/pod/ctr/memory.memsw.limit_in_bytes", "8000"),
            w("memory/pod/ctr/memory.limit_in_bytes", "4000"),
        ]
    );
}

#[test]
fn v1_memory_shrinking_limit_is_written_before_swap() {
    let (t, m) = v1_tree();
    let r = t.path();
    put(r, "memory/pod/ctr/memory.limit_in_bytes", "4000\n");
    m.apply(&memory(Some(1000), Some(1000))).unwrap();
    assert_eq!(
        writes(r),
        vec![
            w("memory/pod/ctr/memory.limit_in_bytes", "1000"),
            w("memory/pod/ctr/memory.memsw.limit_in_bytes", "1000"),
        ]
    );
}

#[test]
fn v1_unlimited_memory_also_unlimits_swap() {
    let (t, m) = v1_tree();
    let r = t.path();
    m.apply(&memory(Some(-1), None)).unwrap();
    assert_eq!(
        writes(r),
        vec![
            w("memory/pod/ctr/memory.memsw.limit_in_bytes", "-1"),
            w("memory/pod/ctr/memory.limit_in_bytes", "-1"),
        ]
    );
}

#[test]
fn v1_swap_without_swap_accounting_only_fails_when_it_matters() {
    let (t, m) = v1_tree();
    let r = t.path();
    stdfs::remove_file(r.join("memory/pod/ctr/memory.memsw.limit_in_bytes")).unwrap();
    m.apply(&memory(Some(1000), Some(1000))).unwrap();
    assert_eq!(
        writes(r),
        vec![w("memory/pod/ctr/memory.limit_in_bytes", "1000")]
    );
    let err = m.apply(&memory(Some(1000), Some(3000))).unwrap_err();
    assert!(err.to_string().contains("swap accounting"), "{err}");
}

#[test]
fn v1_memory_extras_are_written() {
    let (t, m) = v1_tree();
    let r = t.path();
    let res = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .reservation(512i64)
                .swappiness(10u64)
                .disable_oom_killer(true)
                .kernel(1i64)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    m.apply(&res).unwrap();
    assert_eq!(
        writes(r),
        vec![
            w("memory/pod/ctr/memory.soft_limit_in_bytes", "512"),
            w("memory/pod/ctr/memory.swappiness", "10"),
            w("memory/pod/ctr/memory.oom_control", "1"),
        ]
    );
    let bad = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .swappiness(101u64)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    assert!(m.apply(&bad).is_err());
    assert!(writes(r).is_empty());
}

#[test]
fn v1_cpu_writes_period_before_quota() {
    let (t, m) = v1_tree();
    let r = t.path();
    let res = LinuxResourcesBuilder::default()
        .cpu(
            LinuxCpuBuilder::default()
                .shares(512u64)
                .quota(50_000i64)
                .period(100_000u64)
                .cpus("0-1")
                .mems("0")
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    m.apply(&res).unwrap();
    assert_eq!(
        writes(r),
        vec![
            w("cpuset/pod/ctr/cpuset.cpus", "0-1"),
            w("cpuset/pod/ctr/cpuset.mems", "0"),
            w("cpu,cpuacct/pod/ctr/cpu.shares", "512"),
            w("cpu,cpuacct/pod/ctr/cpu.cfs_period_us", "100000"),
            w("cpu,cpuacct/pod/ctr/cpu.cfs_quota_us", "50000"),
        ]
    );
}

#[test]
fn v1_pids_limit_zero_or_negative_is_max() {
    let (t, m) = v1_tree();
    let r = t.path();
    for (limit, want) in [(10, "10"), (0, "max"), (-1, "max")] {
        let res = LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(limit).build().unwrap())
            .build()
            .unwrap();
        m.apply(&res).unwrap();
        assert_eq!(get(r, "pids/pod/ctr/pids.max"), want);
    }
}

#[test]
fn v1_blkio_falls_back_to_bfq_files_and_writes_throttles() {
    let (t, m) = v1_tree();
    let r = t.path();
    let dev = |major: i64, minor: i64, rate: u64| {
        LinuxThrottleDeviceBuilder::default()
            .major(major)
            .minor(minor)
            .rate(rate)
            .build()
            .unwrap()
    };
    let res = LinuxResourcesBuilder::default()
        .block_io(
            LinuxBlockIoBuilder::default()
                .weight(300u16)
                .weight_device(vec![LinuxWeightDeviceBuilder::default()
                    .major(8)
                    .minor(0)
                    .weight(200u16)
                    .build()
                    .unwrap()])
                .throttle_read_bps_device(vec![dev(8, 0, 1000), dev(8, 16, 2000)])
                .throttle_write_iops_device(vec![dev(8, 0, 30)])
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    m.apply(&res).unwrap();
    assert_eq!(
        writes(r),
        vec![
            w("blkio/pod/ctr/blkio.bfq.weight", "300"),
            w("blkio/pod/ctr/blkio.bfq.weight_device", "8:0 200"),
            w("blkio/pod/ctr/blkio.throttle.read_bps_device", "8:0 1000"),
            w("blkio/pod/ctr/blkio.throttle.read_bps_device", "8:16 2000"),
            w("blkio/pod/ctr/blkio.throttle.write_iops_device", "8:0 30"),
        ]
    );
}

#[test]
fn v1_hugetlb_uses_page_size_in_file_name() {
    let (t, m) = v1_tree();
    let r = t.path();
    let res = LinuxResourcesBuilder::default()
        .hugepage_limits(vec![LinuxHugepageLimitBuilder::default()
            .page_size("2MB")
            .limit(4_194_304i64)
            .build()
            .unwrap()])
        .build()
        .unwrap();
    m.apply(&res).unwrap();
    assert_eq!(
        get(r, "hugetlb/pod/ctr/hugetlb.2MB.limit_in_bytes"),
        "4194304"
    );
}

#[test]
fn v1_refuses_unified_before_writing_anything() {
    let (t, m) = v1_tree();
    let r = t.path();
    let res = LinuxResourcesBuilder::default()
        .pids(LinuxPidsBuilder::default().limit(5).build().unwrap())
        .unified(HashMap::from([(
            "memory.high".to_string(),
            "1".to_string(),
        )]))
        .build()
        .unwrap();
    let err = m.apply(&res).unwrap_err();
    assert!(err.to_string().contains("cgroup v2"), "{err}");
    assert!(writes(r).is_empty());
}

#[test]
fn v1_missing_controller_is_named() {
    let t = tempfile::tempdir().unwrap();
    stdfs::create_dir(t.path().join("memory")).unwrap();
    let m = Manager::with_root(t.path(), Hierarchy::V1, Some("/x"), "x").unwrap();
    let res = LinuxResourcesBuilder::default()
        .pids(LinuxPidsBuilder::default().limit(5).build().unwrap())
        .build()
        .unwrap();
    let err = m.apply(&res).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cgroup controller pids is not available; it is needed for linux.resources.pids"
    );
}

/// A network class ID or priority map without net_cls / net_prio fails,
/// naming the field, as every other controller does (runc refuses it too);
/// it was skipped before, and the container ran unclassified.
#[test]
fn v1_network_limits_without_their_controller_are_refused() {
    use oci_spec::runtime::{LinuxInterfacePriorityBuilder, LinuxNetworkBuilder};
    let t = tempfile::tempdir().unwrap();
    stdfs::create_dir(t.path().join("memory")).unwrap();
    let m = Manager::with_root(t.path(), Hierarchy::V1, Some("/x"), "x").unwrap();
    let classid = LinuxResourcesBuilder::default()
        .network(
            LinuxNetworkBuilder::default()
                .class_id(7u32)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    assert_eq!(
        m.apply(&classid).unwrap_err().to_string(),
        "cgroup controller net_cls is not available; it is needed for linux.resources.network.classID"
    );
    let prio = LinuxResourcesBuilder::default()
        .network(
            LinuxNetworkBuilder::default()
                .priorities(vec![LinuxInterfacePriorityBuilder::default()
                    .name("eth0")
                    .priority(3u32)
                    .build()
                    .unwrap()])
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let e = m.apply(&prio).unwrap_err().to_string();
    assert!(e.contains("net_prio") && e.contains("priorities"), "{e}");
}

#[test]
fn v1_devices_are_replayed_in_order_on_a_fresh_cgroup() {
    let (t, m) = v1_tree();
    let r = t.path();
    let res = LinuxResourcesBuilder::default()
        .devices(default_rules())
        .build()
        .unwrap();
    m.apply(&res).unwrap();
    let got = writes(r);
    assert_eq!(got[0], w("devices/pod/ctr/devices.deny", "a"));
    assert_eq!(got[1], w("devices/pod/ctr/devices.allow", "c *:* m"));
    assert_eq!(got[3], w("devices/pod/ctr/devices.allow", "c 1:3 rwm"));
    assert_eq!(got.len(), default_rules().len());
}

#[test]
fn v1_freeze_and_thaw_use_freezer_state() {
    let (t, m) = v1_tree();
    let r = t.path();
    m.freeze().unwrap();
    assert!(m.is_frozen().unwrap());
    m.thaw().unwrap();
    assert!(!m.is_frozen().unwrap());
    assert_eq!(get(r, "freezer/pod/ctr/freezer.state"), "THAWED");
}

#[test]
fn v1_oom_kill_count_reads_oom_control() {
    let (t, m) = v1_tree();
    put(
        t.path(),
        "memory/pod/ctr/memory.oom_control",
        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
    );
    assert_eq!(m.oom_kill_count().unwrap(), 2);
}

#[test]
fn pids_lists_descendants_too() {
    let (t, m) = v1_tree();
    let r = t.path();
    put(r, "pids/pod/ctr/cgroup.procs", "10\n11\n");
    put(r, "pids/pod/ctr/sub/cgroup.procs", "12\n10\n");
    assert_eq!(m.pids().unwrap(), vec![10, 11, 12]);
}

#[test]
fn destroy_removes_leaf_and_children_but_not_ancestors() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    for ctl in ["memory", "pids"] {
        stdfs::create_dir_all(r.join(ctl).join("pod/ctr/a/b")).unwrap();
        stdfs::create_dir_all(r.join(ctl).join("pod/ctr/c")).unwrap();
        stdfs::create_dir_all(r.join(ctl).join("pod/other")).unwrap();
    }
    let m = Manager::with_root(r, Hierarchy::V1, Some(LEAF), "ctr").unwrap();
    assert!(m.exists());
    m.destroy().unwrap();
    assert!(!m.exists());
    for ctl in ["memory", "pids"] {
        assert!(r.join(ctl).join("pod/other").is_dir());
        assert!(!r.join(ctl).join("pod/ctr").exists());
    }
    m.destroy().unwrap();
}

#[test]
fn v2_create_enables_controllers_in_ancestors() {
    let (t, m) = v2_tree();
    let r = t.path();
    m.create().unwrap();
    assert_eq!(
        writes(r),
        vec![
            w(
                "cgroup.subtree_control",
                "+cpuset +cpu +io +memory +hugetlb +pids +rdma"
            ),
            w(
                "pod/cgroup.subtree_control",
                "+cpuset +io +hugetlb +pids +rdma"
            ),
        ]
    );
}

#[test]
fn v2_memory_converts_swap_and_uses_max() {
    let (t, m) = v2_tree();
    let r = t.path();
    m.apply(&memory(Some(100), Some(300))).unwrap();
    assert_eq!(
        writes(r),
        vec![
            w("pod/ctr/memory.swap.max", "200"),
            w("pod/ctr/memory.max", "100"),
        ]
    );
    m.apply(&memory(Some(-1), None)).unwrap();
    assert_eq!(
        writes(r),
        vec![
            w("pod/ctr/memory.swap.max", "max"),
            w("pod/ctr/memory.max", "max"),
        ]
    );
    assert!(m.apply(&memory(Some(300), Some(100))).is_err());
    assert!(writes(r).is_empty());
}

#[test]
fn v2_swap_request_is_ignored_without_swap_controller_only_when_harmless() {
    let (t, m) = v2_tree();
    let r = t.path();
    stdfs::remove_file(r.join("pod/ctr/memory.swap.max")).unwrap();
    m.apply(&memory(Some(100), Some(100))).unwrap();
    assert_eq!(get(r, "pod/ctr/memory.max"), "100");
    assert!(m.apply(&memory(Some(100), Some(300))).is_err());
}

#[test]
fn v2_cpu_shares_become_weight_and_quota_cpu_max() {
    let (t, m) = v2_tree();
    let r = t.path();
    let res = LinuxResourcesBuilder::default()
        .cpu(
            LinuxCpuBuilder::default()
                .shares(1024u64)
                .quota(50_000i64)
                .period(100_000u64)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    m.apply(&res).unwrap();
    assert_eq!(get(r, "pod/ctr/cpu.weight"), "39");
    assert_eq!(get(r, "pod/ctr/cpu.max"), "50000 100000");
    let unlimited = LinuxResourcesBuilder::default()
        .cpu(
            LinuxCpuBuilder::default()
                .quota(-1i64)
                .period(100_000u64)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    m.apply(&unlimited).unwrap();
    assert_eq!(get(r, "pod/ctr/cpu.max"), "max 100000");
}

#[test]
fn v2_refuses_realtime_cpu() {
    let (_t, m) = v2_tree();
    let res = LinuxResourcesBuilder::default()
        .cpu(
            LinuxCpuBuilder::default()
                .realtime_runtime(1000i64)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    assert!(matches!(m.apply(&res), Err(Error::Unsupported(_))));
}

#[test]
fn v2_io_writes_weight_and_one_io_max_line_per_device() {
    let (t, m) = v2_tree();
    let r = t.path();
    let dev = |major: i64, minor: i64, rate: u64| {
        LinuxThrottleDeviceBuilder::default()
            .major(major)
            .minor(minor)
            .rate(rate)
            .build()
            .unwrap()
    };
    let res = LinuxResourcesBuilder::default()
        .block_io(
            LinuxBlockIoBuilder::default()
                .weight(1000u16)
                .throttle_read_bps_device(vec![dev(8, 0, 1000)])
                .throttle_write_bps_device(vec![dev(8, 0, 2000)])
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    m.apply(&res).unwrap();
    assert_eq!(
        writes(r),
        vec![
            w("pod/ctr/io.weight", "default 10000"),
            w("pod/ctr/io.max", "8:0 rbps=1000 wbps=2000"),
        ]
    );
}

#[test]
fn v2_hugetlb_pids_and_unified_are_written() {
    let (t, m) = v2_tree();
    let r = t.path();
    let res = LinuxResourcesBuilder::default()
        .pids(LinuxPidsBuilder::default().limit(-1).build().unwrap())
        .hugepage_limits(vec![LinuxHugepageLimitBuilder::default()
            .page_size("2MB")
            .limit(2_097_152i64)
            .build()
            .unwrap()])
        .unified(HashMap::from([(
            "memory.high".to_string(),
            "4096".to_string(),
        )]))
        .build()
        .unwrap();
    m.apply(&res).unwrap();
    assert_eq!(get(r, "pod/ctr/pids.max"), "max");
    assert_eq!(get(r, "pod/ctr/hugetlb.2MB.max"), "2097152");
    assert_eq!(get(r, "pod/ctr/memory.high"), "4096");
}

#[test]
fn v2_unified_key_escaping_the_cgroup_is_rejected() {
    let (t, m) = v2_tree();
    for key in ["../pids.max", "a/b", "cgroup.procs"] {
        let res = LinuxResourcesBuilder::default()
            .unified(HashMap::from([(key.to_string(), "1".to_string())]))
            .build()
            .unwrap();
        assert!(
            matches!(m.apply(&res), Err(Error::InvalidResources(_))),
            "{key}"
        );
    }
    assert!(writes(t.path()).is_empty());
}

#[test]
fn v2_controller_not_enabled_is_named() {
    let (_t, m) = v2_tree();
    let res = LinuxResourcesBuilder::default()
        .unified(HashMap::from([("rdma.max".to_string(), "x".to_string())]))
        .build()
        .unwrap();
    let err = m.apply(&res).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cgroup controller rdma is not available; it is needed for rdma.max"
    );
}

#[test]
fn write_errors_name_file_value_and_errno() {
    let (t, m) = v2_tree();
    stdfs::remove_file(t.path().join("pod/ctr/pids.max")).unwrap();
    let res = LinuxResourcesBuilder::default()
        .pids(LinuxPidsBuilder::default().limit(7).build().unwrap())
        .build()
        .unwrap();
    let err = m.apply(&res).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "write 7 to {}: ENOENT: No such file or directory",
            t.path().join("pod/ctr/pids.max").display()
        )
    );
}
