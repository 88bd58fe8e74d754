//! The CRI socket: created safely (a live daemon's socket is never stolen),
//! served by tonic, removed on graceful shutdown.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_cri::v1::image_service_server::ImageServiceServer;
use k8s_cri::v1::runtime_service_server::RuntimeServiceServer;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::StreamExt;

use crate::image_service::ImageServiceImpl;
use crate::prometheus::grpc::GrpcMetricsLayer;
use crate::prometheus::DaemonMetrics;
use crate::runtime_service::RuntimeServiceImpl;
use crate::service::Service;

/// Mode of the CRI socket: kubelet (root) and a CRI group may connect.
pub const SOCKET_MODE: u32 = 0o660;

/// Why the daemon could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Another daemon answers on the socket: refuse to take it over.
    #[error("another daemon is serving on {0}")]
    InUse(PathBuf),
    /// A file that is not a socket is in the way.
    #[error("{0} exists and is not a socket: refusing to replace it")]
    NotASocket(PathBuf),
    /// Creating, binding or serving failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// tonic failed while serving.
    #[error("serve gRPC: {0}")]
    Transport(#[from] tonic::transport::Error),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ServerError {
    let path = path.to_path_buf();
    move |source| ServerError::Io { what, path, source }
}

/// Binds the CRI socket at `path`: parent created, a stale socket (nobody
/// answers) replaced, a live one refused, mode 0660 from the moment it
/// appears (crate::private::bind_socket).
pub fn bind(path: &Path) -> Result<UnixListener, ServerError> {
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            crate::private::dir(dir, crate::private::TRAVERSE_MODE)
                .map_err(io("create socket directory", dir))?;
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(md) => {
            use std::os::unix::fs::FileTypeExt;
            if !md.file_type().is_socket() {
                return Err(ServerError::NotASocket(path.to_path_buf()));
            }
            if served(path) {
                return Err(ServerError::InUse(path.to_path_buf()));
            }
            std::fs::remove_file(path).map_err(io("remove stale socket", path))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("inspect socket", path)(e)),
    }
    let l = crate::private::bind_socket(path, SOCKET_MODE).map_err(io("bind", path))?;
    l.set_nonblocking(true).map_err(io("bind", path))?;
    UnixListener::from_std(l).map_err(io("bind", path))
}

/// How long a socket must keep accepting connections to count as served.
const SERVED_FOR: std::time::Duration = std::time::Duration::from_millis(1000);

/// Whether another daemon serves on `path`: it keeps accepting connections
/// for [`SERVED_FOR`]. One successful connect is not enough: a process the
/// previous (killed) daemon was forking — a shim start, a CNI plugin —
/// holds its listening socket until it execs, a few milliseconds, and a
/// restart that took that for a live daemon refused to start (the chaos
/// test saw it every few dozen kills).
fn served(path: &Path) -> bool {
    let deadline = std::time::Instant::now() + SERVED_FOR;
    loop {
        if std::os::unix::net::UnixStream::connect(path).is_err() {
            return false;
        }
        if std::time::Instant::now() >= deadline {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Serves both CRI services on `listener` until `shutdown` resolves, then
/// removes the socket. Containers are not touched: they outlive the daemon.
pub async fn serve(
    service: Arc<Service>,
    listener: UnixListener,
    socket: &Path,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let containers = service.containers.clone();
    let address = service.daemon.config.streaming.address.clone();
    let streaming = match crate::streaming::server::start(&address, containers.clone()).await {
        Ok(s) => s,
        Err(source) => {
            // Nobody will answer on the CRI socket: do not leave it behind.
            let _ = std::fs::remove_file(socket);
            return Err(ServerError::Io {
                what: "start the streaming server on",
                path: PathBuf::from(address),
                source,
            });
        }
    };
    let metrics = DaemonMetrics::new();
    let metrics_address = service.daemon.config.metrics.address.clone();
    if !metrics_address.is_empty() {
        crate::prometheus::server::start(&metrics_address, metrics.clone(), containers.clone())
            .await
            .map_err(|source| ServerError::Io {
                what: "bind the metrics endpoint on",
                path: PathBuf::from(&metrics_address),
                source,
            })?;
    }
    let runtime = RuntimeServiceServer::new(RuntimeServiceImpl::new(&service, streaming));
    let image = ImageServiceServer::new(ImageServiceImpl::new(&service));
    // The listener is bound and everything is open: connections queue
    // until the server below takes them, so systemd may start what waits
    // for us (kubelet) now.
    notify("READY=1");
    let shutdown = async {
        shutdown.await;
        notify("STOPPING=1");
    };
    let r = tonic::transport::Server::builder()
        .trace_fn(|req| tracing::info_span!("cri", call = %req.uri().path()))
        .layer(GrpcMetricsLayer(metrics))
        .add_service(runtime)
        .add_service(image)
        .serve_with_incoming_shutdown(
            // Any gRPC client, whatever :authority it sends (crate::authority).
            UnixListenerStream::new(listener).map(|c| c.map(crate::authority::Tolerant::new)),
            shutdown,
        )
        .await;
    let _ = std::fs::remove_file(socket);
    r.map_err(ServerError::from)
}

/// Tells systemd (`Type=notify`) how the daemon stands; a failure is
/// logged, never fatal: the daemon serves either way.
fn notify(state: &str) {
    match crate::sd_notify::notify(state) {
        Ok(true) => tracing::info!(state, "told systemd"),
        Ok(false) => {}
        Err(e) => tracing::warn!(state, error = %e, "tell systemd"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn stale_sockets_are_replaced_live_ones_refused() {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("sub/dir/c.sock");
        let l = bind(&p).expect("bind fresh");
        let mode = std::fs::metadata(&p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, SOCKET_MODE);
        assert!(matches!(bind(&p), Err(ServerError::InUse(_))));
        drop(l);
        // The socket file stays behind, nobody answers: replaced.
        let _l = bind(&p).expect("rebind over a stale socket");
        let f = d.path().join("file");
        std::fs::write(&f, "x").expect("write");
        assert!(matches!(bind(&f), Err(ServerError::NotASocket(_))));
    }

    /// A socket still held for a moment after its daemon died (by a child
    /// it was forking, until that child execs) is not a live daemon: the
    /// restart waits it out and takes the socket over.
    #[tokio::test]
    async fn a_socket_held_briefly_after_its_daemon_died_is_taken_over() {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("c.sock");
        let held = std::os::unix::net::UnixListener::bind(&p).expect("bind");
        let closer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            drop(held);
        });
        let _l = bind(&p).expect("taken over once the holder let go");
        closer.join().expect("closer");
    }
}
