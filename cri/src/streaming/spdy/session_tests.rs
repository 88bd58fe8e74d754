//! The session driven by a hand-written client over an in-memory
//! transport: the client side speaks raw frames through its own codec
//! contexts, the way a Kubernetes client would.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::fixtures::SPDYSTREAM_CLIENT_FRAMES;
use super::frame::{self, Frame, GoAwayStatus, RstStatus, Setting, StreamId};
use super::headers::{HeaderCompressor, HeaderDecompressor, Headers};
use super::{Session, SessionConfig, SpdyError, SpdyStream};

const PATIENCE: Duration = Duration::from_secs(5);
/// How long "nothing arrives" is watched for.
const QUIET: Duration = Duration::from_millis(200);

async fn soon<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(PATIENCE, f).await.expect("timed out")
}

/// The client end: raw frames, its own header compression contexts.
struct Client {
    io: DuplexStream,
    buf: BytesMut,
    deflate: HeaderCompressor,
    inflate: HeaderDecompressor,
}

impl Client {
    async fn send(&mut self, frame: Frame) {
        let mut out = BytesMut::new();
        frame::encode(&frame, &mut out).expect("encode");
        self.io.write_all(&out).await.expect("client write");
    }

    async fn open(&mut self, stream_id: StreamId, headers: &[(&str, &str)]) {
        let headers: Headers = headers.iter().copied().collect();
        let header_block = self.deflate.compress(&headers).expect("compress");
        self.send(Frame::SynStream {
            stream_id,
            associated_to: 0,
            priority: 0,
            slot: 0,
            fin: false,
            unidirectional: false,
            header_block,
        })
        .await;
    }

    async fn data(&mut self, stream_id: StreamId, data: &[u8], fin: bool) {
        self.send(Frame::Data {
            stream_id,
            fin,
            data: Bytes::copy_from_slice(data),
        })
        .await;
    }

    /// The next frame, or `None` once the server closed the transport.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = frame::decode(&mut self.buf, frame::MAX_PAYLOAD_LEN).expect("frame") {
                return Some(f);
            }
            let n = soon(self.io.read_buf(&mut self.buf))
                .await
                .expect("client read");
            if n == 0 {
                assert!(self.buf.is_empty(), "server closed mid-frame");
                return None;
            }
        }
    }

    /// The next frame that is not a WINDOW_UPDATE.
    async fn next_not_update(&mut self) -> Frame {
        loop {
            match self.next().await.expect("frame, not EOF") {
                Frame::WindowUpdate { .. } => {}
                other => return other,
            }
        }
    }

    /// Expects a SYN_REPLY for `id` and inflates its (empty) headers.
    async fn expect_reply(&mut self, id: StreamId) {
        match self.next_not_update().await {
            Frame::SynReply {
                stream_id,
                fin: false,
                header_block,
            } if stream_id == id => {
                let headers = self.inflate.decompress(&header_block).expect("inflate");
                assert!(headers.is_empty(), "{headers:?}");
            }
            other => panic!("expected SYN_REPLY {id}, got {other:?}"),
        }
    }

    /// Reads DATA frames for `id` until `len` bytes have arrived.
    async fn read_data(&mut self, id: StreamId, len: usize) -> Vec<u8> {
        let mut got = Vec::new();
        while got.len() < len {
            match self.next_not_update().await {
                Frame::Data {
                    stream_id, data, ..
                } if stream_id == id => got.extend_from_slice(&data),
                other => panic!("expected DATA on {id}, got {other:?}"),
            }
        }
        got
    }

    /// Asserts no frame arrives for a while.
    async fn expect_quiet(&mut self) {
        let wait = tokio::time::timeout(QUIET, self.io.read_buf(&mut self.buf)).await;
        assert!(
            wait.is_err(),
            "expected silence, got {:?}",
            frame::decode(&mut self.buf, frame::MAX_PAYLOAD_LEN)
        );
    }

    /// Expects the server to close the transport.
    async fn expect_eof(&mut self) {
        if let Some(frame) = self.next().await {
            panic!("expected EOF, got {frame:?}");
        }
    }
}

