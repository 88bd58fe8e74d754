//! Any gRPC client on the CRI socket, whatever `:authority` it sends.
//!
//! gRPC C-core (Python, Ruby, C++), grpc-java and grpc-dotnet send the unix
//! socket's path (or its %-encoding) as `:authority`. The `h2` crate under
//! tonic refuses an authority that is not a valid URI authority and resets
//! the stream with PROTOCOL_ERROR (hyperium/h2#487, open upstream), while
//! containerd (grpc-go) ignores it. So monitoring agents and scripts in
//! those languages could not talk to Carapace.
//!
//! This is the thin layer in between: each accepted connection's inbound
//! bytes pass through [`Rewriter`], which leaves every frame alone except
//! header blocks (HEADERS + CONTINUATION). Those it decodes with the
//! client's HPACK context and encodes again with its own, towards the
//! server, putting `localhost` (what grpc-go and tonic clients send on a
//! unix socket) in place of an authority h2 would refuse. Every header
//! block is re-encoded, not only the rewritten ones, so the two HPACK
//! contexts (client → layer, layer → server) each stay consistent. The
//! outbound direction is untouched.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Frame types (RFC 9113 §6).
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
/// HEADERS flags.
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The largest frame payload a peer may send before SETTINGS say more
/// (SETTINGS_MAX_FRAME_SIZE's initial value): re-encoded blocks are split
/// into frames no larger, which every server accepts.
const MAX_OUT_FRAME: usize = 16_384;
/// The largest frame payload accepted from the client, and the largest
/// header block: they bound memory per connection. The server advertises
/// 16 KiB frames (h2's default), so a larger one is a protocol error
/// anyway.
const MAX_IN_FRAME: usize = 1 << 20;
const MAX_HEADER_BLOCK: usize = 1 << 20;
/// What an authority h2 refuses becomes.
const LOCALHOST: &[u8] = b"localhost";

