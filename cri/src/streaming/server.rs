//! The streaming server: an HTTP/1.1 listener (default 127.0.0.1, a free
//! port) whose URLs the Exec/Attach/PortForward calls hand out. A request
//! to `/exec/<token>` with a valid token is switched to the transport it
//! asks for — `Upgrade: websocket` (subprotocol from
//! `Sec-WebSocket-Protocol`) or `Upgrade: SPDY/3.1` (protocol from
//! `X-Stream-Protocol-Version`) — and served; a used, expired or unknown
//! token gets 404, as kubelet's server answers; no common protocol, 403.
//! With `[streaming] tls_cert_file` and `tls_key_file` the listener
//! speaks TLS ([`super::tls`]) and the URLs say `https://`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::container::exec::ExecStdio;
use crate::container::Containers;

use super::portforward;
use super::remotecommand::{self, Job};
use super::spdy::{self, Session, SessionConfig};
use super::tls;
use super::tokens::{Pending, Tokens};
use super::websocket::{self, portforward as ws_portforward, remotecommand as ws_remotecommand};

/// An upgraded connection speaking WebSocket.
type WebSocket = tokio_tungstenite::WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// What a request that is neither SPDY nor WebSocket is told.
const NO_UPGRADE: &str = "streaming needs an upgrade to SPDY/3.1 or websocket";

/// Idle time before the kernel starts probing a streaming connection,
/// and the time between probes (Go's net/http defaults, which kubelet's
/// streaming server has): a client whose host vanished without closing
/// its connection is noticed, and what it held released, in minutes
/// rather than never.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// The running server: where it listens and the tokens it honours.
#[derive(Debug)]
pub struct StreamingServer {
    addr: SocketAddr,
    scheme: &'static str,
    tokens: Tokens,
}

impl StreamingServer {
    /// The URL a client streams `p` at (valid once, for the configured
    /// `token_ttl_seconds`); `https://` when the server speaks TLS.
    pub fn url_for(&self, p: Pending) -> std::io::Result<String> {
        let kind = p.kind();
        let token = self.tokens.insert(p)?;
        Ok(format!("{}://{}/{kind}/{token}", self.scheme, self.addr))
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Binds `address` and serves in the background, over TLS when the
/// daemon's `[streaming]` config names a certificate and key (read and
/// checked here, before binding), with URLs valid for its
/// `token_ttl_seconds`.
pub async fn start(address: &str, cs: Arc<Containers>) -> std::io::Result<Arc<StreamingServer>> {
    let config = cs.sandboxes.daemon.config.streaming.clone();
    let acceptor = match config.tls_files() {
        Some((cert, key)) => Some(tls::acceptor(cert, key)?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(address).await?;
    let server = Arc::new(StreamingServer {
        addr: listener.local_addr()?,
        scheme: if acceptor.is_some() { "https" } else { "http" },
        tokens: Tokens::new(Duration::from_secs(config.token_ttl_seconds)),
    });
    tracing::info!(address = %server.addr, tls = acceptor.is_some(), "streaming server listening");
    let srv = server.clone();
    tokio::spawn(async move {
        loop {
            let (conn, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "streaming accept");
                    continue;
                }
            };
            tune(&conn, peer);
            let (srv, cs, acceptor) = (srv.clone(), cs.clone(), acceptor.clone());
            tokio::spawn(async move {
                match acceptor {
                    None => serve_connection(conn, peer, srv, cs).await,
                    Some(acceptor) => match tls::handshake(&acceptor, conn).await {
                        Ok(conn) => serve_connection(conn, peer, srv, cs).await,
                        Err(e) => tracing::debug!(%peer, error = %e, "streaming TLS"),
                    },
                }
            });
        }
    });
    Ok(server)
}

/// Socket options for a streaming connection: no Nagle delay (a status
/// or a keystroke echo goes out at once, as Go sets it for kubelet), and
/// TCP keepalive so a peer that vanished is noticed.
fn tune(conn: &TcpStream, peer: SocketAddr) {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE)
        .with_interval(KEEPALIVE);
    let result = conn
        .set_nodelay(true)
        .and_then(|()| socket2::SockRef::from(conn).set_tcp_keepalive(&keepalive));
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "streaming socket options");
    }
}

