//! Kernel tests of `Manager::stats`: a busybox process that uses memory and
//! CPU in a cgroup with memory and pids limits, read back through the host's
//! hierarchy (v1 here, v2 in the VM lane) and through the cgroup2 mount.
//! Needs root.

mod common;

use std::path::Path;
use std::time::Duration;

use carapace_cgroups::{Error, Hierarchy, Stats};
use common::{eventually, read, TestCgroup};
use oci_spec::runtime::{LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder};

const MIB: i64 = 1024 * 1024;
const MEMORY_LIMIT: i64 = 64 * MIB;
const PIDS_LIMIT: i64 = 32;

/// Holds ~4 MB in a shell variable, spins a while, then says so and sleeps
/// (so the process is still there when the stats are read). Something must
/// follow the sleep: ash execs the last command of `-c` in place of itself,
/// which would drop the variable.
fn busy_script(ready: &Path) -> String {
    format!(
        "x=$(head -c 4000000 /dev/zero | tr '\\0' a); \
         i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; \
         sleep 1000 & echo ${{#x}} > {}; wait $!; echo ${{#x}}",
        ready.display()
    )
}

/// Starts the busy script in `t`'s cgroup and waits until it has done its work.
fn run_busy(t: &mut TestCgroup) {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    t.run_in_cgroup(&busy_script(&ready));
    assert!(
        eventually(Duration::from_secs(30), || ready.exists()
            && std::fs::read_to_string(&ready)
                .is_ok_and(|s| s.trim() == "4000000")),
        "busy child never got ready"
    );
}

fn assert_running_busy_process(s: &Stats) {
    assert!(s.cpu.usage_ns.is_some_and(|u| u > 0), "{:?}", s.cpu);
    // Split by tick sampling on v1, so only their presence is certain.
    assert!(s.cpu.user_ns.is_some(), "{:?}", s.cpu);
    assert!(s.cpu.system_ns.is_some(), "{:?}", s.cpu);

    let m = &s.memory;
    let usage = m.usage.expect("memory usage");
    assert!(usage > 4_000_000, "{m:?}");
    assert!(m.rss.is_some_and(|r| r >= 4_000_000), "{m:?}");
    assert!(m.pgfault.is_some_and(|p| p > 0), "{m:?}");
    let ws = m.working_set().expect("working set");
    assert!(ws <= usage && ws > 0, "{m:?}");
    assert!(!m.stat.is_empty());
    assert_eq!(m.oom_kills, Some(0));
    if let Some(max) = m.max_usage {
        assert!(max > 0, "{m:?}");
    }
}

