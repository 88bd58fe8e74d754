//! CRI streaming: the protocols behind `Exec`, `Attach` and `PortForward`.
//!
//! Those CRI calls do not carry the data themselves: they return a URL on
//! which the runtime serves a streaming endpoint, and kubelet (proxying for
//! `kubectl`) or `crictl` connect to it and multiplex stdin, stdout, stderr,
//! terminal resizes, errors and forwarded ports over one connection.
//! Kubernetes clients speak SPDY/3.1 for this (`k8s.io/apimachinery`'s
//! `httpstream/spdy` on top of `moby/spdystream`), and newer ones
//! WebSocket (client-go's WebSocket executor and tunnelling dialer).
//!
//! The layers: [`spdy`], the SPDY/3.1 frame and header-block codecs and a
//! session driver that hands the client-opened streams to a caller;
//! [`tokens`], the single-use URLs; [`server`], the HTTP listener behind
//! them (over [`tls`] when configured) (the `Upgrade: SPDY/3.1` handshake with `X-Stream-Protocol-Version`
//! negotiation, or `Upgrade: websocket` with `Sec-WebSocket-Protocol`);
//! [`websocket`], the WebSocket handshake, channel framing and SPDY
//! tunnel; [`channel`], one stdio direction whichever transport carries
//! it; [`remotecommand`], what exec and attach streams mean, and
//! [`attach`], the container's own stdio through its shim; [`portforward`],
//! connections to a pod's ports.

pub mod attach;
pub mod attach_fifo;
pub mod channel;
pub mod portforward;
pub mod remotecommand;
pub mod server;
pub mod spdy;
pub mod tls;
pub mod tokens;
pub mod websocket;