fn protocol(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// The client-to-server byte stream of one HTTP/2 connection, with header
/// blocks re-encoded and unacceptable authorities replaced.
pub struct Rewriter {
    preface_seen: usize,
    /// Bytes received and not yet turned into output.
    pending: Vec<u8>,
    /// A header block being collected: its stream, flags (END_STREAM,
    /// PRIORITY with its 5 bytes) and fragments so far.
    block: Option<Block>,
    decoder: loona_hpack::Decoder<'static>,
    encoder: loona_hpack::Encoder<'static>,
}

struct Block {
    stream: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
}

impl Default for Rewriter {
    fn default() -> Self {
        Rewriter {
            preface_seen: 0,
            pending: Vec::new(),
            block: None,
            decoder: loona_hpack::Decoder::new(),
            encoder: loona_hpack::Encoder::new(),
        }
    }
}

impl Rewriter {
    /// Feeds bytes from the client; appends what the server should see to
    /// `out`. An error means the connection cannot go on (a malformed
    /// frame or header block, as h2 would answer with a connection error).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        let mut input = input;
        if self.preface_seen < PREFACE.len() {
            let n = input.len().min(PREFACE.len() - self.preface_seen);
            if input[..n] != PREFACE[self.preface_seen..self.preface_seen + n] {
                // Not HTTP/2 with prior knowledge: leave it to the server
                // to refuse, untouched.
                self.preface_seen = usize::MAX;
            } else {
                self.preface_seen += n;
            }
            out.extend_from_slice(&input[..n]);
            input = &input[n..];
        }
        if self.preface_seen == usize::MAX {
            out.extend_from_slice(input);
            return Ok(());
        }
        self.pending.extend_from_slice(input);
        let mut at = 0;
        while self.pending.len() - at >= 9 {
            let h = &self.pending[at..at + 9];
            let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
            if len > MAX_IN_FRAME {
                return Err(protocol("frame too large"));
            }
            if self.pending.len() - at < 9 + len {
                break;
            }
            let (typ, flags) = (h[3], h[4]);
            let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
            let end = at + 9 + len;
            match typ {
                HEADERS => {
                    let payload = self.pending[at + 9..end].to_vec();
                    self.headers(stream, flags, &payload, out)?
                }
                CONTINUATION => {
                    let payload = self.pending[at + 9..end].to_vec();
                    self.continuation(stream, flags, &payload, out)?
                }
                _ if self.block.is_some() => {
                    return Err(protocol("a header block interrupted by another frame"))
                }
                _ => out.extend_from_slice(&self.pending[at..end]),
            }
            at += 9 + len;
        }
        self.pending.drain(..at);
        Ok(())
    }

    fn headers(&mut self, stream: u32, flags: u8, p: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        if self.block.is_some() {
            return Err(protocol("HEADERS inside a header block"));
        }
        let mut p = p;
        if flags & PADDED != 0 {
            let (&pad, rest) = p.split_first().ok_or_else(|| protocol("short HEADERS"))?;
            let pad = usize::from(pad);
            if pad > rest.len() {
                return Err(protocol("HEADERS padding longer than the frame"));
            }
            p = &rest[..rest.len() - pad];
        }
        let priority = if flags & PRIORITY != 0 {
            if p.len() < 5 {
                return Err(protocol("short HEADERS priority"));
            }
            let mut pr = [0u8; 5];
            pr.copy_from_slice(&p[..5]);
            p = &p[5..];
            Some(pr)
        } else {
            None
        };
        self.block = Some(Block {
            stream,
            end_stream: flags & END_STREAM != 0,
            priority,
            fragment: p.to_vec(),
        });
        if flags & END_HEADERS != 0 {
            self.finish(out)?;
        }
        Ok(())
    }

    fn continuation(
        &mut self,
        stream: u32,
        flags: u8,
        p: &[u8],
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        let b = self
            .block
            .as_mut()
            .filter(|b| b.stream == stream)
            .ok_or_else(|| protocol("CONTINUATION outside its header block"))?;
        if b.fragment.len() + p.len() > MAX_HEADER_BLOCK {
            return Err(protocol("header block too large"));
        }
        b.fragment.extend_from_slice(p);
        if flags & END_HEADERS != 0 {
            self.finish(out)?;
        }
        Ok(())
    }

    /// Decodes the collected block, fixes the authority, encodes it again
    /// and writes it as HEADERS (+ CONTINUATION) frames.
    fn finish(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        let Some(b) = self.block.take() else {
            return Ok(());
        };
        let mut headers = self
            .decoder
            .decode(&b.fragment)
            .map_err(|e| protocol(format!("header block: {e}")))?;
        for (name, value) in headers.iter_mut() {
            if name.as_slice() == b":authority" && !acceptable_authority(value) {
                *value = LOCALHOST.to_vec();
            }
        }
        let mut block = Vec::new();
        if let Some(pr) = b.priority {
            block.extend_from_slice(&pr);
        }
        self.encoder
            .encode_into(
                headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())),
                &mut block,
            )
            .map_err(|e| protocol(format!("encode header block: {e}")))?;
        let mut chunks = block.chunks(MAX_OUT_FRAME).peekable();
        let mut first = true;
        // An empty block still makes one (empty) HEADERS frame.
        let empty: &[u8] = &[];
        if chunks.peek().is_none() {
            write_frame(
                out,
                HEADERS,
                END_HEADERS | end(b.end_stream),
                b.stream,
                empty,
            );
        }
        while let Some(chunk) = chunks.next() {
            let last = chunks.peek().is_none();
            let (typ, mut flags) = if first {
                let mut f = end(b.end_stream);
                if b.priority.is_some() {
                    f |= PRIORITY;
                }
                (HEADERS, f)
            } else {
                (CONTINUATION, 0)
            };
            if last {
                flags |= END_HEADERS;
            }
            write_frame(out, typ, flags, b.stream, chunk);
            first = false;
        }
        Ok(())
    }
}

fn end(end_stream: bool) -> u8 {
    if end_stream {
        END_STREAM
    } else {
        0
    }
}

fn write_frame(out: &mut Vec<u8>, typ: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len();
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, typ, flags]);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
}

