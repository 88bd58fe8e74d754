//! Containers under the systemd cgroup driver (`--systemd-cgroup`), against
//! a real systemd: the container's cgroup is a transient scope holding its
//! processes, its limits are the scope's properties too (so a
//! `systemctl daemon-reload` keeps them, also after `update`), and `delete`
//! stops the scope. Ignored in plain `cargo test` (needs systemd as PID 1);
//! hack/test-v2.sh runs them with `--ignored` in its systemd VM lane.

mod common;

use std::path::Path;
use std::process::Command;

use common::Bundle;
use serde_json::json;

fn require_systemd() {
    assert!(
        Path::new("/run/systemd/system").is_dir(),
        "systemd is not PID 1 here (no /run/systemd/system): run this in the systemd lane"
    );
}

fn systemctl(args: &[&str]) -> String {
    let out = Command::new("systemctl")
        .args(args)
        .output()
        .expect("run systemctl");
    assert!(out.status.success(), "systemctl {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn show(unit: &str, prop: &str) -> String {
    systemctl(&["show", "-p", prop, "--value", unit])
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

#[test]
#[ignore = "needs systemd as PID 1: hack/test-v2.sh runs it in its systemd VM lane"]
fn a_container_is_a_scope_whose_limits_survive_a_reload() {
    require_systemd();
    let mut b = Bundle::new("sdscope", &["sleep", "1000"]);
    b.systemd_cgroup = true;
    let id = b.id("c");
    b.config["linux"]["cgroupsPath"] = json!(format!("carapace-rt.slice:carapace:{id}"));
    b.config["linux"]["resources"] = json!({
        "memory": {"limit": 64 * 1024 * 1024},
        "cpu": {"quota": 50000, "period": 100000},
        "pids": {"limit": 42}
    });
    b.write();
    let pid = b.start_detached(&id);
    let unit = format!("carapace-{id}.scope");
    let dir = Path::new("/sys/fs/cgroup/carapace.slice/carapace-rt.slice").join(&unit);
    let own = read(Path::new(&format!("/proc/{pid}/cgroup")));
    assert_eq!(
        own,
        format!("0::/carapace.slice/carapace-rt.slice/{unit}"),
        "the init is not in its scope"
    );
    assert_eq!(show(&unit, "ActiveState"), "active");
    assert_eq!(show(&unit, "MemoryMax"), (64 * 1024 * 1024).to_string());
    assert_eq!(show(&unit, "TasksMax"), "42");
    assert_eq!(read(&dir.join("cpu.max")), "50000 100000");

    // update reaches files and properties; a reload keeps both.
    b.ok(&[
        "update",
        "--memory",
        "134217728",
        "--pids-limit",
        "100",
        &id,
    ]);
    assert_eq!(show(&unit, "MemoryMax"), "134217728");
    systemctl(&["daemon-reload"]);
    assert_eq!(read(&dir.join("memory.max")), "134217728");
    assert_eq!(read(&dir.join("pids.max")), "100");
    assert_eq!(read(&dir.join("cpu.max")), "50000 100000");

    // delete --force stops the scope: nothing left.
    b.ok(&["delete", "--force", &id]);
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert_eq!(show(&unit, "ActiveState"), "inactive");
}

#[test]
#[ignore = "needs systemd as PID 1: hack/test-v2.sh runs it in its systemd VM lane"]
fn a_container_that_exits_leaves_no_unit_and_deletes_cleanly() {
    require_systemd();
    let mut b = Bundle::new("sdexit", &["sh", "-c", "exit 3"]);
    b.systemd_cgroup = true;
    let id = b.id("c");
    b.config["linux"]["cgroupsPath"] = json!(format!(":carapace:{id}"));
    b.write();
    b.start_detached(&id);
    b.wait_stopped(&id);
    let unit = format!("carapace-{id}.scope");
    b.ok(&["delete", &id]);
    assert_eq!(show(&unit, "ActiveState"), "inactive");
    assert!(!Path::new("/sys/fs/cgroup/system.slice")
        .join(&unit)
        .exists());
    // The same ID again: a unit of that name must not be in the way.
    b.start_detached(&id);
    b.wait_stopped(&id);
    b.ok(&["delete", &id]);
}

#[test]
#[ignore = "needs systemd as PID 1: hack/test-v2.sh runs it in its systemd VM lane"]
fn a_plain_path_is_refused_by_the_systemd_driver() {
    require_systemd();
    let mut b = Bundle::new("sdbad", &["true"]);
    b.systemd_cgroup = true;
    b.config["linux"]["cgroupsPath"] = json!("/carapace/plain");
    b.write();
    let id = b.id("c");
    let out = b.rt(&["create", "--bundle", b.path().to_str().expect("utf8"), &id]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("slice:prefix:name"), "{err}");
    assert!(
        !b.state.join(&id).exists(),
        "state left for a refused create"
    );
}