/// Serves HTTP/1.1 (with upgrades) on one accepted connection.
async fn serve_connection<I>(
    io: I,
    peer: SocketAddr,
    srv: Arc<StreamingServer>,
    cs: Arc<Containers>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let (srv, cs) = (srv.clone(), cs.clone());
        async move { Ok::<_, Infallible>(route(&srv, cs, req)) }
    });
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades()
        .await
    {
        tracing::debug!(%peer, error = %e, "streaming connection");
    }
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *r.status_mut() = status;
    r
}

/// Whether the request asks to switch to SPDY/3.1.
fn wants_spdy(req: &Request<Incoming>) -> bool {
    req.headers()
        .get_all(hyper::header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case(spdy::UPGRADE_PROTOCOL))
}

/// Answers 101 with `protocol` and, once hyper hands over the connection,
/// runs `serve` on a SPDY session over it.
fn upgrade<F, Fut>(
    req: Request<Incoming>,
    protocol: &'static str,
    serve: F,
) -> Response<Full<Bytes>>
where
    F: FnOnce(Session) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let upgraded = match hyper::upgrade::on(req).await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(error = %e, "streaming upgrade");
                return;
            }
        };
        match Session::start(TokioIo::new(upgraded), SessionConfig::default()) {
            Ok(session) => serve(session).await,
            Err(e) => tracing::warn!(error = %e, "start SPDY session"),
        }
    });
    switching(protocol)
}

/// The 101 answer that switches to SPDY with `protocol`.
fn switching(protocol: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("Upgrade"),
    );
    h.insert(
        hyper::header::UPGRADE,
        hyper::header::HeaderValue::from_static(spdy::UPGRADE_PROTOCOL),
    );
    h.insert(
        "X-Stream-Protocol-Version",
        hyper::header::HeaderValue::from_static(protocol),
    );
    r
}

/// The protocol versions the client offers.
fn offered(req: &Request<Incoming>) -> Vec<String> {
    req.headers()
        .get_all("X-Stream-Protocol-Version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

/// Answers 101 switching to WebSocket with `protocol` (none when empty)
/// and, once hyper hands over the connection, runs `serve` on it; 405
/// for a method other than GET, 400 for a malformed handshake.
fn upgrade_websocket<F, Fut>(
    req: Request<Incoming>,
    protocol: &'static str,
    serve: F,
) -> Response<Full<Bytes>>
where
    F: FnOnce(WebSocket) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    if req.method() != hyper::Method::GET {
        return plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "a WebSocket upgrade must be a GET",
        );
    }
    let accept = match websocket::accept_key(req.headers()) {
        Ok(a) => a,
        Err(e) => {
            let mut r = plain(StatusCode::BAD_REQUEST, &e.to_string());
            r.headers_mut().insert(
                "Sec-WebSocket-Version",
                hyper::header::HeaderValue::from_static(websocket::VERSION),
            );
            return r;
        }
    };
    tokio::spawn(async move {
        let upgraded = match hyper::upgrade::on(req).await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(error = %e, "streaming upgrade");
                return;
            }
        };
        let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            tokio_tungstenite::tungstenite::protocol::Role::Server,
            None,
        )
        .await;
        serve(ws).await;
    });
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("Upgrade"),
    );
    h.insert(
        hyper::header::UPGRADE,
        hyper::header::HeaderValue::from_static(websocket::UPGRADE_PROTOCOL),
    );
    h.insert("Sec-WebSocket-Accept", accept);
    if !protocol.is_empty() {
        h.insert(
            websocket::PROTOCOL_HEADER,
            hyper::header::HeaderValue::from_static(protocol),
        );
    }
    r
}

/// 403 for a WebSocket client whose subprotocols are not served.
fn no_common_subprotocol(served: &[&str]) -> Response<Full<Bytes>> {
    let served: Vec<&str> = served.iter().copied().filter(|p| !p.is_empty()).collect();
    plain(
        StatusCode::FORBIDDEN,
        &format!(
            "requested WebSocket subprotocols are not supported; supported: {}",
            served.join(", ")
        ),
    )
}

