//! AppArmor through the CRI (issue 23), against a real daemon: the default
//! profile for RuntimeDefault, on the init and on exec'd processes; what it
//! denies; Localhost profiles through the new `apparmor` field and the
//! deprecated `apparmor_profile` string (critest's AppArmor specs); an
//! unloaded profile failing CreateContainer.
//!
//! Where the kernel enforces AppArmor (the cgroup v2 VM lane boots Debian's
//! kernel, whose default LSM it is, and carries apparmor_parser) each test
//! checks the enforced behaviour. Where it does not (this project's host,
//! whose kernel has it off), each test checks the disabled behaviour —
//! RuntimeDefault runs unconfined, Localhost profiles are refused — and
//! says so on stderr.

use std::io::Write;
use std::process::{Command, Stdio};

use carapace_cri::apparmor;
use carapace_e2e::workload::{busybox_container, busybox_pod, create, run, sh, Rt};
use carapace_e2e::Daemon;
use cri::security_profile::ProfileType;
use k8s_cri::v1 as cri;

/// Whether this kernel enforces AppArmor; says which behaviours a test
/// checks.
fn enforced(test: &str) -> bool {
    let on = apparmor::enabled();
    if on {
        eprintln!("{test}: AppArmor is enforced here: checking the enforced behaviour");
    } else {
        eprintln!(
            "{test}: AppArmor is off in this kernel: checking the disabled behaviour \
             (RuntimeDefault unconfined, Localhost refused)"
        );
    }
    on
}

/// A profile loaded into the kernel for one test, unloaded when dropped.
struct TestProfile {
    name: String,
    text: String,
}

impl TestProfile {
    /// Loads `profile NAME flags=(attach_disconnected) { RULES }`: file,
    /// capability, network and signal access plus `rules`.
    fn load(name: &str, rules: &str) -> TestProfile {
        let text = format!(
            "profile {name} flags=(attach_disconnected) {{\n  file,\n  capability,\n  network,\n  signal,\n  {rules}\n}}\n"
        );
        parser(&["-r", "-K"], &text);
        TestProfile {
            name: name.to_string(),
            text,
        }
    }
}

impl Drop for TestProfile {
    fn drop(&mut self) {
        parser(&["-R"], &self.text);
        assert!(
            !apparmor::loaded()
                .map(|l| l.contains(&self.name))
                .unwrap_or(false)
                || std::thread::panicking(),
            "profile {} still loaded",
            self.name
        );
    }
}

