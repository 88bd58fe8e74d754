//! One direction of one stdio channel, whatever carries it: a SPDY
//! stream's half or a WebSocket channel. Exec, Attach and port forwarding
//! pump bytes through these, so they are written once for both
//! transports.

use bytes::Bytes;

use super::spdy::{StreamReader, StreamWriter};
use super::websocket::mux::{ChannelReader, ChannelWriter};

/// What the client sends on a channel.
#[derive(Debug)]
pub enum Input {
    /// The receiving half of a SPDY stream.
    Spdy(StreamReader),
    /// A WebSocket channel.
    WebSocket(ChannelReader),
}

impl Input {
    /// The next chunk; `None` once the client finished sending (SPDY FIN,
    /// v5 close signal), reset the stream or left.
    pub async fn recv(&mut self) -> Option<Bytes> {
        match self {
            Input::Spdy(r) => r.recv().await.ok().flatten(),
            Input::WebSocket(r) => r.recv().await,
        }
    }
}

/// The client is gone from this channel.
#[derive(Debug, thiserror::Error)]
#[error("the client's channel is closed")]
pub struct Closed;

/// What goes back to the client on a channel.
#[derive(Debug)]
pub enum Output {
    /// The sending half of a SPDY stream.
    Spdy(StreamWriter),
    /// A WebSocket channel.
    WebSocket(ChannelWriter),
}

impl Output {
    /// Sends `data` (in order with earlier sends on this channel).
    pub async fn send(&mut self, data: Bytes) -> Result<(), Closed> {
        match self {
            Output::Spdy(w) => w.send(data).await.map_err(|_| Closed),
            Output::WebSocket(w) => w.send(&data).await.map_err(|_| Closed),
        }
    }

    /// Resolves once nothing sent on this channel can reach the client
    /// any more: the client left (its connection closed or broke), reset
    /// the SPDY stream, or the channel was finished. Lets a sender that
    /// has nothing to send notice a client that is gone.
    pub async fn closed(&self) {
        match self {
            Output::Spdy(w) => w.closed().await,
            Output::WebSocket(w) => w.closed().await,
        }
    }

    /// Marks the end of this channel's data: SPDY half-closes the stream;
    /// a WebSocket channel has no end of its own (the connection's Close
    /// ends them all), so nothing is sent.
    pub fn finish(&mut self) {
        if let Output::Spdy(w) = self {
            let _ = w.finish();
        }
    }
}
