//! Drives an OCI runtime through the runc command line. Any runc-compatible
//! binary works: `carapace-runtime` by default, `runc` or `crun` when the
//! caller names them, so the shim never links the runtime and the runtime
//! never knows a shim exists.
//!
//! The shim is a subreaper whose SIGCHLD handler (in `containerd-shim`)
//! reaps every child, so a runtime command's exit status cannot come from
//! `waitpid` here: it is taken from the exit monitor, subscribed before the
//! command is spawned so that no exit can be missed.

use std::ffi::OsString;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use containerd_shim::asynchronous::monitor::{monitor_subscribe, monitor_unsubscribe};
use containerd_shim::monitor::{Subject, Topic};

use crate::error::{Error, Result};

/// The runtime binary the shim uses when the caller names none.
pub const DEFAULT_BINARY: &str = "carapace-runtime";

/// One runtime binary plus the global flags every call of it takes.
#[derive(Clone, Debug)]
pub struct RuntimeCli {
    binary: PathBuf,
    root: Option<PathBuf>,
    systemd_cgroup: bool,
    log: PathBuf,
    protected: Arc<Mutex<Option<Protected>>>,
}

/// The binary as opened through a read-only overlay (`carapace-exe`),
/// or None where it cannot be (a script, no overlay), with the identity
/// of the file this was decided for: decided once per file, not per call.
#[derive(Debug)]
struct Protected {
    of: FileId,
    fd: Option<Arc<OwnedFd>>,
}

/// Whether `fd` is an ELF executable, which the kernel runs from
/// /proc/self/fd/N although the fd is close-on-exec. A script's
/// interpreter would have to open that path after the exec closed it.
fn is_elf(fd: &OwnedFd) -> bool {
    let mut magic = [0u8; 4];
    nix::sys::uio::pread(fd, &mut magic, 0).is_ok_and(|n| n == 4) && magic == *b"\x7fELF"
}

/// A file's device, inode and modification time (seconds, nanoseconds).
type FileId = (u64, u64, i64, i64);

/// What identifies the file at `path` now: a package upgrade replaces
/// the binary (a new inode) and the copy is made again.
fn identity(path: &Path) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.mtime(), m.mtime_nsec()))
}

/// File descriptors a runtime call hands on to the container (create, exec
/// without a terminal): they become the process's stdin/stdout/stderr.
#[derive(Debug, Default)]
pub struct PassFds {
    /// Read end the process gets as stdin.
    pub stdin: Option<OwnedFd>,
    /// Write end the process gets as stdout.
    pub stdout: Option<OwnedFd>,
    /// Write end the process gets as stderr.
    pub stderr: Option<OwnedFd>,
}

impl RuntimeCli {
    /// `binary` is a path or a name looked up next to the shim's own binary
    /// first (so an installed set of Carapace binaries finds its own
    /// runtime), then on PATH. `log` is the runtime's `--log` file (JSON),
    /// which is where a failing runtime's error message is read from.
    pub fn new(binary: &str, root: Option<PathBuf>, systemd_cgroup: bool, log: PathBuf) -> Self {
        RuntimeCli {
            binary: resolve_binary(binary),
            root,
            systemd_cgroup,
            log,
            protected: Arc::new(Mutex::new(None)),
        }
    }

