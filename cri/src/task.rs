//! A process the daemon runs under a shim of its own — a pod's infra
//! process or a container — and how it is ended for good: the same steps
//! whether a pod or a container is torn down, after a failure, a removal
//! or a crash.

use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use crate::shim_client::{self, Exit, Launch, Shim, ShimError};

/// SIGKILL: a task being torn down gets no grace.
const SIGKILL: u32 = 9;

/// What teardown needs to know of a task.
#[derive(Clone, Copy, Debug)]
pub struct Task<'a> {
    /// The task's (pod's or container's) ID.
    pub id: &'a str,
    /// Its bundle directory.
    pub bundle: &'a Path,
    /// The shim address the daemon recorded ("" if none yet).
    pub shim_address: &'a str,
    /// The OCI runtime that runs it.
    pub runtime_binary: &'a Path,
    /// That runtime's `--root`.
    pub runtime_root: &'a Path,
    /// Its `linux.cgroupsPath` ("" if not known).
    pub cgroups_path: &'a str,
}

/// How [`Task::stop`] ended.
#[derive(Clone, Debug, Default)]
pub struct Stopped {
    /// The shim's PID, if it answered.
    pub shim_pid: Option<u32>,
    /// The task's exit, if the shim reported one.
    pub exit: Option<Exit>,
    /// The address the shim was looked for at, if any: [`Task::reap`]
    /// removes the socket of a shim it has to kill, which may have been
    /// found by its name alone.
    pub address: Option<String>,
}

/// The file in a task's bundle where its shim writes its address at start,
/// before the runtime creates anything. It is removed once the task is
/// known deleted and its shim done ([`Task::stop`]), so its absence means
/// there is nothing of the task left for the runtime to delete.
const ADDRESS_FILE: &str = "address";

/// The shim address of a task: recorded, or written by the shim into the
/// bundle before the daemon could record it (a crash in between).
pub fn address(recorded: &str, bundle: &Path) -> Option<String> {
    if !recorded.is_empty() {
        return Some(recorded.to_string());
    }
    std::fs::read_to_string(bundle.join(ADDRESS_FILE))
        .ok()
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
}

/// The file a `unix://` shim address names.
fn socket_path(address: &str) -> &Path {
    Path::new(address.strip_prefix("unix://").unwrap_or(address))
}

/// Removes the shim socket at `address` if it is a socket nothing listens
/// on any more. The shim removes its own on the way out; one killed (by
/// an operator, the OOM killer) leaves it, and once its task is settled
/// nothing else knows where it is. A socket that answers is a shim still
/// serving, and one that cannot be told (a full backlog) is left alone.
async fn remove_dead_socket(address: &str) {
    let path = socket_path(address);
    if !std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        return;
    }
    match tokio::net::UnixStream::connect(path).await {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => remove_socket(path),
        _ => {}
    }
}

/// Removes a shim's socket; one already gone is fine.
fn remove_socket(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(socket = %path.display(), error = %e, "remove a shim's socket"),
    }
}

