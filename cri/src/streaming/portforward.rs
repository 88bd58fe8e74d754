//! Kubernetes' port-forward protocol over SPDY (`portforward.k8s.io`, what
//! `kubectl port-forward` and `crictl port-forward` speak): for each
//! forwarded connection the client opens an `error` and a `data` stream
//! carrying the same `port` and `requestID` headers; once both are there
//! the server connects to that port on the pod's loopback — inside the
//! pod's network namespace, or the node's for a host-network pod — and
//! copies bytes both ways. A failure to connect is written as text on the
//! pair's error stream, as kubelet does. So is a pair whose partner
//! stream never comes (after `[streaming] stream_creation_timeout_seconds`),
//! and a second stream of one type for a request is reset, as kubelet
//! refuses it.

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::container::Containers;

use super::channel::{Input, Output};
use super::spdy::{RstStatus, Session, SpdyStream};

/// The protocol served.
pub const PROTOCOL: &str = "portforward.k8s.io";

/// The two streams of one forwarded connection, as they arrive.
struct Pair {
    error: Option<SpdyStream>,
    data: Option<SpdyStream>,
    /// When the pair is given up if still incomplete.
    deadline: tokio::time::Instant,
}

/// What kubelet writes on the error stream of a pair whose partner
/// never came.
const TIMED_OUT: &str = "timed out waiting for streams";

/// Gives up the incomplete pairs whose deadline has passed: the error
/// stream (if that is the one that came) gets the reason, the data
/// stream is ended.
fn expire(pairs: &mut HashMap<String, Pair>, pod_id: &str) {
    let now = tokio::time::Instant::now();
    let late: Vec<String> = pairs
        .iter()
        .filter(|(_, p)| p.deadline <= now)
        .map(|(k, _)| k.clone())
        .collect();
    for key in late {
        let Some(pair) = pairs.remove(&key) else {
            continue;
        };
        tracing::info!(pod = %pod_id, request = %key, "port-forward: {TIMED_OUT}");
        if let Some(mut data) = pair.data {
            let _ = data.finish();
        }
        if let Some(error) = pair.error {
            let mut error = Output::Spdy(error.into_parts().2);
            tokio::spawn(async move {
                let _ = error
                    .send(Bytes::from(format!("error: {TIMED_OUT} for request {key}")))
                    .await;
                error.finish();
            });
        }
    }
}

