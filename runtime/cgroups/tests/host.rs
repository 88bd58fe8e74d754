//! Kernel tests on the host's own cgroup hierarchy through `Manager::new`:
//! cgroup v1 on the development host, v2 in the VM lane of CI. Needs root.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use carapace_cgroups::{Hierarchy, Manager};
use common::{eventually, read, TestCgroup};
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
};
use std::os::unix::process::ExitStatusExt;

const MIB: i64 = 1024 * 1024;

fn memory(limit: i64, swap: i64) -> LinuxResources {
    LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(limit)
                .swap(swap)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

fn memory_limit_file(m: &Manager) -> PathBuf {
    let dir = m.path_for("memory").expect("memory controller");
    match m.hierarchy() {
        Hierarchy::V1 => dir.join("memory.limit_in_bytes"),
        Hierarchy::V2 => dir.join("memory.max"),
    }
}

#[test]
fn memory_limit_is_written_and_read_back() {
    let t = TestCgroup::host("mem");
    t.mgr.create().unwrap();
    t.mgr.apply(&memory(64 * MIB, 128 * MIB)).unwrap();
    let limit = memory_limit_file(&t.mgr);
    assert_eq!(read(&limit), (64 * MIB).to_string());

    // Growing both needs memsw first on v1; shrinking needs the limit first.
    t.mgr.apply(&memory(256 * MIB, 512 * MIB)).unwrap();
    assert_eq!(read(&limit), (256 * MIB).to_string());
    t.mgr.apply(&memory(32 * MIB, 32 * MIB)).unwrap();
    assert_eq!(read(&limit), (32 * MIB).to_string());
    let dir = t.mgr.path_for("memory").unwrap();
    match t.mgr.hierarchy() {
        Hierarchy::V1 => assert_eq!(
            read(&dir.join("memory.memsw.limit_in_bytes")),
            (32 * MIB).to_string()
        ),
        Hierarchy::V2 => assert_eq!(read(&dir.join("memory.swap.max")), "0"),
    }
}

#[test]
fn cpuset_is_initialized_from_the_parent() {
    let t = TestCgroup::host("cpuset");
    t.mgr.create().unwrap();
    let dir = t.mgr.path_for("cpuset").expect("cpuset controller");
    match t.mgr.hierarchy() {
        Hierarchy::V1 => {
            let root = Path::new("/sys/fs/cgroup/cpuset");
            let root = if root.is_dir() {
                root.to_path_buf()
            } else {
                dir.ancestors().nth(2).unwrap().to_path_buf()
            };
            for d in [dir.parent().unwrap(), dir.as_path()] {
                assert_eq!(
                    read(&d.join("cpuset.cpus")),
                    read(&root.join("cpuset.cpus"))
                );
                assert_eq!(
                    read(&d.join("cpuset.mems")),
                    read(&root.join("cpuset.mems"))
                );
            }
        }
        Hierarchy::V2 => {
            assert!(read(&dir.join("cgroup.controllers"))
                .split_whitespace()
                .any(|c| c == "cpuset"));
            assert!(!read(&dir.join("cpuset.cpus.effective")).is_empty());
        }
    }
    // A process can join it (an empty cpuset would refuse it with ENOSPC).
    let mut t = t;
    t.sleeper();
}

#[test]
fn pids_max_is_written() {
    let t = TestCgroup::host("pids");
    t.mgr.create().unwrap();
    let file = t
        .mgr
        .path_for("pids")
        .expect("pids controller")
        .join("pids.max");
    for (limit, want) in [(10, "10"), (-1, "max"), (3, "3")] {
        let r = LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(limit).build().unwrap())
            .build()
            .unwrap();
        t.mgr.apply(&r).unwrap();
        assert_eq!(read(&file), want);
    }
}