/// Runs apparmor_parser (the `apparmor` package, hack/install-deps.sh)
/// with `profile` on stdin; fails loudly.
fn parser(args: &[&str], profile: &str) {
    // Debian installs it in /usr/sbin, which a plain PATH may lack.
    let bin = ["/usr/sbin/apparmor_parser", "/sbin/apparmor_parser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("apparmor_parser");
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("apparmor_parser (apt-get install apparmor)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(profile.as_bytes())
        .expect("write the profile");
    let out = child.wait_with_output().expect("wait for apparmor_parser");
    assert!(
        out.status.success(),
        "apparmor_parser {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A security context asking for `t` through the `apparmor` field.
fn field(t: ProfileType, localhost_ref: &str) -> cri::LinuxContainerSecurityContext {
    cri::LinuxContainerSecurityContext {
        apparmor: Some(cri::SecurityProfile {
            profile_type: t as i32,
            localhost_ref: localhost_ref.into(),
        }),
        ..Default::default()
    }
}

/// A security context asking for `profile` through the deprecated string.
fn legacy(profile: &str) -> cri::LinuxContainerSecurityContext {
    #[allow(deprecated)]
    cri::LinuxContainerSecurityContext {
        apparmor_profile: profile.into(),
        ..Default::default()
    }
}

/// The `apparmorProfile` of a container's OCI spec, as the daemon wrote it.
fn spec_profile(d: &Daemon, id: &str) -> Option<String> {
    let path = d
        .state_dir()
        .join("containers")
        .join(id)
        .join("config.json");
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("config.json")).expect("json");
    spec["process"]["apparmorProfile"]
        .as_str()
        .map(str::to_string)
}

async fn container_ids(rt: &mut Rt) -> Vec<String> {
    rt.list_containers(cri::ListContainersRequest::default())
        .await
        .expect("list")
        .into_inner()
        .containers
        .into_iter()
        .map(|c| c.id)
        .collect()
}

/// Status (verbose, as `crictl info`) says what RuntimeDefault means here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_says_whether_apparmor_confines_runtime_default() {
    let on = enforced("status");
    let d = Daemon::start("");
    let mut rt = d.runtime().await;
    let info = rt
        .status(cri::StatusRequest { verbose: true })
        .await
        .expect("status")
        .into_inner()
        .info;
    let line = info.get("apparmor").expect("info has apparmor");
    if on {
        assert!(
            line.starts_with("enabled: RuntimeDefault is the profile carapace-default"),
            "{line}"
        );
    } else {
        assert!(line.starts_with("disabled"), "{line}");
    }
}

/// RuntimeDefault (either field) puts the container's init and every
/// exec'd process in `carapace-default`; where AppArmor is off, the spec
/// names no profile at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_default_confines_the_init_and_exec_processes() {
    let on = enforced("runtime_default");
    let (d, mut rt, pod, pc) = busybox_pod("aa-default", |_| {}).await;
    for (name, sc) in [
        ("field", field(ProfileType::RuntimeDefault, "")),
        ("legacy", legacy("runtime/default")),
        ("unset", Default::default()),
    ] {
        let id = run(
            &mut rt,
            &pod,
            &pc,
            // The container's first process notes its own profile (PID 1
            // may be the pod's infra process: the PID namespace can be the
            // pod's).
            busybox_container(
                name,
                &[
                    "sh",
                    "-c",
                    "cat /proc/self/attr/current > /tmp/init.new; mv /tmp/init.new /tmp/init; exec sleep 300",
                ],
                sc,
            ),
        )
        .await;
        if on {
            assert_eq!(
                spec_profile(&d, &id).as_deref(),
                Some("carapace-default"),
                "{name}"
            );
            let (code, out, err) =
                sh(&mut rt, &id, "while [ ! -s /tmp/init ]; do sleep 0.1; done; cat /tmp/init; cat /proc/self/attr/current").await;
            assert_eq!(code, 0, "{name}: {err}");
            assert_eq!(
                out, "carapace-default (enforce)\ncarapace-default (enforce)\n",
                "{name}: init, then exec"
            );
        } else {
            assert_eq!(spec_profile(&d, &id), None, "{name}");
        }
    }
    // Unconfined is unconfined everywhere.
    let id = run(
        &mut rt,
        &pod,
        &pc,
        busybox_container(
            "unconfined",
            &["sleep", "300"],
            field(ProfileType::Unconfined, ""),
        ),
    )
    .await;
    assert_eq!(spec_profile(&d, &id), None);
}

/// The default profile denies mounting (even with CAP_SYS_ADMIN and no
/// seccomp filter) and the node's kernel knobs (/proc/kcore, and writes to
/// /proc/sysrq-trigger from a privileged container, which an unconfined
/// one may do). Where AppArmor is off the same mount succeeds and the
/// privileged container's spec names no profile: RuntimeDefault confines
/// nothing there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_profile_denies_mounts_and_the_nodes_knobs() {
    let on = enforced("default_denies");
    // A privileged container needs a privileged pod.
    let (d, mut rt, pod, pc) = busybox_pod("aa-denies", |pc| {
        if let Some(sc) = pc.linux.as_mut().and_then(|l| l.security_context.as_mut()) {
            sc.privileged = true;
        }
    })
    .await;
    let mut sc = field(ProfileType::RuntimeDefault, "");
    sc.capabilities = Some(cri::Capability {
        add_capabilities: vec!["SYS_ADMIN".into()],
        ..Default::default()
    });
    sc.seccomp = Some(cri::SecurityProfile {
        profile_type: ProfileType::Unconfined as i32,
        ..Default::default()
    });
    let id = run(
        &mut rt,
        &pod,
        &pc,
        busybox_container("mounter", &["sleep", "300"], sc),
    )
    .await;
    let (code, _, err) = sh(&mut rt, &id, "mkdir -p /m && mount -t tmpfs none /m").await;
    if on {
        assert_ne!(code, 0, "mount got through carapace-default");
        assert!(err.contains("denied"), "{err}");
    } else {
        assert_eq!(code, 0, "unconfined with CAP_SYS_ADMIN: {err}");
    }
    let mut sc = field(ProfileType::RuntimeDefault, "");
    sc.privileged = true;
    let id = run(
        &mut rt,
        &pod,
        &pc,
        busybox_container("priv", &["sleep", "300"], sc),
    )
    .await;
    if on {
        let (code, _, _) = sh(&mut rt, &id, "head -c 4 /proc/kcore > /dev/null").await;
        assert_ne!(code, 0, "/proc/kcore read under carapace-default");
        let (code, _, err) = sh(&mut rt, &id, "echo h > /proc/sysrq-trigger").await;
        assert_ne!(code, 0, "sysrq-trigger written under carapace-default");
        assert!(err.contains("denied"), "{err}");
        // The control: the same privileged container unconfined may (the
        // VM's own kernel prints its sysrq help).
        let id = run(
            &mut rt,
            &pod,
            &pc,
            busybox_container(
                "priv-unconfined",
                &["sleep", "300"],
                cri::LinuxContainerSecurityContext {
                    privileged: true,
                    ..field(ProfileType::Unconfined, "")
                },
            ),
        )
        .await;
        let (code, _, err) = sh(&mut rt, &id, "echo h > /proc/sysrq-trigger").await;
        assert_eq!(code, 0, "an unconfined privileged container: {err}");
    } else {
        // sysrq is not written on a host kernel: the spec says what the
        // container runs under.
        assert_eq!(
            spec_profile(&d, &id),
            None,
            "RuntimeDefault without AppArmor"
        );
    }
}

