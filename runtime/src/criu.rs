//! Checkpoint and restore through CRIU's command line, the way runc drives
//! it: what of a container CRIU must be told is external (bind mounts, a
//! network or PID namespace joined by path, the caller's stdio pipes) and
//! how each is found again at restore. The argument lists are built by pure
//! functions so the mapping is unit-tested without CRIU.

use std::path::{Path, PathBuf};
use std::process::Command;

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{Error, Result};
use crate::rootfs::options;

/// The file in the images directory that names the init's stdio as it was
/// at dump time (runc's name and JSON form: an array of readlink targets of
/// fds 0, 1, 2), so restore can hand the new pipes in their place.
pub const DESCRIPTORS: &str = "descriptors.json";

/// The CRIU binary: `CARAPACE_CRIU` when set (tests), else `criu` on PATH.
pub fn binary() -> PathBuf {
    std::env::var_os("CARAPACE_CRIU")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("criu"))
}

/// What of a container CRIU cannot take: refused before CRIU runs, with
/// the reason.
pub fn check_supported(spec: &Spec) -> Result<()> {
    if spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false)
    {
        return Err(Error::Unsupported(
            "checkpoint/restore of a container with a terminal".into(),
        ));
    }
    if namespace(spec, LinuxNamespaceType::User).is_some() {
        return Err(Error::Unsupported(
            "checkpoint/restore of a container in a user namespace".into(),
        ));
    }
    Ok(())
}

/// The spec's namespace of `kind`, with its path ("" when new).
fn namespace(spec: &Spec, kind: LinuxNamespaceType) -> Option<String> {
    spec.linux()
        .as_ref()?
        .namespaces()
        .as_ref()?
        .iter()
        .find(|n| n.typ() == kind)
        .map(|n| {
            n.path()
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        })
}

/// The CRIU key of an external namespace, runc's: `extRootNetNS`, ...
fn ns_key(kind: LinuxNamespaceType) -> &'static str {
    match kind {
        LinuxNamespaceType::Pid => "extRootPidNS",
        _ => "extRootNetNS",
    }
}

/// The CRIU name of a namespace kind for `--external`/`--join-ns`.
fn ns_name(kind: LinuxNamespaceType) -> &'static str {
    match kind {
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        _ => "",
    }
}

/// The spec's bind mounts as (destination, source): CRIU cannot dump what
/// they show (it belongs to the host), so each is external, keyed by its
/// destination, and bound again from its source at restore.
pub fn bind_mounts(spec: &Spec) -> Vec<(String, PathBuf)> {
    spec.mounts()
        .iter()
        .flatten()
        .filter(|m| {
            m.typ().as_deref() == Some("bind")
                || options::parse(m.options().as_deref().unwrap_or(&[])).is_bind()
        })
        .filter_map(|m| {
            let dest = m.destination().display().to_string();
            m.source().clone().map(|s| (dest, s))
        })
        .collect()
}

/// Options of a dump.
#[derive(Debug, Clone, Default)]
pub struct DumpOptions {
    /// Where CRIU writes its images.
    pub images: PathBuf,
    /// Where CRIU writes its log (dump.log) and temporary files.
    pub work: PathBuf,
    /// Let the container run on after the dump (kubelet's forensic
    /// checkpoint); otherwise CRIU kills it once dumped.
    pub leave_running: bool,
    /// Dump established TCP connections (they are refused otherwise).
    pub tcp_established: bool,
    /// Dump held file locks.
    pub file_locks: bool,
}

