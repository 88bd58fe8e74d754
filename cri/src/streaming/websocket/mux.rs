//! One WebSocket carrying numbered channels, as Kubernetes' `wsstream.Conn`
//! serves them: a task reads the client's messages and hands each
//! channel's data to that channel's [`ChannelReader`] (v5's close signal
//! ends one); any number of [`ChannelWriter`]s queue messages for a task
//! that writes them in order; [`ChannelConn::close`] ends the connection
//! with a normal Close frame after everything queued before it, which is
//! what clients take as the end of every channel.
//!
//! Like Kubernetes' pipes, a channel whose reader is not read holds up the
//! client's later messages; a reader that is dropped makes its channel's
//! data be discarded instead.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::framing::{self, Codec, FramingError, Inbound};

/// Messages a channel's reader may have waiting before the connection's
/// reading waits for it.
const CHANNEL_BACKLOG: usize = 16;

/// Messages queued for the writing task before writers wait.
const OUTBOX: usize = 64;

/// How long a closing connection waits for the client to answer its
/// Close frame: a hang guard for clients that never do.
const CLOSE_GUARD: Duration = Duration::from_secs(10);

/// What the client sends on one channel.
#[derive(Debug)]
pub struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
}

impl ChannelReader {
    /// The next payload; `None` once the client closed the channel (v5),
    /// or the connection ended.
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.rx.recv().await
    }
}

/// The connection is gone: nothing more reaches the client.
#[derive(Debug, thiserror::Error)]
#[error("the WebSocket connection is closed")]
pub struct Closed;

/// Sends on one channel.
#[derive(Clone, Debug)]
pub struct ChannelWriter {
    channel: u8,
    codec: Codec,
    tx: mpsc::Sender<Message>,
    /// Ends (its sender drops) when the connection's reading ends: the
    /// client closed, left or broke the connection.
    gone: watch::Receiver<()>,
}

impl ChannelWriter {
    /// Queues `data` as one message on this channel (an empty `data` still
    /// makes a message: Kubernetes' "connection is up" signal). Returns
    /// once queued, in order with every other writer's messages.
    pub async fn send(&self, data: &[u8]) -> Result<(), Closed> {
        self.tx
            .send(framing::encode(self.codec, self.channel, data))
            .await
            .map_err(|_| Closed)
    }

    /// Resolves once the client is gone: the connection's reading ended
    /// (Close, disconnect, a broken connection) or its writing did.
    pub async fn closed(&self) {
        let mut gone = self.gone.clone();
        tokio::select! {
            () = self.tx.closed() => {}
            () = async { while gone.changed().await.is_ok() {} } => {}
        }
    }
}

/// A WebSocket serving numbered channels.
#[derive(Debug)]
pub struct ChannelConn {
    codec: Codec,
    tx: mpsc::Sender<Message>,
    gone: watch::Receiver<()>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl ChannelConn {
    /// Starts serving `ws` with `codec`, `channels` channels (numbered
    /// from 0), of which the client may send on those in `readable`; v5's
    /// close signal is honoured when `close_signal`. Returns the
    /// connection and one reader per readable channel. Must be called
    /// within a tokio runtime.
    pub fn open<S>(
        ws: WebSocketStream<S>,
        codec: Codec,
        close_signal: bool,
        channels: u8,
        readable: &[u8],
    ) -> (ChannelConn, HashMap<u8, ChannelReader>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sink, stream) = ws.split();
        let mut readers = HashMap::new();
        let mut senders = HashMap::new();
        for &ch in readable.iter().filter(|c| **c < channels) {
            let (tx, rx) = mpsc::channel(CHANNEL_BACKLOG);
            senders.insert(ch, tx);
            readers.insert(ch, ChannelReader { rx });
        }
        let (tx, outbox) = mpsc::channel(OUTBOX);
        let (reading, gone) = watch::channel(());
        let reader = tokio::spawn(async move {
            read_loop(stream, codec, close_signal, channels, senders).await;
            drop(reading);
        });
        let writer = tokio::spawn(write_loop(sink, outbox));
        (
            ChannelConn {
                codec,
                tx,
                gone,
                reader,
                writer,
            },
            readers,
        )
    }