fn upgrade_port_forward(
    req: Request<Incoming>,
    cs: Arc<Containers>,
    pod_id: String,
) -> Response<Full<Bytes>> {
    if websocket::is_websocket_request(req.headers()) {
        let offers = websocket::offered(req.headers());
        if ws_portforward::wants_tunnel(&offers) {
            if !offers
                .iter()
                .any(|o| o == ws_portforward::TUNNELED_PROTOCOL)
            {
                return no_common_subprotocol(&[ws_portforward::TUNNELED_PROTOCOL]);
            }
            return upgrade_websocket(req, ws_portforward::TUNNELED_PROTOCOL, move |ws| {
                ws_portforward::serve_tunnel(ws, cs, pod_id)
            });
        }
        let ports = match ws_portforward::ports_from_query(req.uri().query()) {
            Ok(p) => p,
            Err(e) => return plain(StatusCode::BAD_REQUEST, &e.to_string()),
        };
        let Some(protocol) = websocket::negotiate(&offers, &ws_portforward::CHANNEL_PROTOCOLS)
        else {
            return no_common_subprotocol(&ws_portforward::CHANNEL_PROTOCOLS);
        };
        return upgrade_websocket(req, protocol, move |ws| {
            ws_portforward::serve_channels(ws, protocol, cs, pod_id, ports)
        });
    }
    if !wants_spdy(&req) {
        return plain(StatusCode::BAD_REQUEST, NO_UPGRADE);
    }
    let offers = offered(&req);
    if !offers.is_empty() && !offers.iter().any(|o| o == portforward::PROTOCOL) {
        return plain(
            StatusCode::FORBIDDEN,
            &format!("no common protocol; served: {}", portforward::PROTOCOL),
        );
    }
    upgrade(req, portforward::PROTOCOL, move |session| {
        portforward::serve(session, cs, pod_id)
    })
}

fn route(
    srv: &StreamingServer,
    cs: Arc<Containers>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let mut parts = req.uri().path().trim_start_matches('/').splitn(2, '/');
    let (kind, token) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let Some(pending) = srv.tokens.take(token) else {
        return plain(StatusCode::NOT_FOUND, "unknown or expired streaming URL");
    };
    if pending.kind() != kind {
        return plain(StatusCode::NOT_FOUND, "unknown or expired streaming URL");
    }
    let job = match pending {
        Pending::Exec(e) => Job::Exec {
            container_id: e.container_id,
            cmd: e.cmd,
            io: ExecStdio {
                stdin: e.stdin,
                stdout: e.stdout,
                stderr: e.stderr,
                tty: e.tty,
            },
        },
        Pending::Attach(a) => {
            let stdin_once = cs
                .get(&a.container_id)
                .map(|c| c.record().config.stdin_once)
                .unwrap_or(false);
            Job::Attach {
                container_id: a.container_id,
                io: ExecStdio {
                    stdin: a.stdin,
                    stdout: a.stdout,
                    stderr: a.stderr,
                    tty: a.tty,
                },
                stdin_once,
            }
        }
        Pending::PortForward(p) => {
            return upgrade_port_forward(req, cs, p.pod_sandbox_id);
        }
    };
    if websocket::is_websocket_request(req.headers()) {
        let offers = websocket::offered(req.headers());
        let Some(protocol) = websocket::negotiate(&offers, &ws_remotecommand::PROTOCOLS) else {
            return no_common_subprotocol(&ws_remotecommand::PROTOCOLS);
        };
        return upgrade_websocket(req, protocol, move |ws| {
            ws_remotecommand::serve(ws, protocol, cs, job)
        });
    }
    if !wants_spdy(&req) {
        return plain(StatusCode::BAD_REQUEST, NO_UPGRADE);
    }
    let offers = offered(&req);
    let Some(protocol) = remotecommand::negotiate(offers.iter().map(String::as_str)) else {
        let mut r = plain(
            StatusCode::FORBIDDEN,
            &format!(
                "no common remote-command protocol; served: {}",
                remotecommand::PROTOCOLS.join(", ")
            ),
        );
        for p in remotecommand::PROTOCOLS {
            r.headers_mut().append(
                "X-Supported-Stream-Protocol-Versions",
                hyper::header::HeaderValue::from_static(p),
            );
        }
        return r;
    };
    upgrade(req, protocol, move |session| {
        remotecommand::serve(session, protocol, cs, job)
    })
}