/// `criu dump` arguments for the container whose init is `pid`.
/// `ns_inode` gives the inode of a namespace file (a joined netns or
/// pidns becomes external under runc's key).
pub fn dump_args(
    spec: &Spec,
    pid: i32,
    rootfs: &Path,
    o: &DumpOptions,
    ns_inode: impl Fn(&str) -> Result<u64>,
) -> Result<Vec<String>> {
    let mut a: Vec<String> = vec![
        "dump".into(),
        "--tree".into(),
        pid.to_string(),
        "--images-dir".into(),
        o.images.display().to_string(),
        "--work-dir".into(),
        o.work.display().to_string(),
        "--log-file".into(),
        "dump.log".into(),
        "-v4".into(),
        "--root".into(),
        rootfs.display().to_string(),
        "--manage-cgroups=soft".into(),
        // nftables rather than CRIU's default iptables: no iptables-restore
        // binary needed, and it is Debian's default firewall backend.
        "--network-lock".into(),
        "nftables".into(),
    ];
    if o.leave_running {
        a.push("--leave-running".into());
    }
    if o.tcp_established {
        a.push("--tcp-established".into());
    }
    if o.file_locks {
        a.push("--file-locks".into());
    }
    for (dest, _) in bind_mounts(spec) {
        a.push("--external".into());
        a.push(format!("mnt[{dest}]:{dest}"));
    }
    for kind in [LinuxNamespaceType::Network, LinuxNamespaceType::Pid] {
        if let Some(path) = namespace(spec, kind).filter(|p| !p.is_empty()) {
            let ino = ns_inode(&path)?;
            a.push("--external".into());
            a.push(format!("{}[{ino}]:{}", ns_name(kind), ns_key(kind)));
        }
    }
    Ok(a)
}

/// Options of a restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// The images of the dump.
    pub images: PathBuf,
    /// Where CRIU writes restore.log and its temporary files.
    pub work: PathBuf,
    /// The mount point CRIU uses as the container's root.
    pub root: PathBuf,
    /// Where CRIU writes the restored init's PID.
    pub pid_file: PathBuf,
    /// The container's cgroup, relative to the hierarchy's root.
    pub cgroup: String,
    /// Restore established TCP connections.
    pub tcp_established: bool,
    /// Restore file locks.
    pub file_locks: bool,
}

/// An fd the restoring CRIU inherits, at a number of its own (CRIU's own
/// stdio stays apart from the container's, so nothing CRIU prints lands in
/// the container's log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inherit {
    /// The runtime's stdio fd `from` (the caller's new pipe), passed at
    /// `fd`, takes the place of the dumped pipe.
    Stdio {
        /// 0, 1 or 2.
        from: i32,
        /// The fd number CRIU gets it at.
        fd: i32,
    },
    /// A namespace file opened by the runtime, passed at `fd`.
    Namespace {
        /// The spec's path of it.
        path: String,
        /// The fd number CRIU gets it at.
        fd: i32,
        /// Whether it is a PID namespace (else a network one).
        pid: bool,
    },
}

/// `criu restore` arguments, plus the fds to pass (numbered from
/// `first_fd`). `descriptors` is the dump's descriptors.json content.
pub fn restore_args(
    spec: &Spec,
    o: &RestoreOptions,
    descriptors: &[String],
    first_fd: i32,
) -> (Vec<String>, Vec<Inherit>) {
    let mut a: Vec<String> = vec![
        "restore".into(),
        "--images-dir".into(),
        o.images.display().to_string(),
        "--work-dir".into(),
        o.work.display().to_string(),
        "--log-file".into(),
        "restore.log".into(),
        "-v4".into(),
        "--root".into(),
        o.root.display().to_string(),
        // The restored tree becomes a child of the runtime's parent (the
        // shim, a subreaper), as a created init is.
        "--restore-detached".into(),
        "--restore-sibling".into(),
        // Stopped until `start`: restore is the create of a restored
        // container, start its release.
        "--leave-stopped".into(),
        "--pidfile".into(),
        o.pid_file.display().to_string(),
        "--manage-cgroups=soft".into(),
        "--cgroup-root".into(),
        format!("/{}", o.cgroup.trim_start_matches('/')),
        "--evasive-devices".into(),
    ];
    if o.tcp_established {
        a.push("--tcp-established".into());
    }
    if o.file_locks {
        a.push("--file-locks".into());
    }
    for (dest, source) in bind_mounts(spec) {
        a.push("--external".into());
        a.push(format!("mnt[{dest}]:{}", source.display()));
    }
    let mut inherit = Vec::new();
    let mut next = first_fd;
    let mut seen: Vec<&str> = Vec::new();
    for (i, d) in descriptors.iter().enumerate().take(3) {
        // stdout and stderr may have been one pipe: one key, one fd.
        if d.starts_with("pipe:") && !seen.contains(&d.as_str()) {
            seen.push(d);
            a.push("--inherit-fd".into());
            a.push(format!("fd[{next}]:{d}"));
            inherit.push(Inherit::Stdio {
                from: i as i32,
                fd: next,
            });
            next += 1;
        }
    }
    for kind in [LinuxNamespaceType::Network, LinuxNamespaceType::Pid] {
        if let Some(path) = namespace(spec, kind).filter(|p| !p.is_empty()) {
            a.push("--inherit-fd".into());
            a.push(format!("fd[{next}]:{}", ns_key(kind)));
            inherit.push(Inherit::Namespace {
                path,
                fd: next,
                pid: kind == LinuxNamespaceType::Pid,
            });
            next += 1;
        }
    }
    // The dump ran inside the old pod's uts/ipc ([`joined_pod_namespaces`]),
    // so its images hold neither: CRIU joins the new pod's and the
    // restored tree inherits them.
    for kind in [LinuxNamespaceType::Uts, LinuxNamespaceType::Ipc] {
        if let Some(path) = namespace(spec, kind).filter(|p| !p.is_empty()) {
            a.push("--join-ns".into());
            a.push(format!("{}:{path}", ns_name(kind)));
        }
    }
    (a, inherit)
}