    /// What to execute for the binary: /proc/self/fd/N of it opened
    /// through a detached read-only overlay, kept while the file stays
    /// the same, with the fd, which the caller holds until the command is
    /// spawned (a concurrent call may replace the copy and close it).
    /// The runtime must run from a copy a container cannot write
    /// (CVE-2019-5736); started from this one it sees that and skips
    /// re-executing itself from a copy of its own, a second process start
    /// in every call. Without an absolute path, for a script, or where
    /// the overlay cannot be made, the binary itself (which then
    /// re-executes).
    fn executable(&self) -> (PathBuf, Option<Arc<OwnedFd>>) {
        if !self.binary.is_absolute() {
            return (self.binary.clone(), None);
        }
        let Some(id) = identity(&self.binary) else {
            return (self.binary.clone(), None);
        };
        let mut cached = match self.protected.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if cached.as_ref().is_none_or(|p| p.of != id) {
            // Canonical, so that the name opened in the overlay is the
            // file itself and not a symlink leading out of it.
            let fd = std::fs::canonicalize(&self.binary).ok().and_then(|real| {
                match carapace_exe::overlay_copy(&real) {
                    Ok(fd) if is_elf(&fd) => Some(Arc::new(fd)),
                    Ok(_) => None,
                    Err(e) => {
                        log::debug!("read-only overlay of {}: {e}", real.display());
                        None
                    }
                }
            });
            *cached = Some(Protected { of: id, fd });
        }
        match cached.as_ref().and_then(|p| p.fd.as_ref()) {
            Some(fd) => (
                PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())),
                Some(fd.clone()),
            ),
            None => (self.binary.clone(), None),
        }
    }

    /// The binary in use, for messages.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// `create --bundle B --pid-file P [--console-socket S] ID`.
    pub async fn create(
        &self,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        console_socket: Option<&Path>,
        fds: PassFds,
    ) -> Result<()> {
        let mut args: Vec<OsString> = vec![
            "create".into(),
            "--bundle".into(),
            bundle.into(),
            "--pid-file".into(),
            pid_file.into(),
        ];
        push_console(&mut args, console_socket);
        args.push(id.into());
        self.run(args, Some(fds)).await.map(drop)
    }

    /// `restore --image-path I --work-path W --bundle B --pid-file P
    /// --detach ID`: the container is made from a CRIU dump, its
    /// processes stopped until `start` (carapace-runtime's semantics).
    pub async fn restore(
        &self,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        images: &Path,
        work: &Path,
        fds: PassFds,
    ) -> Result<()> {
        let args: Vec<OsString> = vec![
            "restore".into(),
            "--image-path".into(),
            images.into(),
            "--work-path".into(),
            work.into(),
            "--bundle".into(),
            bundle.into(),
            "--pid-file".into(),
            pid_file.into(),
            "--detach".into(),
            id.into(),
        ];
        self.run(args, Some(fds)).await.map(drop)
    }

    /// `checkpoint --image-path I --leave-running ID`: CRIU's images (and
    /// its dump.log) go to `images`; the container runs on.
    pub async fn checkpoint(&self, id: &str, images: &Path) -> Result<()> {
        let args: Vec<OsString> = vec![
            "checkpoint".into(),
            "--image-path".into(),
            images.into(),
            "--leave-running".into(),
            id.into(),
        ];
        self.run(args, None).await.map(drop)
    }

    /// Whether this is Carapace's own runtime, whose `restore` leaves the
    /// container created (runc's and crun's start it at once, which the
    /// Task API's create-then-start cannot follow).
    pub fn restores_created(&self) -> bool {
        self.binary.file_name().is_some_and(|n| n == DEFAULT_BINARY)
    }

    /// `exec --detach --process F --pid-file P [--tty --console-socket S] ID`.
    pub async fn exec(
        &self,
        id: &str,
        process_file: &Path,
        pid_file: &Path,
        console_socket: Option<&Path>,
        fds: PassFds,
    ) -> Result<()> {
        let mut args: Vec<OsString> = vec![
            "exec".into(),
            "--detach".into(),
            "--process".into(),
            process_file.into(),
            "--pid-file".into(),
            pid_file.into(),
        ];
        push_console(&mut args, console_socket);
        args.push(id.into());
        self.run(args, Some(fds)).await.map(drop)
    }

    /// `start ID`: releases the created process into the user program.
    pub async fn start(&self, id: &str) -> Result<()> {
        self.run(vec!["start".into(), id.into()], None)
            .await
            .map(drop)
    }

    /// `kill [--all] ID SIGNAL`.
    pub async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<()> {
        let mut args: Vec<OsString> = vec!["kill".into()];
        if all {
            args.push("--all".into());
        }
        args.push(id.into());
        args.push(signal.to_string().into());
        self.run(args, None)
            .await
            .map(drop)
            .map_err(|e| gone_as_not_found(id, e))
    }

    /// `delete [--force] ID`.
    pub async fn delete(&self, id: &str, force: bool) -> Result<()> {
        let mut args: Vec<OsString> = vec!["delete".into()];
        if force {
            args.push("--force".into());
        }
        args.push(id.into());
        self.run(args, None)
            .await
            .map(drop)
            .map_err(|e| gone_as_not_found(id, e))
    }

    /// `pause ID`.
    pub async fn pause(&self, id: &str) -> Result<()> {
        self.run(vec!["pause".into(), id.into()], None)
            .await
            .map(drop)
    }

    /// `resume ID`.
    pub async fn resume(&self, id: &str) -> Result<()> {
        self.run(vec!["resume".into(), id.into()], None)
            .await
            .map(drop)
    }

    /// `update --resources FILE ID`.
    pub async fn update(&self, id: &str, resources_file: &Path) -> Result<()> {
        self.run(
            vec![
                "update".into(),
                "--resources".into(),
                resources_file.into(),
                id.into(),
            ],
            None,
        )
        .await
        .map(drop)
    }

    /// `ps --format json ID`: host PIDs of every process of the container.
    pub async fn ps(&self, id: &str) -> Result<Vec<i32>> {
        let out = self
            .run(
                vec!["ps".into(), "--format".into(), "json".into(), id.into()],
                None,
            )
            .await?;
        let text = String::from_utf8_lossy(&out);
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed == "null" {
            return Ok(Vec::new());
        }
        serde_json::from_str(trimmed).map_err(|e| Error::Runtime {
            command: "ps".into(),
            message: format!("unparsable output {trimmed:?}: {e}"),
        })
    }

    /// The command, and the fd of the protected copy it executes, to be
    /// kept open until the command is spawned.
    fn command(&self, args: &[OsString]) -> (Command, Option<Arc<OwnedFd>>) {
        // The fd of a protected copy is close-on-exec: the child still
        // has it when the kernel resolves /proc/self/fd/N.
        let (exe, copy) = self.executable();
        let mut c = Command::new(exe);
        c.arg0(&self.binary);
        if let Some(root) = &self.root {
            c.arg("--root").arg(root);
        }
        c.arg("--log")
            .arg(&self.log)
            .arg("--log-format")
            .arg("json");
        if self.systemd_cgroup {
            c.arg("--systemd-cgroup");
        }
        c.args(args);
        (c, copy)
    }

    /// Runs one command to completion. With `fds`, the runtime's stdio are
    /// the container's (runc passes them on), so its error text comes from
    /// the `--log` file only; without, stdout is returned and stderr kept
    /// for the error.
    async fn run(&self, args: Vec<OsString>, fds: Option<PassFds>) -> Result<Vec<u8>> {
        let verb = args
            .first()
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_default();
        let log_offset = std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
        let (mut cmd, _copy) = self.command(&args);
        let capture = fds.is_none();
        match fds {
            Some(f) => {
                cmd.stdin(f.stdin.map(Stdio::from).unwrap_or_else(Stdio::null));
                cmd.stdout(f.stdout.map(Stdio::from).unwrap_or_else(Stdio::null));
                cmd.stderr(f.stderr.map(Stdio::from).unwrap_or_else(Stdio::null));
            }
            None => {
                cmd.stdin(Stdio::null());
                cmd.stdout(Stdio::piped());
                cmd.stderr(Stdio::piped());
            }
        }
        let sub = monitor_subscribe(Topic::Pid)
            .await
            .map_err(Error::Monitor)?;
        let spawned = cmd.spawn();
        // The command holds its copies of the passed fds; ours close here so
        // the container's pipes see end-of-file when the container is done.
        drop(cmd);
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                let _ = monitor_unsubscribe(sub.id).await;
                return Err(Error::Spawn {
                    binary: self.binary.clone(),
                    source: e,
                });
            }
        };
        let pid = child.id() as i32;
        let (out, err) = if capture {
            let stdout = child.stdout.take();
            let stderr = child.stderr.take();
            let joined = tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                let mut err = Vec::new();
                let t = std::thread::spawn(move || {
                    let mut e = Vec::new();
                    if let Some(mut s) = stderr {
                        let _ = s.read_to_end(&mut e);
                    }
                    e
                });
                if let Some(mut s) = stdout {
                    let _ = s.read_to_end(&mut out);
                }
                err = t.join().unwrap_or(err);
                (out, err)
            })
            .await;
            joined.unwrap_or_default()
        } else {
            (Vec::new(), Vec::new())
        };
        let mut rx = sub.rx;
        let mut code = None;
        while let Some(ev) = rx.recv().await {
            if let Subject::Pid(p) = ev.subject {
                if p == pid {
                    code = Some(ev.exit_code);
                    break;
                }
            }
        }
        let _ = monitor_unsubscribe(sub.id).await;
        let code = code.ok_or_else(|| Error::Runtime {
            command: verb.clone(),
            message: "exit status lost (exit monitor closed)".into(),
        })?;
        if code != 0 {
            let mut message = last_log_error(&self.log, log_offset).unwrap_or_default();
            if message.is_empty() {
                message = String::from_utf8_lossy(&err).trim().to_string();
            }
            if message.is_empty() {
                message = format!("exited with status {code}");
            }
            return Err(Error::Runtime {
                command: format!("{} {verb}", self.binary.display()),
                message,
            });
        }
        Ok(out)
    }
}