/// Whether h2 (through the `http` crate) takes `value` as an authority.
fn acceptable_authority(value: &[u8]) -> bool {
    tonic::codegen::http::uri::Authority::try_from(value).is_ok()
}

/// A connection whose inbound HTTP/2 goes through a [`Rewriter`].
pub struct Tolerant<S> {
    inner: S,
    rewriter: Rewriter,
    raw: Vec<u8>,
    out: Vec<u8>,
    out_at: usize,
}

impl<S> Tolerant<S> {
    /// Wraps an accepted connection.
    pub fn new(inner: S) -> Self {
        Tolerant {
            inner,
            rewriter: Rewriter::default(),
            raw: vec![0; 16 * 1024],
            out: Vec::new(),
            out_at: 0,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tolerant<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.out_at < this.out.len() {
                let n = buf.remaining().min(this.out.len() - this.out_at);
                buf.put_slice(&this.out[this.out_at..this.out_at + n]);
                this.out_at += n;
                if this.out_at == this.out.len() {
                    this.out.clear();
                    this.out_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            let mut rb = ReadBuf::new(&mut this.raw);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    let got = rb.filled();
                    if got.is_empty() {
                        return Poll::Ready(Ok(()));
                    }
                    let got = got.to_vec();
                    this.rewriter.feed(&got, &mut this.out)?;
                    // A partial frame produced nothing yet: read on.
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tolerant<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected for Tolerant<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(typ: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        write_frame(&mut v, typ, flags, stream, payload);
        v
    }

    /// Splits `bytes` into frames: (type, flags, stream, payload).
    fn frames(mut bytes: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
        let mut out = Vec::new();
        while bytes.len() >= 9 {
            let len = (usize::from(bytes[0]) << 16)
                | (usize::from(bytes[1]) << 8)
                | usize::from(bytes[2]);
            let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
            out.push((bytes[3], bytes[4], stream, bytes[9..9 + len].to_vec()));
            bytes = &bytes[9 + len..];
        }
        out
    }

    fn request(authority: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        vec![
            (b":method".to_vec(), b"POST".to_vec()),
            (b":scheme".to_vec(), b"http".to_vec()),
            (
                b":path".to_vec(),
                b"/runtime.v1.RuntimeService/Version".to_vec(),
            ),
            (b":authority".to_vec(), authority.to_vec()),
            (b"content-type".to_vec(), b"application/grpc".to_vec()),
        ]
    }

    /// What the server's decoder reads from the rewritten stream.
    fn server_view(out: &[u8]) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
        let body = &out[PREFACE.len()..];
        let mut dec = loona_hpack::Decoder::new();
        let mut blocks = Vec::new();
        let mut current = Vec::new();
        for (typ, flags, _, payload) in frames(body) {
            if typ == HEADERS || typ == CONTINUATION {
                // The layer writes no padding; a priority comes first.
                let skip = if typ == HEADERS && flags & PRIORITY != 0 {
                    5
                } else {
                    0
                };
                current.extend_from_slice(&payload[skip..]);
                if flags & END_HEADERS != 0 {
                    blocks.push(dec.decode(&current).expect("server decodes"));
                    current.clear();
                }
            }
        }
        blocks
    }

    #[test]
    fn a_socket_path_authority_becomes_localhost_and_the_rest_is_kept() {
        let mut client = loona_hpack::Encoder::new();
        let mut input = PREFACE.to_vec();
        input.extend(frame(0x4, 0, 0, &[])); // SETTINGS
        let sock = b"/run/carapace/carapace.sock";
        for (stream, authority) in [(1, &sock[..]), (3, b"localhost"), (5, b"%2Frun%2Fx.sock")] {
            let block = client.encode(
                request(authority)
                    .iter()
                    .map(|(n, v)| (n.as_slice(), v.as_slice())),
            );
            input.extend(frame(HEADERS, END_HEADERS, stream, &block));
            input.extend(frame(0x0, END_STREAM, stream, &[0, 0, 0, 0, 0])); // DATA
        }
        // Fed in awkward pieces, as a socket may deliver them.
        let mut rw = Rewriter::default();
        let mut out = Vec::new();
        for piece in input.chunks(7) {
            rw.feed(piece, &mut out).expect("feed");
        }
        let blocks = server_view(&out);
        assert_eq!(blocks.len(), 3);
        assert_eq!(blocks[0], request(b"localhost"), "socket path replaced");
        assert_eq!(blocks[1], request(b"localhost"), "valid authority kept");
        assert_eq!(blocks[2], request(b"localhost"), "%-encoded path replaced");
        // Other frames pass unchanged and in order.
        let kinds: Vec<u8> = frames(&out[PREFACE.len()..]).iter().map(|f| f.0).collect();
        assert_eq!(kinds, [0x4, HEADERS, 0x0, HEADERS, 0x0, HEADERS, 0x0]);
    }

    #[test]
    fn padding_priority_and_continuations_are_understood() {
        let mut client = loona_hpack::Encoder::new();
        let block = client.encode(
            request(b"/tmp/s.sock")
                .iter()
                .map(|(n, v)| (n.as_slice(), v.as_slice())),
        );
        let (a, b) = block.split_at(block.len() / 2);
        let mut headers = vec![3u8]; // pad length
        headers.extend_from_slice(&[0x80, 0, 0, 0, 15]); // priority
        headers.extend_from_slice(a);
        headers.extend_from_slice(&[0, 0, 0]);
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, PADDED | PRIORITY | END_STREAM, 1, &headers));
        input.extend(frame(CONTINUATION, END_HEADERS, 1, b));
        let mut rw = Rewriter::default();
        let mut out = Vec::new();
        rw.feed(&input, &mut out).expect("feed");
        let f = frames(&out[PREFACE.len()..]);
        assert_eq!(f.len(), 1, "one HEADERS frame out");
        assert_eq!(f[0].1, END_STREAM | END_HEADERS | PRIORITY);
        assert_eq!(&f[0].3[..5], &[0x80, 0, 0, 0, 15], "priority kept");
        assert_eq!(server_view(&out), vec![request(b"localhost")]);
    }

    #[test]
    fn big_header_blocks_are_split_into_frames_a_server_accepts() {
        let mut client = loona_hpack::Encoder::new();
        let big = vec![b'x'; 40_000];
        let mut hs = request(b"/s.sock");
        hs.push((b"x-big".to_vec(), big.clone()));
        let block = client.encode(hs.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        let mut input = PREFACE.to_vec();
        for (i, chunk) in block.chunks(10_000).enumerate() {
            let last = (i + 1) * 10_000 >= block.len();
            let typ = if i == 0 { HEADERS } else { CONTINUATION };
            input.extend(frame(typ, if last { END_HEADERS } else { 0 }, 1, chunk));
        }
        let mut rw = Rewriter::default();
        let mut out = Vec::new();
        rw.feed(&input, &mut out).expect("feed");
        assert!(frames(&out[PREFACE.len()..])
            .iter()
            .all(|f| f.3.len() <= MAX_OUT_FRAME));
        let seen = server_view(&out);
        assert_eq!(seen[0].last().map(|h| h.1.len()), Some(big.len()));
        assert_eq!(seen[0][3].1, b"localhost");
    }

    #[test]
    fn malformed_streams_end_the_connection() {
        let mut out = Vec::new();
        let mut input = PREFACE.to_vec();
        input.extend(frame(CONTINUATION, END_HEADERS, 1, &[0x82]));
        assert!(Rewriter::default().feed(&input, &mut out).is_err());
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, END_HEADERS, 1, &[0xff, 0xff, 0xff, 0xff]));
        assert!(
            Rewriter::default().feed(&input, &mut out).is_err(),
            "bad HPACK"
        );
        // Not HTTP/2 at all: passed through for the server to refuse.
        let mut out = Vec::new();
        Rewriter::default()
            .feed(b"GET / HTTP/1.1\r\n\r\n", &mut out)
            .expect("passed through");
        assert_eq!(out, b"GET / HTTP/1.1\r\n\r\n");
    }
}