/// The error lines of a CRIU log (with the line before each), for the
/// message of a failed dump or restore: CRIU says nothing useful on stderr.
pub fn log_errors(log: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(log) else {
        return format!("(no CRIU log at {})", log.display());
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut out: Vec<&str> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if l.contains("Error") {
            if i > 0 && !out.contains(&lines[i - 1]) && !lines[i - 1].contains("Error") {
                out.push(lines[i - 1]);
            }
            out.push(l);
        }
    }
    // The last few say why; the first ones are often probes CRIU shrugs
    // off.
    let tail = out.len().saturating_sub(6);
    out[tail..].join("; ")
}

/// The namespaces of kinds uts and ipc the spec joins by path (the pod's):
/// CRIU dumps every namespace of the container that differs from its own
/// and restores each as a new one, so the dump runs inside these (they are
/// then not the container's to dump) and the restore joins the new pod's.
pub fn joined_pod_namespaces(spec: &Spec) -> Vec<(&'static str, nix::sched::CloneFlags)> {
    [
        (
            LinuxNamespaceType::Uts,
            "uts",
            nix::sched::CloneFlags::CLONE_NEWUTS,
        ),
        (
            LinuxNamespaceType::Ipc,
            "ipc",
            nix::sched::CloneFlags::CLONE_NEWIPC,
        ),
    ]
    .into_iter()
    .filter(|(kind, _, _)| namespace(spec, *kind).is_some_and(|p| !p.is_empty()))
    .map(|(_, name, flag)| (name, flag))
    .collect()
}

