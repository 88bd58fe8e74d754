//! The shim v2 process life cycle (`containerd-shim`'s [`Shim`] trait):
//! `start` spawns the long-lived server and prints its address, `delete`
//! cleans up after a shim that is gone, and the server mode serves the
//! Task API until Shutdown.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use containerd_shim::asynchronous::{spawn, ExitSignal, Shim};
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{api, Config, Error, Flags, StartOpts};

use crate::process::{to_timestamp, ExitFile};
use crate::publisher::Publisher;
use crate::task::{unmount_rootfs, RuntimeChoice, TaskService};

/// Environment variable naming the directory for shim sockets; the
/// Carapace daemon sets it to its state dir. Otherwise the socket goes where
/// containerd asks, or to containerd's default.
pub const SOCKET_DIR_ENV: &str = "CARAPACE_SHIM_SOCKET_DIR";

/// Exit status reported for a container whose shim died without recording
/// its exit: 128 + SIGKILL, as containerd reports it.
const UNKNOWN_EXIT: u32 = 128 + 9;

/// One shim instance.
pub struct Service {
    id: String,
    namespace: String,
    bundle: PathBuf,
    exit: Arc<ExitSignal>,
}

impl Service {
    /// The Task service of this shim, publishing through `publisher`.
    pub fn task_service(&self, publisher: Publisher) -> TaskService {
        TaskService::new(&self.namespace, publisher, self.exit.clone())
    }
}

/// Removes the socket of a shim that is gone (SIGKILL, OOM kill): its file
/// stays behind otherwise, one per dead shim, as containerd's shim manager
/// removes it on `delete`. The address comes from the bundle's `address`
/// file, which `start` wrote; a socket a shim still answers on is kept.
fn remove_dead_socket(bundle: &Path) {
    let Ok(address) = std::fs::read_to_string(bundle.join("address")) else {
        return;
    };
    let Some(path) = address.trim().strip_prefix("unix://") else {
        return;
    };
    if std::os::unix::net::UnixStream::connect(path).is_err() {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("remove dead shim socket {path}: {e}"),
        }
    }
}

#[async_trait]
impl Shim for Service {
    type T = TaskService;

    async fn new(_runtime_id: &str, args: &Flags, config: &mut Config) -> Self {
        let bundle = if args.bundle.is_empty() {
            std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
        } else {
            PathBuf::from(&args.bundle)
        };
        // containerd hands its shims a `log` FIFO in the bundle; without
        // one (the Carapace daemon) the shim logs nowhere rather than fail.
        if !Path::new("log").exists() {
            config.no_setup_logger = true;
        }
        Service {
            id: args.id.clone(),
            namespace: args.namespace.clone(),
            bundle,
            exit: Arc::new(ExitSignal::default()),
        }
    }

    async fn start_shim(&mut self, mut opts: StartOpts) -> Result<String, Error> {
        if let Ok(dir) = std::env::var(SOCKET_DIR_ENV) {
            if !dir.is_empty() {
                opts.socket_dir = Some(dir);
            }
        }
        let legacy = opts.containerd_version.is_empty();
        let grouping = opts.id.clone();
        let address = spawn(opts, &grouping, Vec::new()).await?;
        containerd_shim::asynchronous::util::write_str_to_file("address", &address).await?;
        if legacy {
            // Callers of the legacy protocol (containerd before 2.3, the
            // Carapace daemon) read the start output; containerd 1.6 —
            // Debian 12's — takes it whole as the address, so the crate's
            // JSON reply would break it. A bare address is understood by
            // every legacy caller.
            use std::io::Write;
            let mut out = std::io::stdout();
            let written = out.write_all(address.as_bytes()).and_then(|()| out.flush());
            std::process::exit(if written.is_ok() { 0 } else { 1 });
        }
        Ok(address)
    }

    async fn delete_shim(&mut self) -> Result<api::DeleteResponse, Error> {
        let choice = RuntimeChoice::load(&self.bundle)
            .unwrap_or_else(|| RuntimeChoice::from_options(None, &self.namespace));
        let cli = choice.cli(&self.bundle);
        // The container may still run (its shim was killed): force.
        if let Err(e) = cli.delete(&self.id, true).await {
            log::warn!("delete {}: {e}", self.id);
        }
        unmount_rootfs(&self.bundle);
        remove_dead_socket(&self.bundle);
        let mut resp = api::DeleteResponse::new();
        match ExitFile::read(&self.bundle) {
            Some(f) => {
                resp.pid = u32::try_from(f.pid).unwrap_or(0);
                resp.exit_status = f.exit_status;
                resp.exited_at = Some(f.timestamp()).into();
            }
            None => {
                resp.exit_status = UNKNOWN_EXIT;
                resp.exited_at = Some(to_timestamp(SystemTime::now())).into();
            }
        }
        Ok(resp)
    }

    async fn wait(&mut self) {
        self.exit.wait().await;
    }

    async fn create_task_service(&self, publisher: RemotePublisher) -> Self::T {
        // Only its address is kept: events go through our own publisher
        // (see crate::publisher for why).
        self.task_service(Publisher::lazy(&publisher.address))
    }
}