/// Serves one port-forward session for pod `pod_id` until the client
/// leaves.
pub async fn serve(mut session: Session, cs: Arc<Containers>, pod_id: String) {
    let netns = match cs.sandboxes.get(&pod_id) {
        Ok(s) => s.record().netns,
        Err(e) => {
            tracing::warn!(pod = %pod_id, error = %e, "port-forward");
            session.close();
            return;
        }
    };
    let timeout = Duration::from_secs(
        cs.sandboxes
            .daemon
            .config
            .streaming
            .stream_creation_timeout_seconds,
    );
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    loop {
        let first_deadline = pairs.values().map(|p| p.deadline).min();
        let mut stream = tokio::select! {
            s = session.accept() => match s {
                Some(s) => s,
                None => break,
            },
            () = async {
                match first_deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => {
                expire(&mut pairs, &pod_id);
                continue;
            }
        };
        let h = stream.headers();
        let kind = h.get("streamType").unwrap_or("").to_string();
        let port = h.get("port").unwrap_or("").to_string();
        // Old clients send no requestID: one connection per port then.
        let key = h
            .get("requestID")
            .map(str::to_string)
            .unwrap_or_else(|| format!("port-{port}"));
        let pair = pairs.entry(key.clone()).or_insert_with(|| Pair {
            error: None,
            data: None,
            deadline: tokio::time::Instant::now() + timeout,
        });
        let slot = match kind.as_str() {
            "error" => &mut pair.error,
            "data" => &mut pair.data,
            other => {
                tracing::debug!(pod = %pod_id, kind = other, "port-forward: unexpected stream");
                continue;
            }
        };
        if slot.is_some() {
            // kubelet refuses a second stream of a type for one request.
            tracing::info!(pod = %pod_id, request = %key, kind = %kind, "port-forward: duplicate stream reset");
            stream.reset(RstStatus::PROTOCOL_ERROR);
            continue;
        }
        *slot = Some(stream);
        if pair.error.is_some() && pair.data.is_some() {
            if let Some(Pair {
                error: Some(error),
                data: Some(data),
                ..
            }) = pairs.remove(&key)
            {
                let (_, from_client, to_client) = data.into_parts();
                let (netns, pod_id) = (netns.clone(), pod_id.clone());
                tokio::spawn(async move {
                    forward(
                        Output::Spdy(error.into_parts().2),
                        Input::Spdy(from_client),
                        Output::Spdy(to_client),
                        &port,
                        netns,
                        &pod_id,
                        Ending::BothDirections,
                    )
                    .await
                });
            }
        }
    }
    let _ = session.wait().await;
}

/// Connects to `port` on loopback in `netns` (the node's when None).
pub async fn connect(netns: Option<PathBuf>, port: u16) -> std::io::Result<TcpStream> {
    let std_stream = tokio::task::spawn_blocking(move || connect_blocking(netns.as_deref(), port))
        .await
        .map_err(std::io::Error::other)??;
    std_stream.set_nonblocking(true)?;
    TcpStream::from_std(std_stream)
}

/// A socket belongs to the network namespace its creator was in: make it
/// on a thread of its own that entered the pod's namespace first.
fn connect_blocking(netns: Option<&Path>, port: u16) -> std::io::Result<std::net::TcpStream> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Some(ns) = netns else {
        return std::net::TcpStream::connect(addr);
    };
    let ns = std::fs::File::open(ns)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)?;
            std::net::TcpStream::connect(addr)
        })
        .join()
        .map_err(|_| std::io::Error::other("port-forward connector thread panicked"))?
    })
}

/// How a forwarded connection ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// When both directions have ended: the client half-closes its data
    /// stream once it has sent everything (SPDY).
    BothDirections,
    /// When either direction ends: the client cannot half-close a
    /// WebSocket channel, so the pod's end closing the connection is the
    /// end (as Kubernetes' port forwarder returns on the first copy done).
    EitherDirection,
}

/// One forwarded connection: connects to `port` (as the client wrote it) in `netns` and copies
/// bytes between it and the client's data channel until `ending`. A
/// failure to connect is written as text on `error`, as kubelet does.
pub async fn forward(
    mut error: Output,
    mut from_client: Input,
    mut to_client: Output,
    port: &str,
    netns: Option<PathBuf>,
    pod_id: &str,
    ending: Ending,
) {
    let tcp = match port.parse::<u16>() {
        Ok(p) if p > 0 => connect(netns, p).await,
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("invalid port {port:?}"),
        )),
    };
    let tcp = match tcp {
        Ok(t) => t,
        Err(e) => {
            let msg = format!(
                "error forwarding port {port} to pod {pod_id}: failed to connect to localhost:{port} inside the pod: {e}"
            );
            tracing::info!(pod = %pod_id, %port, error = %e, "port-forward connect");
            let _ = error.send(Bytes::from(msg)).await;
            error.finish();
            to_client.finish();
            return;
        }
    };
    let (mut rd, mut wr) = tcp.into_split();
    let upstream = async {
        while let Some(chunk) = from_client.recv().await {
            if wr.write_all(&chunk).await.is_err() {
                break;
            }
        }
        // The client is done sending: so is our side of the connection.
        let _ = wr.shutdown().await;
    };
    let downstream = async {
        let mut buf = vec![0u8; 32 << 10];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to_client
                        .send(Bytes::copy_from_slice(&buf[..n]))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        to_client.finish();
    };
    match ending {
        Ending::BothDirections => {
            tokio::join!(upstream, downstream);
        }
        Ending::EitherDirection => {
            tokio::select! {
                () = upstream => {}
                () = downstream => {}
            }
        }
    }
    error.finish();
}
