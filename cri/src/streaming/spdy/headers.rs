//! SPDY/3 header blocks (section 2.6.10): a 32-bit count, then for each
//! header a 32-bit name length, the lowercase name, a 32-bit value length
//! and the value (several values joined by NUL), the whole block deflated
//! with the SPDY dictionary.
//!
//! Compression is stateful across the session: each direction has one zlib
//! stream for the connection's lifetime, every block ends with a sync
//! flush, and the next block continues the same stream. So a
//! [`HeaderCompressor`] / [`HeaderDecompressor`] must see every block of
//! its direction, in wire order — including blocks of streams that are
//! about to be refused.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::dictionary::DICTIONARY;
use super::SpdyError;

/// The most an inbound header block may inflate to. Kubernetes' streams
/// carry a handful of short headers; this bounds what a peer can make us
/// allocate.
pub const MAX_HEADER_BLOCK_LEN: usize = 256 * 1024;

/// The headers of one stream, in the order they arrived.
///
/// Names are stored lowercase (SPDY requires it on the wire) and looked up
/// case-insensitively, because Go clients name them in canonical case
/// (`streamType`, `requestID`) and lowercase them only when sending.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(String, String)>,
}

impl Headers {
    /// An empty header set (what a SYN_REPLY carries).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name` to `value`, replacing any earlier value.
    pub fn insert(&mut self, name: &str, value: &str) {
        let name = name.to_ascii_lowercase();
        match self.entries.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = value.to_owned(),
            None => self.entries.push((name, value.to_owned())),
        }
    }

    /// The value of `name` (any case) as sent, with several values still
    /// joined by NUL.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, split at the NULs SPDY joins them with.
    pub fn get_all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> {
        self.get(name).into_iter().flat_map(|v| v.split('\0'))
    }

    /// The (lowercase name, value) pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// How many distinct names are set.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no header is set.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds a decoded header; a repeated name (which the spec forbids but
    /// costs nothing to accept) gets its value appended NUL-separated.
    fn append(&mut self, name: String, value: String) {
        match self.entries.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => {
                entry.1.push('\0');
                entry.1.push_str(&value);
            }
            None => self.entries.push((name, value)),
        }
    }
}

impl<N: AsRef<str>, V: AsRef<str>> FromIterator<(N, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        let mut headers = Self::new();
        for (n, v) in iter {
            headers.insert(n.as_ref(), v.as_ref());
        }
        headers
    }
}

/// The deflating half of a session's header compression: one per
/// direction, fed every outbound header block in wire order.
pub struct HeaderCompressor {
    zlib: Compress,
}

impl HeaderCompressor {
    /// A compressor primed with the SPDY dictionary.
    pub fn new() -> Result<Self, SpdyError> {
        let mut zlib = Compress::new(Compression::default(), true);
        zlib.set_dictionary(DICTIONARY)
            .map_err(SpdyError::HeaderCompress)?;
        Ok(Self { zlib })
    }

    /// The compressed form of `headers`, ending in a sync flush so the
    /// peer can inflate it without waiting for more.
    pub fn compress(&mut self, headers: &Headers) -> Result<Bytes, SpdyError> {
        let plain = serialize(headers)?;
        let mut out = Vec::with_capacity(plain.len() / 2 + 64);
        let mut consumed = 0;
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(64));
            }
            let before = self.zlib.total_in();
            self.zlib
                .compress_vec(
                    plain.get(consumed..).unwrap_or(&[]),
                    &mut out,
                    FlushCompress::Sync,
                )
                .map_err(SpdyError::HeaderCompress)?;
            let took = usize::try_from(self.zlib.total_in() - before).unwrap_or(usize::MAX);
            consumed = consumed.saturating_add(took);
            // zlib has flushed everything once it stops short of filling
            // the output buffer with all input taken.
            if consumed >= plain.len() && out.len() < out.capacity() {
                break;
            }
        }
        Ok(Bytes::from(out))
    }
}