/// Runs a dump with `args`, in the namespaces `join` (opened files and
/// their kinds); a failure carries the log's errors.
pub fn run_dump(
    args: &[String],
    log: &Path,
    join: Vec<(std::fs::File, nix::sched::CloneFlags)>,
) -> Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(binary());
    cmd.args(args);
    let fds: Vec<(i32, i32)> = join
        .iter()
        .map(|(f, flag)| (f.as_raw_fd(), flag.bits()))
        .collect();
    // SAFETY: the closure only calls setns(2), async-signal-safe, on fds
    // that stay open (owned by `join`) until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            for (fd, flag) in &fds {
                if libc::setns(*fd, *flag) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let out = cmd.output().map_err(|e| Error::Io {
        what: format!("run {}", binary().display()),
        source: e,
    })?;
    drop(join);
    if out.status.success() {
        return Ok(());
    }
    Err(Error::Criu(format!(
        "criu dump failed ({}): {}",
        out.status,
        log_errors(log)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"args": ["sh"], "cwd": "/", "terminal": false, "user": {"uid": 0, "gid": 0}},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/etc/hosts", "type": "bind", "source": "/pod/hosts", "options": ["rbind", "ro"]},
                {"destination": "/data", "source": "/vol/data", "options": ["bind"]}
            ],
            "linux": {"namespaces": [
                {"type": "pid"}, {"type": "mount"},
                {"type": "network", "path": "/run/netns/pod"},
                {"type": "uts", "path": "/proc/9/ns/uts"},
                {"type": "ipc", "path": "/proc/9/ns/ipc"}
            ]}
        }))
        .expect("spec")
    }

    #[test]
    fn a_dump_marks_binds_and_the_joined_netns_external() {
        let o = DumpOptions {
            images: "/img".into(),
            work: "/work".into(),
            leave_running: true,
            ..Default::default()
        };
        let a = dump_args(&spec(), 42, Path::new("/b/rootfs"), &o, |p| {
            assert_eq!(p, "/run/netns/pod");
            Ok(4026532000)
        })
        .expect("args");
        let s = a.join(" ");
        assert!(s.starts_with("dump --tree 42 --images-dir /img"), "{s}");
        assert!(s.contains("--leave-running"), "{s}");
        assert!(s.contains("--external mnt[/etc/hosts]:/etc/hosts"), "{s}");
        assert!(s.contains("--external mnt[/data]:/data"), "{s}");
        assert!(!s.contains("mnt[/proc]"), "{s}");
        assert!(s.contains("--external net[4026532000]:extRootNetNS"), "{s}");
        // A PID namespace of its own is dumped, not external.
        assert!(!s.contains("pid["), "{s}");
    }

    #[test]
    fn a_restore_rebinds_sources_inherits_pipes_and_joins_the_pod() {
        let o = RestoreOptions {
            images: "/img".into(),
            work: "/work".into(),
            root: "/state/criu-root".into(),
            pid_file: "/state/pid".into(),
            cgroup: "kubepods/pod1/c1".into(),
            ..Default::default()
        };
        let d = vec![
            "/dev/null".to_string(),
            "pipe:[123]".to_string(),
            "pipe:[124]".to_string(),
        ];
        let (a, inherit) = restore_args(&spec(), &o, &d, 3);
        let s = a.join(" ");
        assert!(s.contains("--external mnt[/etc/hosts]:/pod/hosts"), "{s}");
        assert!(s.contains("--external mnt[/data]:/vol/data"), "{s}");
        assert!(s.contains("--inherit-fd fd[3]:pipe:[123]"), "{s}");
        assert!(s.contains("--inherit-fd fd[4]:pipe:[124]"), "{s}");
        assert!(s.contains("--inherit-fd fd[5]:extRootNetNS"), "{s}");
        assert!(s.contains("--join-ns uts:/proc/9/ns/uts"), "{s}");
        assert!(s.contains("--join-ns ipc:/proc/9/ns/ipc"), "{s}");
        assert!(s.contains("--cgroup-root /kubepods/pod1/c1"), "{s}");
        assert!(s.contains("--leave-stopped"), "{s}");
        assert_eq!(
            inherit,
            vec![
                Inherit::Stdio { from: 1, fd: 3 },
                Inherit::Stdio { from: 2, fd: 4 },
                Inherit::Namespace {
                    path: "/run/netns/pod".into(),
                    fd: 5,
                    pid: false
                }
            ]
        );
        // One pipe behind stdout and stderr is inherited once.
        let one = vec![
            "/dev/null".to_string(),
            "pipe:[7]".into(),
            "pipe:[7]".into(),
        ];
        let (a, inherit) = restore_args(&spec(), &o, &one, 3);
        assert_eq!(a.iter().filter(|x| x.contains("pipe:[7]")).count(), 1);
        assert_eq!(inherit[0], Inherit::Stdio { from: 1, fd: 3 });
    }

    #[test]
    fn terminals_and_user_namespaces_are_refused() {
        let mut s = spec();
        assert!(check_supported(&s).is_ok());
        let mut v = serde_json::to_value(&s).expect("json");
        v["process"]["terminal"] = true.into();
        s = serde_json::from_value(v).expect("spec");
        assert!(check_supported(&s).is_err());
        let mut v = serde_json::to_value(spec()).expect("json");
        v["linux"]["namespaces"]
            .as_array_mut()
            .expect("array")
            .push(serde_json::json!({"type": "user"}));
        let s: Spec = serde_json::from_value(v).expect("spec");
        assert!(check_supported(&s).is_err());
    }

    #[test]
    fn log_errors_keep_the_last_reasons() {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("dump.log");
        std::fs::write(
            &p,
            "(0.1) ok\n(0.2) Collecting\n(0.3) Error (a.c:1): first\n(0.4) fine\n(0.5) Error (b.c:2): Dumping FAILED.\n",
        )
        .expect("write");
        let s = log_errors(&p);
        assert!(s.contains("first") && s.contains("Dumping FAILED"), "{s}");
        assert!(s.contains("Collecting"), "{s}");
    }
}
