//! The systemd driver against a real systemd (PID 1) over its private
//! D-Bus socket: units started and stopped, limits as properties, and the
//! property check that matters — a `systemctl daemon-reload` leaves the
//! limits we set in place.
//!
//! Needs systemd as PID 1, so these are ignored in plain `cargo test`;
//! hack/test-v2.sh runs them (with `--ignored`) in its systemd VM lane, a
//! guest whose PID 1 is Debian's systemd. There a missing systemd fails
//! them loudly.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use carapace_cgroups::{Error, Manager};
use common::{read, unique_name};
use oci_spec::runtime::{
    LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
};

const MIB: i64 = 1024 * 1024;

fn require_systemd() {
    common::require_root_and_busybox();
    assert!(
        Path::new("/run/systemd/system").is_dir(),
        "systemd is not PID 1 here (no /run/systemd/system): run this in the systemd lane"
    );
}

fn limits(memory: i64, pids: i64) -> LinuxResources {
    LinuxResourcesBuilder::default()
        .memory(LinuxMemoryBuilder::default().limit(memory).build().unwrap())
        .pids(LinuxPidsBuilder::default().limit(pids).build().unwrap())
        .build()
        .unwrap()
}

/// `systemctl show -p NAME --value UNIT`.
fn show(unit: &str, prop: &str) -> String {
    let out = Command::new("systemctl")
        .args(["show", "-p", prop, "--value", unit])
        .output()
        .expect("run systemctl");
    assert!(out.status.success(), "systemctl show {unit}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn daemon_reload() {
    let st = Command::new("systemctl")
        .arg("daemon-reload")
        .status()
        .expect("run systemctl");
    assert!(st.success(), "systemctl daemon-reload: {st}");
}

fn sleeper() -> Child {
    Command::new(common::BUSYBOX)
        .args(["sleep", "1000"])
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn sleep")
}

fn own_cgroup(pid: u32) -> String {
    let s = read(Path::new(&format!("/proc/{pid}/cgroup")));
    s.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or_else(|| panic!("no v2 line in /proc/{pid}/cgroup: {s}"))
        .to_string()
}

/// Stops the unit when a test fails half-way.
struct Stop(Manager);

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = self.0.destroy();
    }
}

#[test]
#[ignore = "needs systemd as PID 1: hack/test-v2.sh runs it in its systemd VM lane"]
fn a_scope_holds_its_process_and_its_limits_survive_a_reload() {
    require_systemd();
    let name = unique_name();
    let m = Manager::new(Some(&format!("carapace-test.slice:t:{name}")), &name, true).unwrap();
    let unit = format!("t-{name}.scope");
    assert_eq!(m.unit_name(), Some(unit.as_str()));
    assert_eq!(
        m.relative_path(),
        format!("/carapace.slice/carapace-test.slice/{unit}")
    );
    // A scope cannot exist empty: create() says so.
    assert!(matches!(m.create(), Err(Error::Unsupported(_))));

    let mut child = sleeper();
    let guard = Stop(m.clone());
    m.start(child.id() as i32, &limits(64 * MIB, 50)).unwrap();
    assert_eq!(own_cgroup(child.id()), m.relative_path());
    assert_eq!(show(&unit, "ActiveState"), "active");
    assert_eq!(show(&unit, "Delegate"), "yes");
    assert_eq!(show(&unit, "MemoryMax"), (64 * MIB).to_string());
    assert_eq!(show(&unit, "TasksMax"), "50");
    let dir = m.path_for("memory").unwrap();
    assert_eq!(read(&dir.join("memory.max")), (64 * MIB).to_string());
    assert_eq!(read(&dir.join("pids.max")), "50");

    // An update reaches the file and the unit, so a reload keeps it.
    m.apply(&limits(128 * MIB, 60)).unwrap();
    assert_eq!(show(&unit, "MemoryMax"), (128 * MIB).to_string());
    daemon_reload();
    assert_eq!(read(&dir.join("memory.max")), (128 * MIB).to_string());
    assert_eq!(read(&dir.join("pids.max")), "60");

    // Stopping kills what is left and removes the cgroup; again is fine.
    m.destroy().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the scope's process outlived the stop");
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert_eq!(show(&unit, "ActiveState"), "inactive");
    m.destroy().unwrap();
    drop(guard);
}

#[test]
#[ignore = "needs systemd as PID 1: hack/test-v2.sh runs it in its systemd VM lane"]
fn a_slice_is_started_and_stopped() {
    require_systemd();
    let name = unique_name().replace('-', "_");
    let slice = format!("carapace-{name}.slice");
    let m = Manager::new(Some(&format!("/carapace.slice/{slice}")), "pod", true).unwrap();
    assert_eq!(m.unit_name(), Some(slice.as_str()));
    let guard = Stop(m.clone());
    m.create().unwrap();
    assert_eq!(show(&slice, "ActiveState"), "active");
    assert!(m.exists());
    // A scope in it goes with it.
    let inner = Manager::new(Some(&format!("{slice}:t:{name}")), &name, true).unwrap();
    let mut child = sleeper();
    inner
        .start(child.id() as i32, &LinuxResources::default())
        .unwrap();
    assert_eq!(
        own_cgroup(child.id()),
        format!("/carapace.slice/{slice}/t-{name}.scope")
    );
    m.destroy().unwrap();
    assert!(!child.wait().unwrap().success());
    assert!(!m.exists());
    assert_eq!(show(&slice, "ActiveState"), "inactive");
    drop(guard);
}

#[test]
#[ignore = "needs systemd as PID 1: hack/test-v2.sh runs it in its systemd VM lane"]
fn what_names_no_unit_is_refused_and_unknown_units_stop_fine() {
    require_systemd();
    let err = Manager::new(Some("/carapace/abc"), "abc", true).unwrap_err();
    assert!(matches!(err, Error::InvalidPath { .. }), "{err}");
    let err = Manager::new(Some("/a-b.slice/x.scope"), "x", true).unwrap_err();
    assert!(err.to_string().contains("/a.slice/a-b.slice"), "{err}");
    // Never started: stopping it is a no-op, not an error.
    let name = unique_name();
    let m = Manager::new(Some(&format!(":t:{name}")), &name, true).unwrap();
    assert_eq!(m.relative_path(), format!("/system.slice/t-{name}.scope"));
    m.destroy().unwrap();
    // A limit that cannot be a property is refused before systemd is asked.
    let mut child = sleeper();
    let bad = LinuxResourcesBuilder::default()
        .unified(
            [("memory.max".to_string(), "lots".to_string())]
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        )
        .build()
        .unwrap();
    let err = m.start(child.id() as i32, &bad).unwrap_err();
    assert!(err.to_string().contains("lots"), "{err}");
    assert_eq!(show(&format!("t-{name}.scope"), "ActiveState"), "inactive");
    let _ = child.kill();
    let _ = child.wait();
}