/// What runc-compatible runtimes say, in words, when the container or its
/// process is already gone (runc: "container does not exist", "container
/// not running", "process already finished"; crun: "container `x` does not
/// exist"; the kernel's "no such process").
const GONE: [&str; 4] = [
    "does not exist",
    "not running",
    "process already finished",
    "no such process",
];

/// The runtime CLI speaks text; the shim's callers get codes. A runtime
/// error saying the container or process is already gone becomes NotFound
/// here, the one place those words are read, so teardown can treat it as
/// done without matching messages across the daemon ↔ shim protocol.
fn gone_as_not_found(id: &str, e: Error) -> Error {
    match &e {
        Error::Runtime { message, .. }
            if GONE
                .iter()
                .any(|w| message.to_ascii_lowercase().contains(w)) =>
        {
            Error::NotFound(format!("container {id:?} is gone: {e}"))
        }
        _ => e,
    }
}

/// Adds `--console-socket S` for a process created with a terminal.
fn push_console(args: &mut Vec<OsString>, console_socket: Option<&Path>) {
    if let Some(s) = console_socket {
        args.push("--console-socket".into());
        args.push(s.into());
    }
}

/// Finds `binary` when it is a bare name: beside our own executable, then
/// on PATH (left to `execvp`).
fn resolve_binary(binary: &str) -> PathBuf {
    if binary.contains('/') {
        return PathBuf::from(binary);
    }
    if let Ok(me) = std::env::current_exe() {
        if let Some(dir) = me.parent() {
            let beside = dir.join(binary);
            if beside.is_file() {
                return beside;
            }
        }
    }
    PathBuf::from(binary)
}

