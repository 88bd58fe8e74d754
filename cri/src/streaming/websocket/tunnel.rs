//! A WebSocket as a plain byte stream, for SPDY tunnelled through it: what
//! client-go's `NewSPDYOverWebsocketDialer` does for port forwarding
//! (`tunneling_connection.go`), and what `crictl port-forward --transport
//! websocket` uses. Bytes written become binary messages; binary messages
//! read are concatenated; a normal Close is the end of the stream, and
//! shutting the stream down sends one. The SPDY session runs on top
//! unchanged.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::mux::normal_close;

/// `ws` read and written as bytes.
#[derive(Debug)]
pub struct Tunnel<S> {
    ws: WebSocketStream<S>,
    /// The rest of the message being read.
    pending: Bytes,
    eof: bool,
    close_sent: bool,
}

impl<S> Tunnel<S> {
    /// Tunnels through `ws` (already upgraded, either role).
    pub fn new(ws: WebSocketStream<S>) -> Self {
        Tunnel {
            ws,
            pending: Bytes::new(),
            eof: false,
            close_sent: false,
        }
    }
}

fn io_error(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            io::Error::new(io::ErrorKind::BrokenPipe, "WebSocket closed")
        }
        e => io::Error::other(e),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Tunnel<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending[..n]);
                self.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            if self.eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(b))) => self.pending = b,
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text message in a tunnelled byte stream",
                    )))
                }
                // The library answers the peer's Close; the stream ends.
                Some(Ok(Message::Close(_))) | None => self.eof = true,
                Some(Ok(_)) => {}
                Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => self.eof = true,
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Tunnel<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let ws = Pin::new(&mut self.ws);
        ready!(ws.poll_ready(cx)).map_err(io_error)?;
        Pin::new(&mut self.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(io_error)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(io_error)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.close_sent {
            // A normal Close: client-go reads any other as an error.
            ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(io_error)?;
            self.close_sent = true;
            match Pin::new(&mut self.ws).start_send(normal_close()) {
                Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {}
                Err(e) => return Poll::Ready(Err(io_error(e))),
            }
        }
        Pin::new(&mut self.ws).poll_close(cx).map_err(io_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::protocol::Role;

    #[tokio::test]
    async fn messages_become_one_byte_stream_and_back() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut tunnel = Tunnel::new(WebSocketStream::from_raw_socket(a, Role::Server, None).await);
        let mut peer = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        // A frame split across messages, and two in one: boundaries do
        // not matter.
        for m in [&b"hel"[..], b"lo wor", b"ld"] {
            peer.send(Message::Binary(Bytes::copy_from_slice(m)))
                .await
                .expect("send");
        }
        peer.send(Message::Ping(Bytes::from_static(b"p")))
            .await
            .expect("ping");
        let mut got = [0u8; 11];
        tunnel.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"hello world");

        tunnel.write_all(b"reply").await.expect("write");
        tunnel.flush().await.expect("flush");
        tunnel.shutdown().await.expect("shutdown");
        let mut data = Vec::new();
        let code = loop {
            match peer.next().await.expect("message").expect("read") {
                Message::Binary(b) => data.extend_from_slice(&b),
                Message::Close(f) => break f.map(|f| f.code),
                Message::Pong(p) => assert_eq!(p.as_ref(), b"p"),
                other => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(data, b"reply");
        assert_eq!(code, Some(CloseCode::Normal));
    }

    #[tokio::test]
    async fn the_peers_close_is_the_end_of_the_stream() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut tunnel = Tunnel::new(WebSocketStream::from_raw_socket(a, Role::Server, None).await);
        let mut peer = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        peer.send(Message::Binary(Bytes::from_static(b"last")))
            .await
            .expect("send");
        peer.close(None).await.expect("close");
        let mut got = Vec::new();
        tunnel.read_to_end(&mut got).await.expect("read to end");
        assert_eq!(got, b"last");
    }

    #[tokio::test]
    async fn text_is_not_part_of_a_byte_stream() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut tunnel = Tunnel::new(WebSocketStream::from_raw_socket(a, Role::Server, None).await);
        let mut peer = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        peer.send(Message::Text("hi".into())).await.expect("send");
        let mut got = [0u8; 2];
        let e = tunnel.read_exact(&mut got).await.expect_err("text");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}
