//! Kernel tests of the cgroup v2 code paths on a real cgroup2 mount: the
//! hybrid /sys/fs/cgroup/unified on v1 hosts, /sys/fs/cgroup on v2 hosts.
//! Device filtering (eBPF), freeze, cgroup.kill and removal. Needs root.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use carapace_cgroups::{apply_device_rules_v2, attached_device_filters, Hierarchy};
use common::{eventually, TestCgroup};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType};

fn rule(
    allow: bool,
    typ: LinuxDeviceType,
    major: i64,
    minor: i64,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut b = LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .typ(typ)
        .access(access);
    if major >= 0 {
        b = b.major(major);
    }
    if minor >= 0 {
        b = b.minor(minor);
    }
    b.build().unwrap()
}

fn deny_all() -> LinuxDeviceCgroup {
    rule(false, LinuxDeviceType::A, -1, -1, "rwm")
}

/// Runs a script in the cgroup; returns (exit code, stdout, stderr).
fn run(t: &mut TestCgroup, script: &str) -> (i32, String, String) {
    let pid = t.run_in_cgroup(script);
    let out = t.wait(pid);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const PROBE: &str = "if echo hi > /dev/null; then echo WRITE-OK; else echo WRITE-DENIED; fi; \
                     if cat /dev/null; then echo READ-OK; else echo READ-DENIED; fi";

#[test]
fn device_filter_denies_write_to_read_only_device() {
    let mut t = TestCgroup::unified("dev-ro");
    t.mgr.create().unwrap();
    let dir = t.mgr.path_for("devices").unwrap();
    apply_device_rules_v2(
        &dir,
        &[deny_all(), rule(true, LinuxDeviceType::C, 1, 3, "r")],
    )
    .unwrap();
    let (_, out, err) = run(&mut t, PROBE);
    assert!(
        out.contains("WRITE-DENIED"),
        "stdout {out:?} stderr {err:?}"
    );
    assert!(err.contains("Operation not permitted"), "stderr {err:?}");
    assert!(out.contains("READ-OK"), "stdout {out:?} stderr {err:?}");
}

#[test]
fn device_filter_allows_what_the_rules_allow() {
    let mut t = TestCgroup::unified("dev-rw");
    t.mgr.create().unwrap();
    let dir = t.mgr.path_for("devices").unwrap();
    apply_device_rules_v2(
        &dir,
        &[
            deny_all(),
            rule(true, LinuxDeviceType::C, -1, -1, "m"),
            rule(true, LinuxDeviceType::C, 1, 3, "rwm"),
        ],
    )
    .unwrap();
    let (_, out, err) = run(&mut t, PROBE);
    assert!(out.contains("WRITE-OK"), "stdout {out:?} stderr {err:?}");
    assert!(out.contains("READ-OK"), "stdout {out:?} stderr {err:?}");
    // /dev/zero (1:5) is not in the list.
    let (_, out, err) = run(
        &mut t,
        "if head -c 1 /dev/zero >/dev/null; then echo ZERO-OK; else echo ZERO-DENIED; fi",
    );
    assert!(out.contains("ZERO-DENIED"), "stdout {out:?} stderr {err:?}");
}

#[test]
fn device_filter_update_replaces_our_program() {
    let mut t = TestCgroup::unified("dev-update");
    t.mgr.create().unwrap();
    let dir = t.mgr.path_for("devices").unwrap();
    apply_device_rules_v2(&dir, &[deny_all()]).unwrap();
    assert_eq!(attached_device_filters(&dir).unwrap().len(), 1);
    let (_, out, _) = run(&mut t, PROBE);
    assert!(
        out.contains("WRITE-DENIED") && out.contains("READ-DENIED"),
        "{out:?}"
    );

    apply_device_rules_v2(
        &dir,
        &[deny_all(), rule(true, LinuxDeviceType::C, 1, 3, "rw")],
    )
    .unwrap();
    assert_eq!(
        attached_device_filters(&dir).unwrap().len(),
        1,
        "the old program must be detached"
    );
    let (_, out, _) = run(&mut t, PROBE);
    assert!(
        out.contains("WRITE-OK") && out.contains("READ-OK"),
        "{out:?}"
    );
}

#[test]
fn manager_applies_devices_through_resources() {
    let mut t = TestCgroup::unified("dev-apply");
    t.mgr.create().unwrap();
    let r = oci_spec::runtime::LinuxResourcesBuilder::default()
        .devices(vec![deny_all(), rule(true, LinuxDeviceType::C, 1, 3, "r")])
        .build()
        .unwrap();
    t.mgr.apply(&r).unwrap();
    let (_, out, _) = run(&mut t, PROBE);
    assert!(
        out.contains("WRITE-DENIED") && out.contains("READ-OK"),
        "{out:?}"
    );
}

#[test]
fn v2_freeze_thaw_and_cgroup_kill() {
    let mut t = TestCgroup::unified("freeze");
    assert_eq!(t.mgr.hierarchy(), Hierarchy::V2);
    t.mgr.create().unwrap();
    let a = t.sleeper();
    let b = t.sleeper();
    assert_eq!(t.mgr.pids().unwrap().len(), 2);
    t.mgr.freeze().unwrap();
    assert!(t.mgr.is_frozen().unwrap());
    t.mgr.thaw().unwrap();
    assert!(!t.mgr.is_frozen().unwrap());
    t.mgr.kill_all(libc::SIGKILL).unwrap();
    for pid in [a, b] {
        assert_eq!(t.wait(pid).status.signal(), Some(libc::SIGKILL));
    }
    assert!(eventually(Duration::from_secs(5), || t
        .mgr
        .pids()
        .unwrap()
        .is_empty()));
    t.mgr.destroy().unwrap();
    assert!(!t.mgr.exists());
    t.mgr.destroy().unwrap();
}

#[test]
fn v2_kill_all_with_other_signal_signals_each_process() {
    let mut t = TestCgroup::unified("term");
    t.mgr.create().unwrap();
    let a = t.sleeper();
    t.mgr.kill_all(libc::SIGTERM).unwrap();
    assert_eq!(t.wait(a).status.signal(), Some(libc::SIGTERM));
    assert!(!t.mgr.is_frozen().unwrap());
}