/// The message of the last error-level line the runtime wrote to its JSON
/// log after `offset`: how runc (and carapace-runtime) report failures when
/// their stderr belongs to the container.
fn last_log_error(log: &Path, offset: u64) -> Option<String> {
    let mut f = std::fs::File::open(log).ok()?;
    f.seek(SeekFrom::Start(offset)).ok()?;
    let mut text = String::new();
    f.read_to_string(&mut text).ok()?;
    parse_last_error(&text)
}

/// See [`last_log_error`]; split out to be tested without files.
fn parse_last_error(text: &str) -> Option<String> {
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| {
            matches!(
                v.get("level").and_then(|l| l.as_str()),
                Some("error" | "fatal")
            )
        })
        .and_then(|v| v.get("msg").and_then(|m| m.as_str()).map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shim runs the runtime from a read-only overlay copy, kept
    /// while the binary stays the same and made again once it is
    /// replaced (an upgrade renames a new file over it). A script runs
    /// by its path: its interpreter could not open the copy.
    #[test]
    fn the_runtime_runs_from_a_protected_copy_of_the_current_binary() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the mount API needs root (CI runs the tests as root)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("carapace-runtime");
        // Two different ELF executables: this test program, and the same
        // with a byte more (a standalone ELF everywhere, where /bin/true
        // may be a busybox applet that goes by its name).
        let me = std::fs::read(std::env::current_exe().expect("test exe")).expect("read");
        let install = |bytes: &[u8]| {
            let tmp = dir.path().join("new");
            std::fs::write(&tmp, bytes).expect("write");
            std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .expect("chmod");
            std::fs::rename(&tmp, &bin).expect("rename");
        };
        let size_of_copy = |cli: &RuntimeCli| {
            let (path, _copy) = cli.executable();
            std::fs::metadata(&path).expect("stat the copy").len()
        };
        install(&me);
        let cli = RuntimeCli::new(
            bin.to_str().expect("utf8"),
            None,
            false,
            dir.path().join("log"),
        );
        let first = cli.executable().0;
        assert!(first.starts_with("/proc/self/fd"), "{}", first.display());
        let f = std::fs::File::open(&first).expect("open the copy");
        assert!(
            carapace_exe::is_protected(&f),
            "{} is not protected",
            first.display()
        );
        assert_eq!(cli.executable().0, first, "the copy was made again");
        // It runs (the test harness lists its tests and exits 0).
        let (exe, _copy) = cli.executable();
        let listed = Command::new(exe)
            .arg("--list")
            .stdout(Stdio::null())
            .status()
            .expect("run the copy");
        assert!(listed.success(), "the copy does not run: {listed}");
        assert_eq!(size_of_copy(&cli), me.len() as u64);
        let mut longer = me.clone();
        longer.push(0);
        install(&longer);
        assert_eq!(
            size_of_copy(&cli),
            me.len() as u64 + 1,
            "still the replaced binary"
        );
        std::fs::write(&bin, "#!/bin/sh\nexit 0\n").expect("write a script");
        assert_eq!(cli.executable().0, bin, "a script runs from a copy");
        assert!(
            cli.command(&[]).0.status().expect("run").success(),
            "the script failed"
        );
        let relative = RuntimeCli::new("./carapace-runtime", None, false, dir.path().join("log"));
        assert_eq!(relative.executable().0, PathBuf::from("./carapace-runtime"));
    }

    #[test]
    fn a_runtime_saying_the_container_is_gone_is_not_found() {
        let runtime = |m: &str| Error::Runtime {
            command: "carapace-runtime kill".into(),
            message: m.into(),
        };
        for m in [
            "container abc does not exist",
            "container not running",
            "os: process already finished",
            "kill: No such process",
        ] {
            let e = gone_as_not_found("abc", runtime(m));
            assert!(matches!(e, Error::NotFound(_)), "{m}: {e:?}");
        }
        let other = gone_as_not_found("abc", runtime("permission denied"));
        assert!(matches!(other, Error::Runtime { .. }), "{other:?}");
    }

    #[test]
    fn last_error_line_of_the_json_log_is_the_message() {
        let log = r#"{"level":"warning","msg":"clamped","time":"t"}
{"level":"error","msg":"first","time":"t"}
not json
{"level":"error","msg":"container \"x\" does not exist","time":"t"}
{"level":"info","msg":"later","time":"t"}
"#;
        assert_eq!(
            parse_last_error(log).as_deref(),
            Some("container \"x\" does not exist")
        );
        assert_eq!(parse_last_error("{\"level\":\"info\",\"msg\":\"x\"}"), None);
    }

    #[test]
    fn bare_names_fall_back_to_path_lookup() {
        assert_eq!(
            resolve_binary("/usr/sbin/runc"),
            PathBuf::from("/usr/sbin/runc")
        );
        assert_eq!(
            resolve_binary("no-such-runtime-binary"),
            PathBuf::from("no-such-runtime-binary")
        );
    }
}
