//! The events endpoint shims publish to (their TTRPC_ADDRESS): task exits,
//! OOM kills, execs. Every event is passed to the daemon's subscribers;
//! nobody listening is fine, and a slow subscriber only loses its own
//! oldest events.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim_protos::api;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::shim_async::{create_events, Events};
use containerd_shim_protos::ttrpc;
use containerd_shim_protos::ttrpc::r#async::TtrpcContext;
use tokio::sync::broadcast;

/// Events kept for a subscriber that falls behind.
const BACKLOG: usize = 1024;

/// One event from a shim.
#[derive(Clone, Debug)]
pub struct ShimEvent {
    /// `/tasks/exit`, `/tasks/oom`, …
    pub topic: String,
    /// The event message.
    pub event: Any,
}

#[derive(Clone)]
struct Forwarder {
    tx: broadcast::Sender<ShimEvent>,
}

#[async_trait]
impl Events for Forwarder {
    async fn forward(&self, _ctx: &TtrpcContext, req: ForwardRequest) -> ttrpc::Result<api::Empty> {
        let env = req.envelope.unwrap_or_default();
        tracing::debug!(topic = %env.topic, "shim event");
        let _ = self.tx.send(ShimEvent {
            topic: env.topic.clone(),
            event: env.event.unwrap_or_default(),
        });
        Ok(api::Empty::new())
    }
}

/// Why the endpoint could not be served.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// The socket could not be bound or served.
    #[error("events endpoint {path}: {message}")]
    Serve {
        /// The socket path.
        path: String,
        /// What failed.
        message: String,
    },
}

/// The running endpoint; it stops when dropped.
pub struct EventsServer {
    _server: ttrpc::r#async::Server,
    tx: broadcast::Sender<ShimEvent>,
    address: String,
}

impl EventsServer {
    /// Serves at `path`, mode 0600 from the moment it appears, so only root
    /// can publish events (a leftover socket from a previous run is
    /// replaced).
    pub async fn start(path: &Path) -> Result<EventsServer, EventsError> {
        let err = |message: String| EventsError::Serve {
            path: path.display().to_string(),
            message,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        }
        let listener = crate::private::bind_socket(path, 0o600)
            .and_then(ttrpc::r#async::transport::Listener::try_from)
            .map_err(|e| err(e.to_string()))?;
        let (tx, _) = broadcast::channel(BACKLOG);
        let address = format!("unix://{}", path.display());
        let mut server = ttrpc::r#async::Server::new()
            .add_listener(listener)
            .register_service(create_events(Arc::new(Forwarder { tx: tx.clone() })));
        server.start().await.map_err(|e| err(e.to_string()))?;
        Ok(EventsServer {
            _server: server,
            tx,
            address,
        })
    }

    /// The address shims are given.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// A new subscription to every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ShimEvent> {
        self.tx.subscribe()
    }
}