#[test]
fn stats_report_usage_and_limits_of_a_busy_cgroup() {
    let mut t = TestCgroup::host("stats");
    t.mgr.create().unwrap();
    let r = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(MEMORY_LIMIT)
                .swap(MEMORY_LIMIT)
                .build()
                .unwrap(),
        )
        .pids(
            LinuxPidsBuilder::default()
                .limit(PIDS_LIMIT)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    t.mgr.apply(&r).unwrap();

    let idle = t.mgr.stats().unwrap();
    assert_eq!(idle.memory.limit, Some(MEMORY_LIMIT as u64));
    assert_eq!(idle.pids.current, Some(0));
    assert_eq!(idle.pids.limit, Some(PIDS_LIMIT as u64));

    run_busy(&mut t);
    let s = t.mgr.stats().unwrap();
    assert_running_busy_process(&s);
    assert_eq!(s.memory.limit, Some(MEMORY_LIMIT as u64));
    let ws = s.memory.working_set().unwrap_or(0);
    assert_eq!(s.memory.available(), Some(MEMORY_LIMIT as u64 - ws));
    // The shell and its sleep.
    assert!(s.pids.current.is_some_and(|c| c >= 2), "{:?}", s.pids);
    assert_eq!(s.pids.limit, Some(PIDS_LIMIT as u64));
    // swap = limit: no swap allowed, where swap is accounted at all.
    if let Some(swap) = s.memory.swap_limit {
        assert_eq!(swap, 0, "{:?}", s.memory);
    }
    assert!(s.memory.swap_usage.is_none_or(|u| u == 0), "{:?}", s.memory);
    match t.mgr.hierarchy() {
        Hierarchy::V1 => {
            let cpus = s.cpu.per_cpu_ns.len();
            assert!(cpus >= 1, "{:?}", s.cpu);
            assert!(s.cpu.per_cpu_ns.iter().sum::<u64>() > 0);
            assert!(s.cpu.nr_periods.is_some(), "{:?}", s.cpu);
            assert!(s.memory.stat.contains_key("total_inactive_file"));
            assert!(s.memory.failcnt.is_some());
        }
        Hierarchy::V2 => {
            assert!(s.cpu.per_cpu_ns.is_empty());
            assert!(s.memory.stat.contains_key("anon"));
            assert!(s.memory.failcnt.is_some());
        }
    }
    // Huge page usage: one entry per page size the kernel has, when the
    // hugetlb controller is there, and none in use.
    if let Some(dir) = t.mgr.path_for("hugetlb").filter(|d| d.is_dir()) {
        let controllers = dir.join("cgroup.controllers");
        let enabled = t.mgr.hierarchy() == Hierarchy::V1
            || read(&controllers)
                .split_whitespace()
                .any(|c| c == "hugetlb");
        if enabled {
            let mut want = kernel_huge_page_sizes();
            want.sort();
            let mut got: Vec<String> = s.hugetlb.iter().map(|h| h.page_size.clone()).collect();
            got.sort();
            assert_eq!(got, want);
            assert!(s.hugetlb.iter().all(|h| h.usage == 0), "{:?}", s.hugetlb);
        }
    } else {
        assert!(s.hugetlb.is_empty());
    }
}

/// The page sizes under /sys/kernel/mm/hugepages, spelled as hugetlb file
/// names spell them ("hugepages-2048kB" is "2MB").
fn kernel_huge_page_sizes() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/sys/kernel/mm/hugepages") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().into_owned();
            let kb: u64 = name
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            Some(if kb >= 1 << 20 {
                format!("{}GB", kb >> 20)
            } else if kb >= 1 << 10 {
                format!("{}MB", kb >> 10)
            } else {
                format!("{kb}KB")
            })
        })
        .collect()
}

#[test]
fn stats_of_a_cgroup_that_does_not_exist_is_an_error() {
    let t = TestCgroup::host("never-created");
    let err = t.mgr.stats().unwrap_err();
    assert!(
        matches!(
            err,
            Error::Open {
                errno: nix::errno::Errno::ENOENT,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn stats_on_the_cgroup2_mount_follow_its_controllers() {
    let mut t = TestCgroup::unified("stats");
    t.mgr.create().unwrap();
    run_busy(&mut t);
    let s = t.mgr.stats().unwrap();
    // cpu.stat is a core file: usage is there with or without controllers.
    assert!(s.cpu.usage_ns.is_some_and(|u| u > 0), "{:?}", s.cpu);
    let dir = t.mgr.path_for("memory").unwrap();
    let controllers = read(&dir.join("cgroup.controllers"));
    let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
    // On the hybrid mount of a v1 host no controller is enabled: the fields
    // are empty rather than an error.
    assert_eq!(s.memory.usage.is_some(), has("memory"), "{:?}", s.memory);
    assert_eq!(s.pids.current.is_some(), has("pids"), "{:?}", s.pids);
    assert_eq!(s.cpu.nr_periods.is_some(), has("cpu"), "{:?}", s.cpu);
    if has("memory") {
        assert_running_busy_process(&s);
        assert_eq!(s.memory.limit, None);
        assert_eq!(s.memory.available(), None);
    } else {
        assert_eq!(s.memory, Default::default());
    }
    if has("pids") {
        assert!(s.pids.current.is_some_and(|c| c >= 1), "{:?}", s.pids);
        assert_eq!(s.pids.limit, None);
    }
}