/// critest's Localhost specs, through both fields: a profile that denies
/// writes makes `touch` fail, a permissive (audit) one lets it pass, and
/// the processes run under the profile named. Where AppArmor is off, a
/// Localhost request fails CreateContainer (FailedPrecondition) and leaves
/// no container.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localhost_profiles_apply_through_both_fields() {
    let on = enforced("localhost");
    let profiles = on.then(|| {
        (
            TestProfile::load("carapace-e2e-deny-write", "deny /** w,"),
            TestProfile::load("carapace-e2e-audit-write", "audit /** w,"),
        )
    });
    let (_d, mut rt, pod, pc) = busybox_pod("aa-localhost", |_| {}).await;
    for (profile, touch_works) in [
        ("carapace-e2e-deny-write", false),
        ("carapace-e2e-audit-write", true),
    ] {
        for (how, sc) in [
            ("field", field(ProfileType::Localhost, profile)),
            ("legacy", legacy(&format!("localhost/{profile}"))),
        ] {
            let c = busybox_container(&format!("{how}-{touch_works}"), &["sleep", "300"], sc);
            if !on {
                let e = create(&mut rt, &pod, &pc, c)
                    .await
                    .expect_err("Localhost without AppArmor");
                assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{how}: {e}");
                assert!(e.message().contains(profile), "{how}: {}", e.message());
                continue;
            }
            let id = run(&mut rt, &pod, &pc, c).await;
            let (_, out, _) = sh(&mut rt, &id, "cat /proc/self/attr/current").await;
            assert_eq!(out.trim(), format!("{profile} (enforce)"), "{how}");
            let (code, _, err) = sh(&mut rt, &id, "touch /tmp/probe").await;
            assert_eq!(code == 0, touch_works, "{how} {profile}: {err}");
        }
    }
    if !on {
        assert!(
            container_ids(&mut rt).await.is_empty(),
            "refused creates left containers"
        );
    }
    // Containers go before their profiles are unloaded.
    drop((_d, rt));
    drop(profiles);
}

/// A Localhost profile that is not loaded fails CreateContainer with a
/// clear FailedPrecondition, through either field, and leaves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unloaded_profile_fails_create_container() {
    let on = enforced("unloaded");
    let (_d, mut rt, pod, pc) = busybox_pod("aa-unloaded", |_| {}).await;
    for (how, sc) in [
        (
            "field",
            field(ProfileType::Localhost, "carapace-e2e-never-loaded"),
        ),
        ("legacy", legacy("localhost/carapace-e2e-never-loaded")),
    ] {
        let e = create(
            &mut rt,
            &pod,
            &pc,
            busybox_container(how, &["sleep", "300"], sc),
        )
        .await
        .expect_err("an unloaded profile");
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{how}: {e}");
        let why = if on { "is not loaded" } else { "not supported" };
        assert!(e.message().contains(why), "{how}: {}", e.message());
        assert!(
            e.message().contains("carapace-e2e-never-loaded"),
            "{how}: {}",
            e.message()
        );
    }
    assert!(
        container_ids(&mut rt).await.is_empty(),
        "refused creates left containers"
    );
}