#[test]
fn cpu_quota_and_shares_are_written() {
    let t = TestCgroup::host("cpu");
    t.mgr.create().unwrap();
    let r = LinuxResourcesBuilder::default()
        .cpu(
            LinuxCpuBuilder::default()
                .shares(512u64)
                .quota(20_000i64)
                .period(50_000u64)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    t.mgr.apply(&r).unwrap();
    let dir = t.mgr.path_for("cpu").expect("cpu controller");
    match t.mgr.hierarchy() {
        Hierarchy::V1 => {
            assert_eq!(read(&dir.join("cpu.shares")), "512");
            assert_eq!(read(&dir.join("cpu.cfs_period_us")), "50000");
            assert_eq!(read(&dir.join("cpu.cfs_quota_us")), "20000");
        }
        Hierarchy::V2 => {
            assert_eq!(read(&dir.join("cpu.weight")), "20");
            assert_eq!(read(&dir.join("cpu.max")), "20000 50000");
        }
    }
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

#[test]
fn freeze_stops_a_process_and_thaw_resumes_it() {
    let mut t = TestCgroup::host("freeze");
    t.mgr.create().unwrap();
    let out = tempfile::NamedTempFile::new().unwrap();
    let path = out.path().to_path_buf();
    t.run_in_cgroup(&format!(
        "while :; do echo x >> {}; sleep 0.02; done",
        path.display()
    ));
    assert!(
        eventually(Duration::from_secs(5), || file_len(&path) > 0),
        "child never ran"
    );
    t.mgr.freeze().unwrap();
    assert!(t.mgr.is_frozen().unwrap());
    let before = file_len(&path);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(file_len(&path), before, "frozen process kept writing");
    t.mgr.thaw().unwrap();
    assert!(!t.mgr.is_frozen().unwrap());
    assert!(
        eventually(Duration::from_secs(5), || file_len(&path) > before),
        "thawed process did not resume"
    );
}

#[test]
fn kill_all_kills_every_process() {
    let mut t = TestCgroup::host("kill");
    t.mgr.create().unwrap();
    let a = t.sleeper();
    let b = t.sleeper();
    let mut pids = t.mgr.pids().unwrap();
    pids.sort_unstable();
    let mut want = vec![a, b];
    want.sort_unstable();
    assert_eq!(pids, want);
    t.mgr.kill_all(libc::SIGKILL).unwrap();
    for pid in [a, b] {
        assert_eq!(t.wait(pid).status.signal(), Some(libc::SIGKILL));
    }
    assert!(eventually(Duration::from_secs(5), || t
        .mgr
        .pids()
        .unwrap()
        .is_empty()));
    assert!(!t.mgr.is_frozen().unwrap_or(false));
    // Again, now that it is empty: nothing to do, and nothing left frozen.
    t.mgr.kill_all(libc::SIGKILL).unwrap();
    assert!(!t.mgr.is_frozen().unwrap_or(false));
    t.mgr.destroy().unwrap();
}

#[test]
fn kill_all_of_a_paused_container_keeps_it_paused_for_other_signals() {
    let mut t = TestCgroup::host("paused");
    t.mgr.create().unwrap();
    let a = t.sleeper();
    t.mgr.freeze().unwrap();
    t.mgr.kill_all(libc::SIGTERM).unwrap();
    if t.mgr.hierarchy() == carapace_cgroups::Hierarchy::V2 {
        // The v2 freezer lets a task with a fatal signal pending leave the
        // frozen state to die (kernel semantics); the cgroup stays set to
        // freeze and reads frozen again once the task is gone.
        assert_eq!(t.wait(a).status.signal(), Some(libc::SIGTERM));
        assert!(eventually(Duration::from_secs(5), || t
            .mgr
            .is_frozen()
            .unwrap_or(false)));
        t.mgr.thaw().unwrap();
        return;
    }
    assert!(t.mgr.is_frozen().unwrap());
    // Frozen (v1), it cannot act on the signal yet.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(t.mgr.pids().unwrap(), vec![a]);
    // SIGKILL thaws so the kill takes effect. The kernel recorded the fatal
    // SIGTERM as the exit signal already, so either may be reported.
    t.mgr.kill_all(libc::SIGKILL).unwrap();
    let sig = t.wait(a).status.signal();
    assert!(
        sig == Some(libc::SIGKILL) || sig == Some(libc::SIGTERM),
        "{sig:?}"
    );
    assert!(!t.mgr.is_frozen().unwrap());
}

#[test]
fn destroy_removes_everything_and_is_idempotent() {
    let t = TestCgroup::host("destroy");
    t.mgr.create().unwrap();
    t.mgr.create().unwrap();
    assert!(t.mgr.exists());
    // Cgroups the container made below its own, in every hierarchy.
    let mut dirs = Vec::new();
    for c in ["memory", "pids", "cpu", "freezer", "name=systemd"] {
        if let Some(d) = t.mgr.path_for(c) {
            std::fs::create_dir_all(d.join("nested/deeper")).unwrap();
            dirs.push(d);
        }
    }
    assert!(!dirs.is_empty());
    t.mgr.destroy().unwrap();
    assert!(!t.mgr.exists());
    for d in &dirs {
        assert!(!d.exists(), "{} still exists", d.display());
        assert!(d.parent().unwrap().is_dir(), "ancestor was removed");
    }
    t.mgr.destroy().unwrap();
}

#[test]
fn oom_kill_is_counted() {
    let mut t = TestCgroup::host("oom");
    t.mgr.create().unwrap();
    t.mgr.apply(&memory(8 * MIB, 8 * MIB)).unwrap();
    assert_eq!(t.mgr.oom_kill_count().unwrap(), 0);
    let pid = t.run_in_cgroup("x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo survived");
    let out = t.wait(pid);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGKILL),
        "child was not OOM-killed: {out:?}"
    );
    assert!(t.mgr.oom_kill_count().unwrap() >= 1);
}