    /// A writer for `channel`.
    pub fn writer(&self, channel: u8) -> ChannelWriter {
        ChannelWriter {
            channel,
            codec: self.codec,
            tx: self.tx.clone(),
            gone: self.gone.clone(),
        }
    }

    /// Ends the connection: a normal Close frame after every message
    /// queued so far, then waits (hang-guarded) for the client's answer.
    pub async fn close(self) {
        let ChannelConn {
            tx,
            mut reader,
            writer,
            ..
        } = self;
        let _ = tx.send(normal_close()).await;
        drop(tx);
        let _ = writer.await;
        if tokio::time::timeout(CLOSE_GUARD, &mut reader)
            .await
            .is_err()
        {
            tracing::debug!("WebSocket client did not answer Close; dropping the connection");
            reader.abort();
        }
    }
}

/// The Close frame that tells Kubernetes clients every channel ended
/// cleanly (they treat any other code as an error).
pub(super) fn normal_close() -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
}

async fn read_loop<S>(
    mut stream: futures_util::stream::SplitStream<WebSocketStream<S>>,
    codec: Codec,
    close_signal: bool,
    channels: u8,
    mut senders: HashMap<u8, mpsc::Sender<Bytes>>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    while let Some(msg) = stream.next().await {
        let payload = match msg {
            Ok(Message::Binary(b)) => b,
            Ok(Message::Text(t)) => Bytes::from(t),
            // Pings are answered by the library; a Close is answered and
            // then ends the stream.
            Ok(_) => continue,
            Err(e) => {
                tracing::debug!(error = %e, "WebSocket read");
                break;
            }
        };
        match framing::decode(codec, close_signal, payload) {
            Ok(Inbound::Empty) => {}
            Ok(Inbound::Close { channel }) if channel < channels => {
                // Dropping the sender ends that channel's reader.
                senders.remove(&channel);
            }
            Ok(Inbound::Close { channel }) => {
                tracing::debug!(channel, "close signal for a channel that does not exist");
                break;
            }
            Ok(Inbound::Data { channel, data }) => {
                let Some(tx) = senders.get(&channel) else {
                    // Not a channel the client may send on: dropped.
                    continue;
                };
                if tx.send(data).await.is_err() {
                    // Nobody reads it any more: discard from now on.
                    senders.remove(&channel);
                }
            }
            Err(e @ FramingError::BadCloseSignal(_)) => {
                tracing::debug!(error = %e, "WebSocket protocol error");
                break;
            }
            Err(e) => tracing::debug!(error = %e, "WebSocket message dropped"),
        }
    }
}