impl Task<'_> {
    /// Kills the task (every process of it), deletes it and ends its shim.
    /// Idempotent: a shim that is gone is cleaned up with `carapace-shim
    /// delete` (which force-deletes the runtime's container); no shim at
    /// all is fine. `launch` names the shim binary and sockets.
    pub async fn stop(&self, launch: &Launch<'_>) -> Result<Stopped, ShimError> {
        let mut out = Stopped::default();
        // Without an address, carapace-shim's socket is still found by its
        // name: a shim the daemon died launching, or one killed after it
        // answered Shutdown and before it removed its socket.
        let Some(address) = address(self.shim_address, self.bundle).or_else(|| {
            shim_client::own_socket_address(launch).filter(|a| socket_path(a).exists())
        }) else {
            return Ok(out);
        };
        out.address = Some(address.clone());
        let shim = match Shim::connect(&address).await {
            Ok(shim) => shim,
            Err(e) if e.is_gone() => {
                self.cleanup(launch).await?;
                remove_dead_socket(&address).await;
                self.settled();
                return Ok(out);
            }
            Err(e) => return Err(e),
        };
        let mut deleted = false;
        out.shim_pid = shim.pid(self.id).await.ok();
        // A task whose init has exited needs no Kill to end: Delete kills
        // what it left behind in its cgroup (the runtime's `delete` does),
        // and Kill would run the runtime once more for the same (a stopped
        // container's removal, StopContainer having ended it).
        let stopped = matches!(
            shim.state(self.id, "").await.map(|s| s.status.enum_value()),
            Ok(Ok(containerd_shim_protos::api::Status::STOPPED))
        );
        let calls = async {
            let killed = if stopped {
                Ok(())
            } else {
                shim.kill(self.id, "", SIGKILL, true).await
            };
            match killed {
                Ok(()) => {}
                // The shim answers NotFound for a task or process that is
                // already gone (it reads the runtime's words, we read codes).
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
            match shim.wait(self.id, "").await {
                Ok(exit) => out.exit = Some(exit),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
            match shim.delete(self.id, "").await {
                Ok(_) => deleted = true,
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
            shim.shutdown(self.id).await
        };
        match calls.await {
            // A shim that answered NotFound to Delete may still be creating
            // the task (a daemon killed mid-create): reap must look.
            Ok(()) if deleted => {
                // carapace-shim serves one task and exits once it has
                // answered Shutdown for it, removing its socket on the way
                // out; the daemon removes it first, as a shim killed on
                // that way would leave it where no one would look again.
                // Connections already made are not affected. A shim v2 may
                // serve the pod's other tasks on the same socket: its own.
                if !launch.v2 {
                    remove_socket(socket_path(&address));
                }
                self.settled()
            }
            Ok(()) => {}
            // The shim went away in the middle (it exits with its task):
            // finish as for a shim that was already gone.
            Err(e) if e.is_gone() => {
                self.cleanup(launch).await?;
                remove_dead_socket(&address).await;
                self.settled();
            }
            Err(e) => return Err(e),
        }
        Ok(out)
    }

    /// Records that the runtime has nothing of the task left: its shim
    /// deleted it, or `carapace-shim delete` did. A later stop then has no
    /// shim to look for and [`Task::reap`] no runtime record to delete,
    /// which spared RemovePodSandbox three processes after StopPodSandbox.
    fn settled(&self) {
        match std::fs::remove_file(self.bundle.join(ADDRESS_FILE)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(task = %self.id, error = %e, "remove the shim's address file")
            }
        }
    }

    /// `carapace-shim delete` for a task whose shim is gone, if it ever got
    /// a bundle to run.
    async fn cleanup(&self, launch: &Launch<'_>) -> Result<(), ShimError> {
        if self.bundle.join("config.json").exists() {
            shim_client::cleanup(launch).await?;
        }
        Ok(())
    }

    /// Makes sure nothing of the task survives, whatever state its shim
    /// was left in — a daemon killed while the shim was still creating the
    /// process leaves a shim that answers NotFound now and creates the
    /// process a moment later. After [`Task::stop`]: the shim is killed if
    /// it still runs, every process left in the task's cgroup is killed
    /// until none is left, and the runtime's record of it is deleted —
    /// unless the task is settled (see [`ADDRESS_FILE`]).
    pub async fn reap(&self, stopped: &Stopped) {
        let settled = !self.bundle.join(ADDRESS_FILE).exists();
        if let Some(pid) = stopped.shim_pid.filter(|p| *p > 0) {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(self.id) {
                let killed = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                // A shim killed here (still shutting down after Shutdown)
                // cannot remove its own socket: do it for it, where stop
                // found it (by its name when no address was left).
                if killed.is_ok() {
                    let socket = stopped
                        .address
                        .clone()
                        .or_else(|| address(self.shim_address, self.bundle));
                    if let Some(a) = socket {
                        remove_socket(socket_path(&a));
                    }
                }
            }
        }
        if !self.cgroups_path.is_empty() {
            if let Ok(m) = carapace_cgroups::Manager::new(Some(self.cgroups_path), self.id, false) {
                for _ in 0..500 {
                    match m.pids() {
                        Ok(p) if !p.is_empty() => {
                            let _ = m.kill_all(nix::sys::signal::Signal::SIGKILL as i32);
                            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        }
                        _ => break,
                    }
                }
            }
        }
        if settled {
            return;
        }
        let _ = tokio::process::Command::new(self.runtime_binary)
            .arg("--root")
            .arg(self.runtime_root)
            .args(["delete", "--force", self.id])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A bundle, and a stand-in runtime that writes its arguments to `ran`.
    fn setup() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
        let d = tempfile::tempdir().expect("tmp");
        let bundle = d.path().join("bundle");
        std::fs::create_dir(&bundle).expect("bundle");
        let rt = d.path().join("runtime");
        let ran = d.path().join("ran");
        std::fs::write(
            &rt,
            format!("#!/bin/sh\necho \"$@\" >> {}\n", ran.display()),
        )
        .expect("runtime");
        std::fs::set_permissions(&rt, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        (d, bundle, rt)
    }

    fn task<'a>(bundle: &'a Path, rt: &'a Path) -> Task<'a> {
        Task {
            id: "t1",
            bundle,
            shim_address: "",
            runtime_binary: rt,
            runtime_root: Path::new("/nonexistent-root"),
            cgroups_path: "",
        }
    }

    #[tokio::test]
    async fn reap_runs_the_runtime_unless_the_task_is_settled() {
        let (d, bundle, rt) = setup();
        let ran = d.path().join("ran");
        // Never launched, or settled: no address file, no runtime run.
        task(&bundle, &rt).reap(&Stopped::default()).await;
        assert!(!ran.exists());
        // A shim that wrote its address may have had the task created.
        std::fs::write(bundle.join(ADDRESS_FILE), "unix:///nonexistent.sock").expect("address");
        task(&bundle, &rt).reap(&Stopped::default()).await;
        assert_eq!(
            std::fs::read_to_string(&ran).expect("ran"),
            "--root /nonexistent-root delete --force t1\n"
        );
    }

    #[tokio::test]
    async fn stopping_a_task_whose_shim_is_gone_settles_it() {
        let (d, bundle, rt) = setup();
        std::fs::write(bundle.join(ADDRESS_FILE), "unix:///nonexistent.sock").expect("address");
        let launch = Launch {
            binary: &rt,
            v2: false,
            id: "t1",
            bundle: &bundle,
            daemon_address: Path::new("/nonexistent-daemon.sock"),
            events_address: "unix:///nonexistent-events.sock",
            socket_dir: d.path(),
        };
        // No config.json: the runtime never had the task, nothing to clean.
        let stopped = task(&bundle, &rt).stop(&launch).await.expect("stop");
        assert!(stopped.shim_pid.is_none());
        assert!(!bundle.join(ADDRESS_FILE).exists());
        // A second stop finds nothing to do.
        task(&bundle, &rt).stop(&launch).await.expect("stop again");
        assert!(!d.path().join("ran").exists());
    }

    fn launch<'a>(d: &'a Path, bundle: &'a Path, rt: &'a Path) -> Launch<'a> {
        Launch {
            binary: rt,
            v2: false,
            id: "t1",
            bundle,
            daemon_address: Path::new("/nonexistent-daemon.sock"),
            events_address: "unix:///nonexistent-events.sock",
            socket_dir: d,
        }
    }

    /// A socket file nothing listens on: what a killed shim leaves. A
    /// process another test forks holds the listener until it execs.
    fn dead_socket(path: &Path) {
        drop(std::os::unix::net::UnixListener::bind(path).expect("bind"));
        while !std::os::unix::net::UnixStream::connect(path)
            .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    #[tokio::test]
    async fn a_shim_found_gone_leaves_no_socket() {
        let (d, bundle, rt) = setup();
        let sock = d.path().join("shim.sock");
        dead_socket(&sock);
        let address = format!("unix://{}", sock.display());
        std::fs::write(bundle.join(ADDRESS_FILE), &address).expect("address");
        let launch = launch(d.path(), &bundle, &rt);
        task(&bundle, &rt).stop(&launch).await.expect("stop");
        assert!(!sock.exists(), "the dead shim's socket is left");
        assert!(!bundle.join(ADDRESS_FILE).exists());
    }

    /// A shim killed after it answered Shutdown (its task settled, no
    /// address left anywhere) or before the daemon learnt its address: its
    /// socket is found by its name, and removed without a runtime run.
    #[tokio::test]
    async fn a_dead_shim_socket_is_found_by_its_name() {
        let (d, bundle, rt) = setup();
        let launch = launch(d.path(), &bundle, &rt);
        let address = shim_client::own_socket_address(&launch).expect("carapace-shim's");
        let sock = socket_path(&address).to_path_buf();
        dead_socket(&sock);
        task(&bundle, &rt).stop(&launch).await.expect("stop");
        assert!(!sock.exists(), "the dead shim's socket is left");
        assert!(!d.path().join("ran").exists());
        // A shim v2's sockets are its own: not looked for by that name.
        dead_socket(&sock);
        let v2 = Launch { v2: true, ..launch };
        task(&bundle, &rt).stop(&v2).await.expect("stop");
        assert!(sock.exists());
    }

    /// A shim reap kills takes its socket along, where stop found it
    /// when no address is left (a shim found by its socket's name).
    #[tokio::test]
    async fn a_shim_killed_by_reap_leaves_no_socket() {
        let (d, bundle, rt) = setup();
        let sock = d.path().join("shim.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
        // A stand-in shim: blocks reading its stdin, its arguments as a
        // shim server's.
        let address = format!("unix://{}", sock.display());
        let mut shim = std::process::Command::new("sh")
            .args(["-c", "read x", "carapace-shim", "-id", "t1", "-socket"])
            .arg(&address)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let cmdline = format!("/proc/{}/cmdline", shim.id());
        while !std::fs::read_to_string(&cmdline).is_ok_and(|c| c.contains("-socket")) {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        let stopped = Stopped {
            shim_pid: Some(shim.id()),
            address: Some(address),
            ..Stopped::default()
        };
        task(&bundle, &rt).reap(&stopped).await;
        let st = shim.wait().expect("wait");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&st),
            Some(9),
            "{st}"
        );
        assert!(!sock.exists(), "the killed shim's socket is left");
    }

    #[tokio::test]
    async fn only_a_socket_nothing_listens_on_is_removed() {
        let d = tempfile::tempdir().expect("tmp");
        let live = d.path().join("live.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&live).expect("bind");
        let file = d.path().join("file");
        std::fs::write(&file, b"not a socket").expect("file");
        let dead = d.path().join("dead.sock");
        dead_socket(&dead);
        for p in [&live, &file, &dead] {
            remove_dead_socket(&format!("unix://{}", p.display())).await;
        }
        assert!(
            live.exists(),
            "a socket that answers is a shim still serving"
        );
        assert!(file.exists());
        assert!(!dead.exists());
        // One already gone is fine.
        remove_dead_socket(&format!("unix://{}", dead.display())).await;
    }
}