/// The inflating half of a session's header compression: one per
/// direction, fed every inbound header block in wire order.
pub struct HeaderDecompressor {
    zlib: Decompress,
}

impl Default for HeaderDecompressor {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderDecompressor {
    /// A decompressor that supplies the SPDY dictionary when the stream
    /// asks for it (zlib only accepts it once the header naming it is read).
    pub fn new() -> Self {
        Self {
            zlib: Decompress::new(true),
        }
    }

    /// Inflates and parses one header block.
    pub fn decompress(&mut self, block: &[u8]) -> Result<Headers, SpdyError> {
        let mut out = Vec::with_capacity((block.len() * 4).clamp(64, MAX_HEADER_BLOCK_LEN));
        let mut consumed = 0;
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADER_BLOCK_LEN {
                    return Err(SpdyError::HeadersTooLarge {
                        max: MAX_HEADER_BLOCK_LEN,
                    });
                }
                let room = out.capacity().min(MAX_HEADER_BLOCK_LEN - out.len());
                out.reserve_exact(room);
            }
            let before_in = self.zlib.total_in();
            let before_out = out.len();
            let result = self.zlib.decompress_vec(
                block.get(consumed..).unwrap_or(&[]),
                &mut out,
                FlushDecompress::Sync,
            );
            let took = usize::try_from(self.zlib.total_in() - before_in).unwrap_or(usize::MAX);
            consumed = consumed.saturating_add(took);
            match result {
                Ok(Status::StreamEnd) => {
                    return Err(SpdyError::MalformedHeaders("zlib stream ended"));
                }
                Ok(Status::Ok | Status::BufError) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    // Fails unless the stream names this very dictionary.
                    self.zlib
                        .set_dictionary(DICTIONARY)
                        .map_err(SpdyError::HeaderInflate)?;
                    continue;
                }
                Err(e) => return Err(SpdyError::HeaderInflate(e)),
            }
            // Everything is out once all input is taken and zlib stopped
            // short of filling the buffer.
            let spare = out.len() < out.capacity();
            if consumed >= block.len() && spare {
                break;
            }
            if took == 0 && out.len() == before_out && spare {
                return Err(SpdyError::MalformedHeaders(
                    "compressed block makes no progress",
                ));
            }
        }
        parse(Bytes::from(out))
    }
}

fn too_long(name: &str) -> SpdyError {
    SpdyError::BadHeader {
        name: name.to_owned(),
        reason: "longer than a 32-bit length allows",
    }
}

/// The uncompressed name/value block for `headers`.
fn serialize(headers: &Headers) -> Result<BytesMut, SpdyError> {
    let mut out = BytesMut::new();
    let count = u32::try_from(headers.len()).map_err(|_| too_long("(count)"))?;
    out.put_u32(count);
    for (name, value) in headers.iter() {
        if name.is_empty() {
            return Err(SpdyError::BadHeader {
                name: String::new(),
                reason: "empty name",
            });
        }
        for field in [name, value] {
            out.put_u32(u32::try_from(field.len()).map_err(|_| too_long(name))?);
            out.put_slice(field.as_bytes());
        }
    }
    Ok(out)
}

/// Takes a length-prefixed string off the front of `block`.
fn take_string(block: &mut Bytes, what: &'static str) -> Result<String, SpdyError> {
    if block.remaining() < 4 {
        return Err(SpdyError::MalformedHeaders(what));
    }
    let len = block.get_u32() as usize;
    if block.remaining() < len {
        return Err(SpdyError::MalformedHeaders(what));
    }
    String::from_utf8(block.split_to(len).to_vec())
        .map_err(|_| SpdyError::MalformedHeaders("header is not UTF-8"))
}