async fn write_loop<S>(
    mut sink: futures_util::stream::SplitSink<WebSocketStream<S>, Message>,
    mut outbox: mpsc::Receiver<Message>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    while let Some(msg) = outbox.recv().await {
        let closing = msg.is_close();
        if let Err(e) = sink.send(msg).await {
            tracing::debug!(error = %e, "WebSocket write");
            return;
        }
        if closing {
            return;
        }
    }
    // Every writer is gone without a close: end cleanly all the same.
    let _ = sink.send(normal_close()).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::Role;

    async fn pair(
        codec: Codec,
        close_signal: bool,
        readable: &[u8],
    ) -> (
        ChannelConn,
        HashMap<u8, ChannelReader>,
        WebSocketStream<tokio::io::DuplexStream>,
    ) {
        let (a, b) = tokio::io::duplex(1 << 16);
        let server = WebSocketStream::from_raw_socket(a, Role::Server, None).await;
        let client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        let (conn, readers) = ChannelConn::open(server, codec, close_signal, 5, readable);
        (conn, readers, client)
    }

    /// Every message the client gets before the server's Close, and that
    /// Close's code; reads on to the end so the client answers the Close.
    async fn drain(
        client: &mut WebSocketStream<tokio::io::DuplexStream>,
    ) -> (Vec<Message>, Option<CloseCode>) {
        let (mut got, mut code) = (Vec::new(), None);
        while let Some(Ok(m)) = client.next().await {
            match m {
                Message::Close(f) => code = f.map(|f| f.code),
                m => got.push(m),
            }
        }
        (got, code)
    }

    #[tokio::test]
    async fn data_reaches_its_channel_and_output_keeps_its_order() {
        let (conn, mut readers, mut client) = pair(Codec::Binary, false, &[0, 4]).await;
        client
            .send(Message::Binary(Bytes::from_static(b"\x00in")))
            .await
            .expect("send");
        // Not readable: dropped, not delivered elsewhere.
        client
            .send(Message::Binary(Bytes::from_static(b"\x02nope")))
            .await
            .expect("send");
        client
            .send(Message::Binary(Bytes::from_static(b"\x04{}")))
            .await
            .expect("send");
        let stdin = readers.get_mut(&0).expect("stdin");
        assert_eq!(stdin.recv().await.as_deref(), Some(&b"in"[..]));
        let resize = readers.get_mut(&4).expect("resize");
        assert_eq!(resize.recv().await.as_deref(), Some(&b"{}"[..]));

        let (out, err) = (conn.writer(1), conn.writer(3));
        out.send(b"").await.expect("ready");
        out.send(b"hello").await.expect("stdout");
        err.send(b"status").await.expect("error");
        let closing = tokio::spawn(conn.close());
        let (got, code) = drain(&mut client).await;
        closing.await.expect("close");
        let got: Vec<Bytes> = got.into_iter().map(Message::into_data).collect();
        assert_eq!(
            got,
            vec![
                Bytes::from_static(b"\x01"),
                Bytes::from_static(b"\x01hello"),
                Bytes::from_static(b"\x03status"),
            ]
        );
        assert_eq!(code, Some(CloseCode::Normal));
        // The connection's end is the end of every input.
        assert_eq!(readers.get_mut(&0).expect("stdin").recv().await, None);
    }

    #[tokio::test]
    async fn the_v5_close_signal_ends_one_channel() {
        let (conn, mut readers, mut client) = pair(Codec::Binary, true, &[0, 4]).await;
        client
            .send(Message::Binary(Bytes::from_static(b"\x00last")))
            .await
            .expect("send");
        client.send(framing::encode_close(0)).await.expect("close");
        let stdin = readers.get_mut(&0).expect("stdin");
        assert_eq!(stdin.recv().await.as_deref(), Some(&b"last"[..]));
        assert_eq!(stdin.recv().await, None);
        // The others stay open.
        client
            .send(Message::Binary(Bytes::from_static(b"\x04{}")))
            .await
            .expect("send");
        let resize = readers.get_mut(&4).expect("resize");
        assert_eq!(resize.recv().await.as_deref(), Some(&b"{}"[..]));
        let closing = tokio::spawn(conn.close());
        let (_, code) = drain(&mut client).await;
        closing.await.expect("close");
        assert_eq!(code, Some(CloseCode::Normal));
    }

    #[tokio::test]
    async fn a_malformed_close_signal_ends_the_connection() {
        let (_conn, mut readers, mut client) = pair(Codec::Binary, true, &[0]).await;
        client
            .send(Message::Binary(Bytes::from_static(b"\xff\x00\x00")))
            .await
            .expect("send");
        assert_eq!(readers.get_mut(&0).expect("stdin").recv().await, None);
    }

    #[tokio::test]
    async fn writers_notice_a_client_that_left() {
        let (conn, _readers, client) = pair(Codec::Binary, false, &[0]).await;
        let out = conn.writer(1);
        let waiting = tokio::spawn(async move { out.closed().await });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "closed before the client left");
        drop(client);
        waiting
            .await
            .expect("closed resolves once the client is gone");
        drop(conn);
    }

    #[tokio::test]
    async fn base64_channels_decode_and_encode() {
        let (conn, mut readers, mut client) = pair(Codec::Base64, false, &[0]).await;
        client
            .send(Message::Text("0Zm9vCg==".into()))
            .await
            .expect("send");
        let stdin = readers.get_mut(&0).expect("stdin");
        assert_eq!(stdin.recv().await.as_deref(), Some(&b"foo\n"[..]));
        conn.writer(1).send(b"\n").await.expect("stdout");
        let closing = tokio::spawn(conn.close());
        let (got, _) = drain(&mut client).await;
        closing.await.expect("close");
        assert_eq!(got, vec![Message::Text("1Cg==".into())]);
    }
}
