//! The daemon's admin endpoint: a root-only ttrpc socket beside the
//! daemon's state (`<state>/admin.sock`) serving our own image calls
//! (proto/carapace/images/v1) for the `carapace image` command: pulls with
//! progress, offline imports, listing. kubelet never uses it; CRI stays the
//! only API for workloads.

pub mod proto;
pub mod service;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use containerd_shim_protos::ttrpc;

use crate::image::Images;

/// The admin socket of a daemon whose state dir is `state`.
pub fn socket_path(state: &Path) -> PathBuf {
    state.join("admin.sock")
}

/// Why the admin endpoint could not be served.
#[derive(Debug, thiserror::Error)]
#[error("admin endpoint {path}: {message}")]
pub struct AdminError {
    /// The socket path.
    pub path: PathBuf,
    /// What failed.
    pub message: String,
}

/// The running endpoint; it stops when dropped.
pub struct AdminServer {
    _server: ttrpc::r#async::Server,
}

impl AdminServer {
    /// Serves at `path`, mode 0600 from the moment it appears (a leftover
    /// socket is replaced: the CRI socket, bound first, already proved no
    /// other daemon runs here).
    pub async fn start(path: &Path, images: Arc<Images>) -> Result<AdminServer, AdminError> {
        let err = |message: String| AdminError {
            path: path.to_path_buf(),
            message,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        }
        let listener = crate::private::bind_socket(path, 0o600)
            .and_then(ttrpc::r#async::transport::Listener::try_from)
            .map_err(|e| err(e.to_string()))?;
        let mut server = ttrpc::r#async::Server::new()
            .add_listener(listener)
            .register_service(proto::images_ttrpc::create_images(Arc::new(
                service::ImagesAdmin::new(images),
            )));
        server.start().await.map_err(|e| err(e.to_string()))?;
        Ok(AdminServer { _server: server })
    }
}
