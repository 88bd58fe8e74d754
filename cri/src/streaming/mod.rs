//! CRI streaming: the protocols behind `Exec`, `Attach` and `PortForward`.
//!
//! Those CRI calls do not carry the data themselves: they return a URL on
//! which the runtime serves a streaming endpoint, and kubelet (proxying for
//! `kubectl`) or `crictl` connect to it and multiplex stdin, stdout, stderr,
//! terminal resizes, errors and forwarded ports over one connection.
//! Kubernetes clients speak SPDY/3.1 for this (`k8s.io/apimachinery`'s
//! `httpstream/spdy` on top of `moby/spdystream`), and newer ones
//! optionally WebSocket.
//!
//! What is here so far is the protocol layer, [`spdy`]: the SPDY/3.1 frame
//! and header-block codecs and a session driver that hands the
//! client-opened streams to a caller. What comes next builds on it: the
//! HTTP server behind the URLs (the `Upgrade: SPDY/3.1` handshake with
//! `X-Stream-Protocol-Version` negotiation), the remotecommand
//! (exec/attach) and portforward stream semantics that connect those
//! streams to a container's process and network namespace, and the
//! WebSocket variants.

pub mod spdy;