fn start(config: SessionConfig) -> (Client, Session) {
    let (client_io, server_io) = tokio::io::duplex(1 << 20);
    let session = Session::start(server_io, config).expect("start");
    let client = Client {
        io: client_io,
        buf: BytesMut::new(),
        deflate: HeaderCompressor::new().expect("compressor"),
        inflate: HeaderDecompressor::new(),
    };
    (client, session)
}

fn enforcing() -> SessionConfig {
    SessionConfig {
        enforce_peer_window: true,
        ..SessionConfig::default()
    }
}

async fn accept(session: &mut Session) -> SpdyStream {
    soon(session.accept()).await.expect("a stream")
}

#[tokio::test]
async fn remotecommand_streams_carry_data_both_ways_until_goaway() {
    let (mut client, mut session) = start(SessionConfig::default());
    client.open(1, &[("streamType", "error")]).await;
    client.open(3, &[("streamType", "stdin")]).await;
    client.open(5, &[("streamType", "stdout")]).await;

    let mut error = accept(&mut session).await;
    let mut stdin = accept(&mut session).await;
    let mut stdout = accept(&mut session).await;
    assert_eq!(
        [error.id(), stdin.id(), stdout.id()],
        [1, 3, 5],
        "accepted in order"
    );
    assert_eq!(error.headers().get("streamType"), Some("error"));
    assert_eq!(stdin.headers().get("streamType"), Some("stdin"));
    assert_eq!(stdout.headers().get("streamType"), Some("stdout"));

    // Replies are automatic, in order, and share one header context.
    for id in [1, 3, 5] {
        client.expect_reply(id).await;
    }

    client.data(3, b"hello ", false).await;
    client.data(3, b"world", true).await;
    assert_eq!(
        soon(stdin.recv()).await.expect("recv"),
        Some("hello ".into())
    );
    assert_eq!(
        soon(stdin.recv()).await.expect("recv"),
        Some("world".into())
    );
    assert_eq!(soon(stdin.recv()).await.expect("fin"), None);
    assert_eq!(soon(stdin.recv()).await.expect("still fin"), None);

    stdout.send("hello world").await.expect("send");
    stdout.finish().expect("finish");
    assert_eq!(client.read_data(5, 11).await, b"hello world");
    assert_eq!(
        client.next_not_update().await,
        Frame::Data {
            stream_id: 5,
            fin: true,
            data: Bytes::new()
        }
    );
    assert!(matches!(
        stdout.send("more").await,
        Err(SpdyError::StreamClosed(5))
    ));

    client.send(Frame::Ping { id: 1 }).await;
    assert_eq!(client.next_not_update().await, Frame::Ping { id: 1 });

    client
        .send(Frame::GoAway {
            last_good_stream_id: 0,
            status: GoAwayStatus::OK,
        })
        .await;
    assert!(soon(session.accept()).await.is_none());
    assert!(matches!(
        error.send("late").await,
        Err(SpdyError::SessionClosed)
    ));
    assert!(matches!(
        soon(error.recv()).await,
        Err(SpdyError::SessionClosed)
    ));
    client.expect_eof().await;
    soon(session.wait()).await.expect("clean end");
}