/// Parses an inflated name/value block.
fn parse(mut block: Bytes) -> Result<Headers, SpdyError> {
    if block.remaining() < 4 {
        return Err(SpdyError::MalformedHeaders("missing header count"));
    }
    let count = block.get_u32();
    let mut headers = Headers::new();
    for _ in 0..count {
        let name = take_string(&mut block, "truncated header name")?;
        if name.is_empty() {
            return Err(SpdyError::MalformedHeaders("empty header name"));
        }
        let value = take_string(&mut block, "truncated header value")?;
        headers.append(name.to_ascii_lowercase(), value);
    }
    if block.has_remaining() {
        return Err(SpdyError::MalformedHeaders("bytes after the last header"));
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Adler-32 (RFC 1950), to check the dictionary against the checksum a
    /// real SPDY stack announces for it.
    fn adler32(data: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for &byte in data {
            a = (a + u32::from(byte)) % 65521;
            b = (b + a) % 65521;
        }
        b << 16 | a
    }

    #[test]
    fn dictionary_matches_the_spec_checksum() {
        assert_eq!(DICTIONARY.len(), 1423);
        assert_eq!(adler32(DICTIONARY), 0xe3c6_a7c2);
        assert!(DICTIONARY.starts_with(b"\0\0\0\x07options"));
        assert!(DICTIONARY.ends_with(b"utf-,*,enq=0."));
    }

    fn remotecommand(stream_type: &str) -> Headers {
        [("streamType", stream_type)].into_iter().collect()
    }

    #[test]
    fn consecutive_blocks_round_trip_through_independent_contexts() {
        let mut tx = HeaderCompressor::new().expect("compressor");
        let mut rx = HeaderDecompressor::new();
        let blocks = [
            remotecommand("error"),
            remotecommand("stdin"),
            remotecommand("stdout"),
            Headers::new(),
            [("streamType", "data"), ("port", "8080"), ("requestID", "0")]
                .into_iter()
                .collect(),
            [("x", "a\0b"), ("long", &"v".repeat(100_000))]
                .into_iter()
                .collect(),
            remotecommand("stderr"),
        ];
        let mut sizes = Vec::new();
        for headers in &blocks {
            let wire = tx.compress(headers).expect("compress");
            sizes.push(wire.len());
            assert_eq!(&rx.decompress(&wire).expect("decompress"), headers);
        }
        // The shared context at work: `streamtype` was seen in the blocks
        // before, so even without the 6-byte zlib header a fresh context
        // adds, the later block is smaller.
        let fresh = HeaderCompressor::new()
            .expect("compressor")
            .compress(&blocks[2])
            .expect("compress");
        assert!(sizes[2] + 6 < fresh.len(), "{sizes:?} vs {}", fresh.len());
    }

    #[test]
    fn a_block_needs_the_blocks_before_it() {
        let mut tx = HeaderCompressor::new().expect("compressor");
        let _first = tx.compress(&remotecommand("stdin")).expect("first");
        let second = tx.compress(&remotecommand("stdout")).expect("second");
        // A fresh context has not seen the zlib header or the first block.
        assert!(HeaderDecompressor::new().decompress(&second).is_err());
    }

    #[test]
    fn names_are_lowercased_and_looked_up_in_any_case() {
        let mut tx = HeaderCompressor::new().expect("compressor");
        let mut rx = HeaderDecompressor::new();
        let sent: Headers = [("requestID", "7"), ("Port", "80")].into_iter().collect();
        let got = rx.decompress(&tx.compress(&sent).expect("c")).expect("d");
        assert_eq!(
            got.iter().collect::<Vec<_>>(),
            [("requestid", "7"), ("port", "80")]
        );
        assert_eq!(got.get("requestID"), Some("7"));
        assert_eq!(got.get("PORT"), Some("80"));
        assert_eq!(got.get("missing"), None);
    }

    #[test]
    fn multiple_values_split_at_nul() {
        let h: Headers = [("accept", "a\0b\0c")].into_iter().collect();
        assert_eq!(h.get_all("Accept").collect::<Vec<_>>(), ["a", "b", "c"]);
    }

    #[test]
    fn decodes_the_header_blocks_spdystream_writes() {
        use super::super::fixtures::SPDYSTREAM_CLIENT_FRAMES;
        use super::super::frame::{decode, Frame, MAX_PAYLOAD_LEN};

        // The zlib header names our dictionary: FDICT set, then its Adler-32.
        assert_eq!(SPDYSTREAM_CLIENT_FRAMES[18..20], [0x78, 0xf9]);
        assert_eq!(
            SPDYSTREAM_CLIENT_FRAMES[20..24],
            adler32(DICTIONARY).to_be_bytes()
        );

        let mut wire = BytesMut::from(SPDYSTREAM_CLIENT_FRAMES);
        let mut rx = HeaderDecompressor::new();
        let mut opened = Vec::new();
        while let Some(frame) = decode(&mut wire, MAX_PAYLOAD_LEN).expect("frame") {
            if let Frame::SynStream {
                stream_id,
                header_block,
                ..
            } = frame
            {
                opened.push((stream_id, rx.decompress(&header_block).expect("headers")));
            }
        }
        assert!(wire.is_empty());
        let ids: Vec<_> = opened.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, [1, 3, 5, 7]);
        let types: Vec<_> = opened
            .iter()
            .map(|(_, h)| h.get("streamType").expect("streamType"))
            .collect();
        assert_eq!(types, ["error", "stdin", "stdout", "data"]);
        let forward = &opened[3].1;
        assert_eq!(forward.get("port"), Some("8080"));
        assert_eq!(forward.get("requestID"), Some("0"));
        assert_eq!(forward.len(), 3);
    }

    #[test]
    fn block_compressed_with_another_dictionary_is_rejected() {
        let mut other = Compress::new(Compression::default(), true);
        other
            .set_dictionary(b"not the spdy dictionary")
            .expect("dict");
        let mut block = Vec::with_capacity(256);
        other
            .compress_vec(&[0, 0, 0, 0], &mut block, FlushCompress::Sync)
            .expect("compress");
        assert!(matches!(
            HeaderDecompressor::new().decompress(&block),
            Err(SpdyError::HeaderInflate(_))
        ));
    }

    #[test]
    fn garbage_is_rejected() {
        let mut rx = HeaderDecompressor::new();
        assert!(rx.decompress(b"definitely not zlib").is_err());
    }

    /// Compresses a hand-built (possibly invalid) plain block.
    fn compress_plain(plain: &[u8]) -> Vec<u8> {
        let mut zlib = Compress::new(Compression::default(), true);
        zlib.set_dictionary(DICTIONARY).expect("dict");
        let mut out = Vec::with_capacity(plain.len() + 1024);
        zlib.compress_vec(plain, &mut out, FlushCompress::Sync)
            .expect("compress");
        out
    }

    #[test]
    fn malformed_plain_blocks_are_rejected() {
        let cases: [(&[u8], &str); 5] = [
            (b"\0\0", "missing header count"),
            (b"\0\0\0\x01\0\0\0\x05ab", "truncated header name"),
            (b"\0\0\0\x01\0\0\0\0\0\0\0\0", "empty header name"),
            (
                b"\0\0\0\x01\0\0\0\x01a\0\0\0\x09b",
                "truncated header value",
            ),
            (b"\0\0\0\0extra", "bytes after the last header"),
        ];
        for (plain, want) in cases {
            match HeaderDecompressor::new().decompress(&compress_plain(plain)) {
                Err(SpdyError::MalformedHeaders(why)) => assert_eq!(why, want),
                other => panic!("{want}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_block_inflating_past_the_limit_is_rejected() {
        let mut plain = vec![0, 0, 0, 1, 0, 0, 0, 1, b'a'];
        let len = MAX_HEADER_BLOCK_LEN as u32;
        plain.extend_from_slice(&len.to_be_bytes());
        plain.resize(plain.len() + MAX_HEADER_BLOCK_LEN, b'z');
        let wire = compress_plain(&plain);
        assert!(wire.len() < 4096, "zeros compress well");
        assert!(matches!(
            HeaderDecompressor::new().decompress(&wire),
            Err(SpdyError::HeadersTooLarge { .. })
        ));
    }
}
