//! Pod namespaces on the real kernel: made, pinned, joined, found again
//! after a restart, and removed without a trace. Needs root.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use carapace_cri::namespaces::{Kind, NsError, Pinned, Setup};

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "namespace tests need root (CI runs them as root)"
    );
}

fn inode(p: &Path) -> u64 {
    std::fs::metadata(p).expect("stat namespace").ino()
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let d = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&d))
        .collect()
}

/// Runs `sh -c script` inside the pinned namespaces with util-linux nsenter.
fn inside(p: &Pinned, script: &str) -> String {
    let mut c = Command::new("nsenter");
    if let Some(n) = p.path(Kind::Net) {
        c.arg(format!("--net={}", n.display()));
    }
    if let Some(u) = p.path(Kind::Uts) {
        c.arg(format!("--uts={}", u.display()));
    }
    if let Some(i) = p.path(Kind::Ipc) {
        c.arg(format!("--ipc={}", i.display()));
    }
    let out = c
        .args(["--", "/bin/busybox", "sh", "-c", script])
        .output()
        .expect("run nsenter (util-linux)");
    assert!(
        out.status.success(),
        "nsenter: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn pod_namespaces_are_new_pinned_and_set_up() {
    require_root();
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("ns");
    let host_host = nix::unistd::gethostname().expect("hostname");
    let host_net = inode(Path::new("/proc/self/ns/net"));
    let p = Pinned::create(
        &dir,
        &[Kind::Net, Kind::Ipc, Kind::Uts],
        &Setup {
            hostname: Some("pod-a".into()),
            sysctls: vec![
                (
                    Kind::Net,
                    "net.ipv4.ip_unprivileged_port_start".into(),
                    "81".into(),
                ),
                (Kind::Ipc, "kernel.shmmni".into(), "1234".into()),
            ],
        },
    )
    .expect("create namespaces");
    // Pinned: nsfs mounts with their own identity, not the daemon's.
    for k in [Kind::Net, Kind::Ipc, Kind::Uts] {
        let pin = p.path(k).expect("pinned");
        let own = inode(&Path::new("/proc/self/ns").join(k.name()));
        assert_ne!(inode(&pin), own, "{} namespace is the daemon's", k.name());
    }
    assert_eq!(mounts_under(&dir).len(), 3);
    // The daemon itself did not move.
    assert_eq!(nix::unistd::gethostname().expect("hostname"), host_host);
    assert_eq!(inode(Path::new("/proc/self/ns/net")), host_net);
    // Inside: the pod's hostname, only lo, and lo is up.
    // (/proc/net follows the reader's network namespace; /sys would not.)
    let out = inside(&p, "hostname; ip -o link");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "pod-a", "{out}");
    assert_eq!(lines.len(), 2, "more than lo in the pod: {out}");
    assert!(lines[1].contains(": lo:"), "{out}");
    assert!(lines[1].contains(",UP"), "lo is down: {out}");
    // The pod's sysctls are set in its namespaces, not the host's.
    let out = inside(
        &p,
        "cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/kernel/shmmni",
    );
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["81", "1234"]);
    let host = std::fs::read_to_string("/proc/sys/kernel/shmmni").expect("host shmmni");
    assert_ne!(host.trim(), "1234", "the sysctl leaked to the host");

    // A restarted daemon finds the same namespaces by path.
    let again = Pinned::open(&dir).expect("open pinned");
    assert_eq!(again, p);
    assert_eq!(
        inode(&again.path(Kind::Net).expect("net")),
        inode(&p.path(Kind::Net).expect("net"))
    );

    // Removal leaves no mount and no file, and may be repeated.
    p.remove().expect("remove");
    assert!(mounts_under(&dir).is_empty());
    for k in ["net", "ipc", "uts"] {
        assert!(!dir.join(k).exists(), "{k} pin left behind");
    }
    p.remove().expect("remove again");
}

#[test]
fn only_the_requested_kinds_are_made() {
    require_root();
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("ns");
    let p = Pinned::create(&dir, &[Kind::Ipc], &Setup::default()).expect("create");
    assert_eq!(p.kinds(), &[Kind::Ipc]);
    assert!(p.path(Kind::Net).is_none());
    assert!(!dir.join("net").exists());
    // hostNetwork pods join nothing: the host's interfaces are seen.
    let out = inside(&p, "ip -o link | wc -l");
    let host = Command::new("ip")
        .args(["-o", "link"])
        .output()
        .expect("ip link");
    let host_ifaces = String::from_utf8_lossy(&host.stdout).lines().count();
    assert_eq!(out.trim(), host_ifaces.to_string());
    p.remove().expect("remove");
}

#[test]
fn a_file_that_is_not_a_namespace_is_refused() {
    require_root();
    let tmp = tempfile::tempdir().expect("tmp");
    std::fs::write(tmp.path().join("net"), "").expect("write");
    assert!(matches!(
        Pinned::open(tmp.path()),
        Err(NsError::NotPinned(_))
    ));
    // An invalid hostname fails the creation and leaves nothing pinned.
    let dir = tmp.path().join("ns");
    let e = Pinned::create(
        &dir,
        &[Kind::Net, Kind::Uts],
        &Setup {
            hostname: Some("x".repeat(100)),
            ..Setup::default()
        },
    )
    .expect_err("hostname too long");
    assert!(e.to_string().contains("sethostname"), "{e}");
    assert!(mounts_under(&dir).is_empty(), "{:?}", mounts_under(&dir));
    assert!(!dir.join("net").exists());
    assert!(!dir.join("uts").exists());
}

/// A crash between creating a pin file and mounting the namespace on it
/// leaves a plain file beside real pins; `Pinned::open` refuses such a
/// directory, and teardown used to skip unpinning altogether, leaving the
/// real pins mounted and the pod's directory busy forever. `unpin_all`
/// takes every pin down whatever its state.
#[test]
fn unpin_all_takes_down_pins_beside_a_half_made_one() {
    require_root();
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("ns");
    Pinned::create(&dir, &[Kind::Net, Kind::Uts], &Setup::default()).expect("create");
    std::fs::write(dir.join("ipc"), b"").expect("a pin file never mounted");
    assert!(
        Pinned::open(&dir).is_err(),
        "open refuses the half-made pin"
    );
    Pinned::unpin_all(&dir).expect("unpin all");
    assert!(
        mounts_under(tmp.path()).is_empty(),
        "{:?}",
        mounts_under(tmp.path())
    );
    std::fs::remove_dir(&dir).expect("the directory is no longer busy");
    Pinned::unpin_all(&dir).expect("again: nothing left is fine");
}