#[tokio::test]
async fn what_spdystream_sends_is_understood() {
    // The fixture: SYN_STREAM 1/3/5 (exec), 7 (port forward), stdin data
    // with FIN, PING 1, GOAWAY — as written by spdystream itself.
    let (mut client, mut session) = start(SessionConfig::default());
    client
        .io
        .write_all(SPDYSTREAM_CLIENT_FRAMES)
        .await
        .expect("write");

    let mut streams = Vec::new();
    while let Some(s) = soon(session.accept()).await {
        streams.push(s);
    }
    let types: Vec<_> = streams
        .iter()
        .map(|s| (s.id(), s.headers().get("streamType").map(str::to_owned)))
        .collect();
    assert_eq!(
        types,
        [
            (1, Some("error".to_owned())),
            (3, Some("stdin".to_owned())),
            (5, Some("stdout".to_owned())),
            (7, Some("data".to_owned())),
        ]
    );
    assert_eq!(streams[3].headers().get("port"), Some("8080"));
    assert_eq!(streams[3].headers().get("requestID"), Some("0"));
    // Data that arrived before GOAWAY is still readable, with its FIN.
    assert_eq!(
        soon(streams[1].recv()).await.expect("data"),
        Some("hello\n".into())
    );
    assert_eq!(soon(streams[1].recv()).await.expect("fin"), None);

    for id in [1, 3, 5, 7] {
        client.expect_reply(id).await;
    }
    assert_eq!(client.next_not_update().await, Frame::Ping { id: 1 });
    drop(streams);
    // Writers dropped after the session ended send nothing more.
    client.expect_eof().await;
    soon(session.wait()).await.expect("clean end");
}

#[tokio::test]
async fn sender_blocked_on_an_exhausted_window_resumes_after_window_update() {
    let (mut client, mut session) = start(enforcing());
    client.open(1, &[("streamType", "stdout")]).await;
    let mut stdout = accept(&mut session).await;
    client.expect_reply(1).await;

    let window = super::flow::DEFAULT_WINDOW as usize;
    let payload = vec![7u8; window + 100];
    let sending = tokio::spawn(async move {
        stdout.send(payload).await.expect("send");
        stdout
    });

    assert_eq!(client.read_data(1, window).await.len(), window);
    client.expect_quiet().await;
    assert!(!sending.is_finished(), "sender should wait for window");

    // The stream's window alone is not enough: the session's is spent too.
    client
        .send(Frame::WindowUpdate {
            stream_id: 1,
            delta: 100,
        })
        .await;
    client.expect_quiet().await;
    assert!(!sending.is_finished());

    client
        .send(Frame::WindowUpdate {
            stream_id: 0,
            delta: 1000,
        })
        .await;
    assert_eq!(client.read_data(1, 100).await, vec![7u8; 100]);
    let mut stdout = soon(sending).await.expect("sender task");
    // Stream window is spent again; a further send waits.
    let more = tokio::time::timeout(QUIET, stdout.send("x")).await;
    assert!(more.is_err(), "stream window should be exhausted");
}

#[tokio::test]
async fn initial_window_setting_limits_new_sends() {
    let (mut client, mut session) = start(enforcing());
    client.open(1, &[("streamType", "stdout")]).await;
    let mut stdout = accept(&mut session).await;
    client.expect_reply(1).await;
    client
        .send(Frame::Settings {
            clear: false,
            entries: vec![Setting {
                flags: 0,
                id: frame::SETTINGS_INITIAL_WINDOW_SIZE,
                value: 10,
            }],
        })
        .await;
    // Let the setting land before sending.
    client.send(Frame::Ping { id: 3 }).await;
    assert_eq!(client.next_not_update().await, Frame::Ping { id: 3 });

    let sending = tokio::spawn(async move { stdout.send("0123456789abcdef").await });
    assert_eq!(client.read_data(1, 10).await, b"0123456789");
    client.expect_quiet().await;
    client
        .send(Frame::WindowUpdate {
            stream_id: 1,
            delta: 6,
        })
        .await;
    assert_eq!(client.read_data(1, 6).await, b"abcdef");
    soon(sending).await.expect("task").expect("send");
}

#[tokio::test]
async fn without_enforcement_a_peer_that_never_grants_window_gets_everything() {
    // moby/spdystream sends no WINDOW_UPDATE at all.
    let (mut client, mut session) = start(SessionConfig::default());
    client.open(1, &[("streamType", "stdout")]).await;
    let mut stdout = accept(&mut session).await;
    client.expect_reply(1).await;
    let big = vec![1u8; 5 * super::flow::DEFAULT_WINDOW as usize];
    let len = big.len();
    let sending = tokio::spawn(async move { stdout.send(big).await });
    assert_eq!(client.read_data(1, len).await.len(), len);
    soon(sending).await.expect("task").expect("send");
}

