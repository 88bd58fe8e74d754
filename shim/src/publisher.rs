//! Task events to the caller's events endpoint (containerd's, or the
//! Carapace daemon's: same `containerd.services.events.ttrpc.v1.Events`
//! API), queued and retried as containerd-shim's `RemotePublisher` does.
//!
//! Why our own: an event travels as a protobuf `Any`, and containerd-shim
//! names its type through protobuf reflection (`descriptor_dyn()`), which
//! builds the descriptors of every message of the event protos on first
//! use — about 350 KiB of heap that then stays for the container's whole
//! life, in every shim. Each event type here carries its name as a
//! constant instead (checked against reflection in the tests).

use containerd_shim::util::{connect, timestamp};
use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::event::Envelope;
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::shim_async::{Client, EventsClient};
use containerd_shim_protos::ttrpc;
use containerd_shim_protos::ttrpc::context::Context;
use tokio::sync::mpsc;

/// Events waiting to be sent; a full queue drops the newest (after a
/// short wait), as containerd-shim's does.
const QUEUE: usize = 128;
/// Attempts per event before it is dropped.
const ATTEMPTS: u32 = 5;
/// How long a publish waits for room in a full queue.
const ENQUEUE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// A task event: a protobuf message with its fully qualified type name.
pub trait Event: Message {
    /// The `Any` type URL containerd decodes (the message's full name).
    const TYPE_URL: &'static str;
}

macro_rules! events {
    ($($t:ident),* $(,)?) => {
        $(impl Event for $t {
            const TYPE_URL: &'static str = concat!("containerd.events.", stringify!($t));
        })*
    };
}

events!(
    TaskCreate,
    TaskStart,
    TaskDelete,
    TaskExit,
    TaskOOM,
    TaskExecAdded,
    TaskExecStarted,
    TaskPaused,
    TaskResumed,
);

/// Why the events endpoint could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("connect to events endpoint {address}: {reason}")]
pub struct ConnectError {
    address: String,
    reason: String,
}

struct Item {
    envelope: Envelope,
    attempt: u32,
}

/// Sends events to one endpoint from a task of its own; cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    sender: mpsc::Sender<Item>,
}

impl Publisher {
    /// Connects to `address` (a path or `unix://` URL, as containerd passes
    /// in TTRPC_ADDRESS) and starts the sending task.
    pub async fn connect(address: &str) -> Result<Publisher, ConnectError> {
        let client = dial(address).await?;
        Ok(Publisher::start(address, Some(client)))
    }

    /// A publisher that connects when it has its first event to send
    /// (for containerd-shim's own bootstrap, which hands over only an
    /// address).
    pub fn lazy(address: &str) -> Publisher {
        Publisher::start(address, None)
    }

    fn start(address: &str, client: Option<Client>) -> Publisher {
        let (sender, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(send_loop(
            address.to_string(),
            client,
            sender.clone(),
            receiver,
        ));
        Publisher { sender }
    }

    /// Queues `event` on `topic` in `namespace`; failures are logged, never
    /// returned (an event is not worth failing a task call for).
    pub async fn publish<E: Event>(&self, topic: &str, namespace: &str, event: &E) {
        let value = match event.write_to_bytes() {
            Ok(v) => v,
            Err(e) => {
                log::warn!("encode {}: {e}", E::TYPE_URL);
                return;
            }
        };
        let mut envelope = Envelope::new();
        envelope.topic = topic.to_string();
        envelope.namespace = namespace.to_string();
        match timestamp() {
            Ok(t) => envelope.timestamp = Some(t).into(),
            Err(e) => log::warn!("event timestamp: {e}"),
        }
        let mut any = Any::new();
        any.type_url = E::TYPE_URL.to_string();
        any.value = value;
        envelope.event = Some(any).into();
        let item = Item {
            envelope,
            attempt: 0,
        };
        if self
            .sender
            .send_timeout(item, ENQUEUE_TIMEOUT)
            .await
            .is_err()
        {
            log::warn!("publish {topic}: the event queue is full or closed");
        }
    }
}

async fn dial(address: &str) -> Result<Client, ConnectError> {
    let addr = address.to_string();
    let fd = tokio::task::spawn_blocking(move || connect(addr))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
        .map_err(|reason| ConnectError {
            address: address.to_string(),
            reason,
        })?;
    // SAFETY: `fd` is the connected unix socket `connect` just returned;
    // the client takes ownership of it.
    Ok(unsafe { Client::from_raw_unix_socket_fd(fd) })
}

async fn send_loop(
    address: String,
    client: Option<Client>,
    sender: mpsc::Sender<Item>,
    mut receiver: mpsc::Receiver<Item>,
) {
    let mut client = client.map(EventsClient::new);
    // Only the queue's own sender is left when every Publisher is gone.
    let weak = sender.downgrade();
    drop(sender);
    while let Some(mut item) = receiver.recv().await {
        if client.is_none() {
            match dial(&address).await {
                Ok(c) => client = Some(EventsClient::new(c)),
                Err(e) => log::warn!("{e}"),
            }
        }
        if let Some(c) = &client {
            let mut req = ForwardRequest::new();
            req.envelope = Some(item.envelope.clone()).into();
            let Err(e) = c.forward(Context::default(), &req).await else {
                continue;
            };
            if matches!(
                e,
                ttrpc::error::Error::RemoteClosed | ttrpc::error::Error::LocalClosed
            ) {
                // Dialled again for the next attempt.
                client = None;
            } else {
                log::warn!("forward {}: {e:?}", item.envelope.topic);
            }
        }
        item.attempt += 1;
        if item.attempt >= ATTEMPTS {
            log::warn!(
                "dropped event {} after {ATTEMPTS} attempts",
                item.envelope.topic
            );
            continue;
        }
        // Requeued from a task of its own after a growing pause, so the
        // loop goes on with other events meanwhile.
        let Some(sender) = weak.upgrade() else {
            continue;
        };
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(u64::from(item.attempt))).await;
            let _ = sender.send_timeout(item, ENQUEUE_TIMEOUT).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::protobuf::MessageFull;

    fn named<E: Event + MessageFull>() {
        assert_eq!(E::TYPE_URL, E::descriptor().full_name());
    }

    #[test]
    fn constant_names_match_reflection() {
        named::<TaskCreate>();
        named::<TaskStart>();
        named::<TaskDelete>();
        named::<TaskExit>();
        named::<TaskOOM>();
        named::<TaskExecAdded>();
        named::<TaskExecStarted>();
        named::<TaskPaused>();
        named::<TaskResumed>();
    }
}
