//! The shim's server mode (what `start` spawns): serve the Task API on the
//! socket until Shutdown, reaping children as their subreaper.
//!
//! `containerd-shim`'s own server loop registers the Task service only as
//! `containerd.task.v3.Task`, which containerd 2.x calls. containerd 1.6
//! and 1.7 — Debian 12 ships 1.6 — call `containerd.task.v2.Task`, whose
//! messages are the same. This loop serves both names.

use std::path::Path;
use std::sync::Arc;

use containerd_shim::asynchronous::monitor::monitor_notify_by_pid;
use containerd_shim::asynchronous::Shim;
use containerd_shim::{Config, Flags};
use containerd_shim_protos::shim_async::create_task;
use containerd_shim_protos::ttrpc::r#async::Server;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use tokio::signal::unix::{signal, SignalKind};

use crate::io_service::IoService;
use crate::proto::io_ttrpc::create_io;
use crate::publisher::Publisher;
use crate::service::Service;

/// The Task service name of the current API (containerd 2.x).
const TASK_V3: &str = "containerd.task.v3.Task";
/// The same service as containerd 1.x names it.
const TASK_V2: &str = "containerd.task.v2.Task";

/// Whether these command-line flags ask for server mode: no action, a
/// socket to serve.
pub fn is_server_mode(flags: &Flags) -> bool {
    flags.action.is_empty() && !flags.socket.is_empty() && !flags.info
}

/// Runs the server until Shutdown; returns the process exit code.
pub async fn serve(runtime_id: &str, flags: Flags) -> i32 {
    match serve_inner(runtime_id, &flags).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{runtime_id}: {e}");
            1
        }
    }
}

async fn serve_inner(runtime_id: &str, flags: &Flags) -> Result<(), String> {
    // Signal streams first: a child may exit as soon as one exists.
    let mut sigchld = signal(SignalKind::child()).map_err(|e| format!("SIGCHLD handler: {e}"))?;
    let mut sigterm =
        signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT handler: {e}"))?;
    let mut sigpipe = signal(SignalKind::pipe()).map_err(|e| format!("SIGPIPE handler: {e}"))?;
    nix::sys::prctl::set_child_subreaper(true).map_err(|e| format!("set subreaper: {e}"))?;

    let mut config = Config::default();
    let mut shim = Service::new(runtime_id, flags, &mut config).await;
    if !config.no_setup_logger {
        containerd_shim::logger::init(
            flags.debug,
            &config.default_log_level,
            &flags.namespace,
            &flags.id,
        )
        .map_err(|e| format!("logger: {e}"))?;
    }
    let ttrpc_address = std::env::var("TTRPC_ADDRESS")
        .map_err(|_| "TTRPC_ADDRESS is not set: no events endpoint to publish to".to_string())?;
    let publisher = Publisher::connect(&ttrpc_address)
        .await
        .map_err(|e| e.to_string())?;
    let service = shim.task_service(publisher);
    let idle_check = service.clone();
    let io = create_io(Arc::new(IoService::new(service.clone())));
    let task: Arc<dyn containerd_shim::Task + Send + Sync> = Arc::new(service);
    let mut v2 = create_task(task.clone());
    if let Some(svc) = v2.remove(TASK_V3) {
        v2.insert(TASK_V2.to_string(), svc);
    }

    let path = flags
        .socket
        .strip_prefix("unix://")
        .unwrap_or(&flags.socket);
    if let Some(dir) = Path::new(path).parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    }
    if Path::new(path).exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            // Another instance already serves this container.
            signal_started();
            return Ok(());
        }
        std::fs::remove_file(path).map_err(|e| format!("remove stale socket {path}: {e}"))?;
    }
    let mut server = Server::new()
        .bind(&format!("unix://{path}"))
        .map_err(|e| format!("listen on {path}: {e}"))?
        .register_service(create_task(task))
        .register_service(v2)
        .register_service(io);
    server
        .start()
        .await
        .map_err(|e| format!("serve on {path}: {e}"))?;
    signal_started();

    let mut exit = std::pin::pin!(shim.wait());
    loop {
        tokio::select! {
            _ = &mut exit => break,
            _ = sigchld.recv() => reap().await,
            // The container's fate is not tied to the caller's: keep
            // serving while one is held; an idle shim just goes.
            _ = sigterm.recv() => {
                if idle_check.is_idle().await {
                    break;
                }
                log::debug!("SIGTERM ignored while holding a container");
            }
            _ = sigint.recv() => {}
            _ = sigpipe.recv() => {}
        }
    }
    // The socket goes first: the server takes no new connection from here
    // on, and its shutdown waits for the open ones, a window in which a
    // shim killed (by an operator, the OOM killer) would leave it behind.
    let _ = std::fs::remove_file(path);
    let _ = server.shutdown().await;
    Ok(())
}

/// Reaps every exited child and tells the exit monitor.
async fn reap() {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => {
                let _ = monitor_notify_by_pid(pid.as_raw(), code).await;
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) => {
                let _ = monitor_notify_by_pid(pid.as_raw(), 128 + sig as i32).await;
            }
            Ok(WaitStatus::StillAlive) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

/// `start` waits for our stdout to close: point it at stderr (which the
/// spawner set to /dev/null) once the socket serves.
fn signal_started() {
    // SAFETY: dup2 on the process's own standard descriptors.
    unsafe {
        libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO);
    }
}