#[test]
fn process_shows_up_in_every_hierarchy() {
    let mut t = TestCgroup::host("join");
    t.mgr.create().unwrap();
    let pid = t.sleeper();
    let cgroup = read(Path::new(&format!("/proc/{pid}/cgroup")));
    let rel = t.mgr.relative_path();
    for line in cgroup.lines() {
        assert!(line.ends_with(rel), "{line} is not in {rel}");
    }
}

fn device_rules(write_allowed: bool) -> LinuxResources {
    use oci_spec::runtime::{LinuxDeviceCgroupBuilder, LinuxDeviceType};
    let access = if write_allowed { "rwm" } else { "r" };
    LinuxResourcesBuilder::default()
        .devices(vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .typ(LinuxDeviceType::A)
                .access("rwm")
                .build()
                .unwrap(),
            LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(LinuxDeviceType::C)
                .access("m")
                .build()
                .unwrap(),
            LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(LinuxDeviceType::C)
                .major(1)
                .minor(3)
                .access(access)
                .build()
                .unwrap(),
        ])
        .build()
        .unwrap()
}

fn probe_dev_null(t: &mut TestCgroup) -> String {
    let pid = t.run_in_cgroup(
        "if echo hi > /dev/null; then echo WRITE-OK; else echo WRITE-DENIED; fi; \
         if cat /dev/null; then echo READ-OK; else echo READ-DENIED; fi",
    );
    String::from_utf8_lossy(&t.wait(pid).stdout).into_owned()
}

#[test]
fn device_rules_are_enforced_and_updated() {
    let mut t = TestCgroup::host("devices");
    t.mgr.create().unwrap();
    t.mgr.apply(&device_rules(false)).unwrap();
    if t.mgr.hierarchy() == Hierarchy::V1 {
        let list = read(&t.mgr.path_for("devices").unwrap().join("devices.list"));
        let mut lines: Vec<&str> = list.lines().collect();
        lines.sort_unstable();
        assert_eq!(lines, vec!["c *:* m", "c 1:3 r"]);
    }
    let out = probe_dev_null(&mut t);
    assert!(
        out.contains("WRITE-DENIED") && out.contains("READ-OK"),
        "{out:?}"
    );

    // An update while a process runs: only the difference is written on v1.
    let sleeper = t.sleeper();
    t.mgr.apply(&device_rules(true)).unwrap();
    t.mgr.apply(&device_rules(true)).unwrap();
    let out = probe_dev_null(&mut t);
    assert!(
        out.contains("WRITE-OK") && out.contains("READ-OK"),
        "{out:?}"
    );
    assert!(t.mgr.pids().unwrap().contains(&sleeper));
}