#[tokio::test]
async fn reading_grants_window_back_to_the_client() {
    let (mut client, mut session) = start(SessionConfig::default());
    client.open(1, &[("streamType", "stdin")]).await;
    let mut stdin = accept(&mut session).await;
    client.expect_reply(1).await;

    let chunk = vec![b'x'; 20 * 1024];
    client.data(1, &chunk, false).await;
    assert_eq!(
        soon(stdin.recv()).await.expect("recv").map(|b| b.len()),
        Some(chunk.len())
    );
    // Below half a window: nothing granted yet.
    client.expect_quiet().await;

    client.data(1, &chunk, false).await;
    assert_eq!(
        soon(stdin.recv()).await.expect("recv").map(|b| b.len()),
        Some(chunk.len())
    );
    let granted = 2 * chunk.len() as u32;
    assert_eq!(
        client.next().await,
        Some(Frame::WindowUpdate {
            stream_id: 1,
            delta: granted
        })
    );
    assert_eq!(
        client.next().await,
        Some(Frame::WindowUpdate {
            stream_id: 0,
            delta: granted
        })
    );
}

#[tokio::test]
async fn client_reset_ends_the_reader_and_stops_the_writer() {
    let (mut client, mut session) = start(SessionConfig::default());
    client.open(1, &[("streamType", "stdin")]).await;
    let mut stream = accept(&mut session).await;
    client.expect_reply(1).await;
    client
        .send(Frame::RstStream {
            stream_id: 1,
            status: RstStatus::CANCEL,
        })
        .await;
    assert!(matches!(
        soon(stream.recv()).await,
        Err(SpdyError::StreamReset {
            stream_id: 1,
            status: RstStatus::CANCEL
        })
    ));
    assert!(matches!(
        stream.send("x").await,
        Err(SpdyError::StreamReset { stream_id: 1, .. })
    ));
    // No FIN follows a reset stream when it is dropped.
    drop(stream);
    client.send(Frame::Ping { id: 5 }).await;
    assert_eq!(client.next().await, Some(Frame::Ping { id: 5 }));
}

#[tokio::test]
async fn server_reset_reaches_the_client_and_ends_the_reader() {
    let (mut client, mut session) = start(SessionConfig::default());
    client
        .open(1, &[("streamType", "data"), ("port", "80")])
        .await;
    let stream = accept(&mut session).await;
    client.expect_reply(1).await;
    let (_, mut reader, mut writer) = stream.into_parts();
    writer.reset(RstStatus::INTERNAL_ERROR);
    assert_eq!(
        client.next_not_update().await,
        Frame::RstStream {
            stream_id: 1,
            status: RstStatus::INTERNAL_ERROR
        }
    );
    assert!(matches!(
        soon(reader.recv()).await,
        Err(SpdyError::StreamReset { .. })
    ));
    // Data already in flight from the client is dropped without another
    // reset.
    client.data(1, b"late", false).await;
    client.send(Frame::Ping { id: 7 }).await;
    assert_eq!(client.next().await, Some(Frame::Ping { id: 7 }));
}

#[tokio::test]
async fn dropping_a_writer_half_closes_its_stream() {
    let (mut client, mut session) = start(SessionConfig::default());
    client.open(1, &[("streamType", "error")]).await;
    let stream = accept(&mut session).await;
    client.expect_reply(1).await;
    let (_, _reader, writer) = stream.into_parts();
    drop(writer);
    assert_eq!(
        client.next_not_update().await,
        Frame::Data {
            stream_id: 1,
            fin: true,
            data: Bytes::new()
        }
    );
}

#[tokio::test]
async fn data_for_a_stream_never_opened_is_refused() {
    let (mut client, _session) = start(SessionConfig::default());
    client.data(9, b"who?", false).await;
    assert_eq!(
        client.next_not_update().await,
        Frame::RstStream {
            stream_id: 9,
            status: RstStatus::INVALID_STREAM
        }
    );
}

#[tokio::test]
async fn data_after_the_client_half_closed_is_refused() {
    let (mut client, mut session) = start(SessionConfig::default());
    client.open(1, &[("streamType", "stdin")]).await;
    let _stream = accept(&mut session).await;
    client.expect_reply(1).await;
    client.data(1, b"", true).await;
    client.data(1, b"more", false).await;
    assert_eq!(
        client.next_not_update().await,
        Frame::RstStream {
            stream_id: 1,
            status: RstStatus::STREAM_ALREADY_CLOSED
        }
    );
}

#[tokio::test]
async fn transport_closing_ends_every_stream() {
    let (mut client, mut session) = start(SessionConfig::default());
    client.open(1, &[("streamType", "stdin")]).await;
    let mut stream = accept(&mut session).await;
    drop(client);
    assert!(matches!(
        soon(stream.recv()).await,
        Err(SpdyError::SessionClosed)
    ));
    assert!(soon(session.accept()).await.is_none());
    // The write side may fail on the closed transport; either way it ends.
    let _ = soon(session.wait()).await;
}

#[tokio::test]
async fn wrong_version_ends_the_session_with_protocol_error() {
    let (mut client, session) = start(SessionConfig::default());
    let mut wire = BytesMut::new();
    frame::encode(&Frame::Ping { id: 1 }, &mut wire).expect("encode");
    wire[1] = 2; // SPDY/2
    client.io.write_all(&wire).await.expect("write");
    assert_eq!(
        client.next().await,
        Some(Frame::GoAway {
            last_good_stream_id: 0,
            status: GoAwayStatus::PROTOCOL_ERROR
        })
    );
    client.expect_eof().await;
    assert!(matches!(
        soon(session.wait()).await,
        Err(SpdyError::UnsupportedVersion(2))
    ));
}

#[tokio::test]
async fn stream_ids_must_increase() {
    let (mut client, mut session) = start(SessionConfig::default());
    client.open(3, &[("streamType", "stdin")]).await;
    client.open(1, &[("streamType", "stdout")]).await;
    let _first = accept(&mut session).await;
    client.expect_reply(3).await;
    assert_eq!(
        client.next_not_update().await,
        Frame::GoAway {
            last_good_stream_id: 3,
            status: GoAwayStatus::PROTOCOL_ERROR
        }
    );
    assert!(matches!(
        soon(session.wait()).await,
        Err(SpdyError::Protocol(_))
    ));
}

#[tokio::test]
async fn truncated_frame_at_disconnect_is_an_error() {
    let (mut client, session) = start(SessionConfig::default());
    client
        .io
        .write_all(&[0x80, 0x03, 0x00])
        .await
        .expect("write");
    drop(client);
    assert!(matches!(
        soon(session.wait()).await,
        Err(SpdyError::TruncatedFrame)
    ));
}

#[tokio::test]
async fn closing_locally_sends_goaway_after_queued_data() {
    let (mut client, mut session) = start(SessionConfig::default());
    client.open(1, &[("streamType", "stdout")]).await;
    let mut stdout = accept(&mut session).await;
    stdout.send("bye").await.expect("send");
    session.close();
    client.expect_reply(1).await;
    assert_eq!(client.read_data(1, 3).await, b"bye");
    assert_eq!(
        client.next_not_update().await,
        Frame::GoAway {
            last_good_stream_id: 1,
            status: GoAwayStatus::OK
        }
    );
    client.expect_eof().await;
    soon(session.wait()).await.expect("clean end");
}

#[tokio::test]
async fn streams_opened_after_the_caller_stopped_accepting_are_refused() {
    let (mut client, session) = start(SessionConfig::default());
    // The driver keeps running without the `Session` handle.
    drop(session);
    client.open(1, &[("streamType", "stdin")]).await;
    assert_eq!(
        client.next_not_update().await,
        Frame::RstStream {
            stream_id: 1,
            status: RstStatus::REFUSED_STREAM
        }
    );
}
