//! The D-Bus wire format, as far as systemd's manager API needs it: method
//! calls whose bodies are strings, booleans, integers and arrays of
//! `(sv)` property pairs, and replies, errors and signals whose headers we
//! read in full and whose bodies we read only for the few shapes we expect.
//!
//! A pure module (bytes in, bytes out) so every rule of the format —
//! alignment from the message start, padding before even an empty array's
//! first element, the header field array — is unit-tested without a bus.

/// A value inside a variant (`v`) of a property pair.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `s`
    Str(String),
    /// `b`
    Bool(bool),
    /// `t`
    U64(u64),
    /// `ay`
    Bytes(Vec<u8>),
    /// `au`
    U32s(Vec<u32>),
}

impl Value {
    fn signature(&self) -> &'static str {
        match self {
            Value::Str(_) => "s",
            Value::Bool(_) => "b",
            Value::U64(_) => "t",
            Value::Bytes(_) => "ay",
            Value::U32s(_) => "au",
        }
    }
}

/// One argument of a method call.
#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    /// `s`
    Str(String),
    /// `b`
    Bool(bool),
    /// `a(sv)`: a unit's properties.
    Properties(Vec<(String, Value)>),
    /// `a(sa(sv))`: auxiliary units (always empty here).
    NoAuxUnits,
}

impl Arg {
    fn signature(&self) -> &'static str {
        match self {
            Arg::Str(_) => "s",
            Arg::Bool(_) => "b",
            Arg::Properties(_) => "a(sv)",
            Arg::NoAuxUnits => "a(sa(sv))",
        }
    }
}

/// Message types (the second header byte).
pub const METHOD_CALL: u8 = 1;
/// A successful reply.
pub const METHOD_RETURN: u8 = 2;
/// An error reply.
pub const ERROR: u8 = 3;
/// A broadcast, e.g. JobRemoved.
pub const SIGNAL: u8 = 4;

const FIELD_PATH: u8 = 1;
const FIELD_INTERFACE: u8 = 2;
const FIELD_MEMBER: u8 = 3;
const FIELD_ERROR_NAME: u8 = 4;
const FIELD_REPLY_SERIAL: u8 = 5;
const FIELD_DESTINATION: u8 = 6;
const FIELD_SIGNATURE: u8 = 8;

/// A byte buffer that aligns relative to its own start, which is the start
/// of the message (the header and the body are aligned as one stream).
#[derive(Default)]
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn pad(&mut self, align: usize) {
        while self.buf.len() % align != 0 {
            self.buf.push(0);
        }
    }

    fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    fn u32(&mut self, v: u32) {
        self.pad(4);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.pad(8);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    fn str(&mut self, s: &str) {
        self.u32(len32(s.len()));
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }

    fn sig(&mut self, s: &str) {
        // Signatures are at most 255 bytes by the spec; ours are constants.
        self.u8(s.len() as u8);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }

    /// An array: length placeholder, padding to the element alignment
    /// (present even when the array is empty), elements, then the length
    /// patched in — it counts the element bytes only, not that padding.
    fn array(&mut self, elem_align: usize, body: impl FnOnce(&mut Writer)) {
        self.pad(4);
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        self.pad(elem_align);
        let start = self.buf.len();
        body(self);
        let n = len32(self.buf.len() - start);
        self.buf[at..at + 4].copy_from_slice(&n.to_le_bytes());
    }

    fn value(&mut self, v: &Value) {
        self.sig(v.signature());
        match v {
            Value::Str(s) => self.str(s),
            Value::Bool(b) => self.u32(u32::from(*b)),
            Value::U64(n) => self.u64(*n),
            Value::Bytes(b) => self.array(1, |w| w.buf.extend_from_slice(b)),
            Value::U32s(ns) => self.array(4, |w| ns.iter().for_each(|n| w.u32(*n))),
        }
    }

    fn arg(&mut self, a: &Arg) {
        match a {
            Arg::Str(s) => self.str(s),
            Arg::Bool(b) => self.u32(u32::from(*b)),
            Arg::Properties(ps) => self.array(8, |w| {
                for (name, v) in ps {
                    w.pad(8);
                    w.str(name);
                    w.value(v);
                }
            }),
            Arg::NoAuxUnits => self.array(8, |_| {}),
        }
    }

    fn field(&mut self, code: u8, sig: &str, f: impl FnOnce(&mut Writer)) {
        self.pad(8);
        self.u8(code);
        self.sig(sig);
        f(self);
    }
}

/// Lengths on the wire are u32; nothing we send comes near 4 GiB, and a
/// string that did would be cut rather than wrap.
fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A method call to systemd's manager (or one of its objects).
pub struct Call<'a> {
    /// Object path, e.g. /org/freedesktop/systemd1.
    pub path: &'a str,
    /// Interface, e.g. org.freedesktop.systemd1.Manager.
    pub interface: &'a str,
    /// Method name.
    pub member: &'a str,
    /// Bus name of the callee; systemd's private socket ignores it.
    pub destination: &'a str,
    /// The arguments in order.
    pub args: &'a [Arg],
}

/// Encodes a method call (little-endian, protocol version 1).
pub fn encode_call(c: &Call<'_>, serial: u32) -> Vec<u8> {
    let mut body = Writer::default();
    for a in c.args {
        // The body starts 8-aligned, so aligning within it is aligning in
        // the message.
        body.arg(a);
    }
    let signature: String = c.args.iter().map(Arg::signature).collect();
    let mut w = Writer::default();
    w.u8(b'l');
    w.u8(METHOD_CALL);
    w.u8(0);
    w.u8(1);
    w.u32(len32(body.buf.len()));
    w.u32(serial);
    w.array(8, |w| {
        w.field(FIELD_PATH, "o", |w| w.str(c.path));
        w.field(FIELD_INTERFACE, "s", |w| w.str(c.interface));
        w.field(FIELD_MEMBER, "s", |w| w.str(c.member));
        w.field(FIELD_DESTINATION, "s", |w| w.str(c.destination));
        if !signature.is_empty() {
            w.field(FIELD_SIGNATURE, "g", |w| w.sig(&signature));
        }
    });
    w.pad(8);
    w.buf.extend_from_slice(&body.buf);
    w.buf
}

/// Why bytes from the bus could not be read as a message.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("malformed D-Bus message: {0}")]
pub struct Malformed(pub String);

fn bad<T>(what: impl Into<String>) -> Result<T, Malformed> {
    Err(Malformed(what.into()))
}

/// A reader over one message; offsets are from the message start, which
/// is what alignment counts from.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    big_endian: bool,
}

impl<'a> Reader<'a> {
    fn align(&mut self, a: usize) -> Result<(), Malformed> {
        let next = self.pos.next_multiple_of(a);
        if next > self.buf.len() {
            return bad("truncated padding");
        }
        self.pos = next;
        Ok(())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return bad(format!("truncated: want {n} bytes at offset {}", self.pos));
        };
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, Malformed> {
        self.align(4)?;
        let b: [u8; 4] = self
            .take(4)?
            .try_into()
            .map_err(|_| Malformed("u32".into()))?;
        Ok(if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    fn str(&mut self) -> Result<String, Malformed> {
        let n = self.u32()? as usize;
        let s = self.take(n)?;
        if self.u8()? != 0 {
            return bad("string without its NUL");
        }
        String::from_utf8(s.to_vec()).or_else(|_| bad("string is not UTF-8"))
    }

    fn sig(&mut self) -> Result<String, Malformed> {
        let n = self.u8()? as usize;
        let s = self.take(n)?;
        if self.u8()? != 0 {
            return bad("signature without its NUL");
        }
        String::from_utf8(s.to_vec()).or_else(|_| bad("signature is not ASCII"))
    }
}

/// A header field's value: the only types header fields carry.
enum FieldValue {
    Str(String),
    U32(u32),
    Other,
}

/// What we keep of a message from the bus.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Message {
    /// METHOD_RETURN, ERROR or SIGNAL (or METHOD_CALL, which we ignore).
    pub kind: u8,
    /// The call this answers (replies and errors).
    pub reply_serial: Option<u32>,
    /// The error's name, e.g. org.freedesktop.systemd1.NoSuchUnit.
    pub error_name: Option<String>,
    /// A signal's member, e.g. JobRemoved.
    pub member: Option<String>,
    /// The body's signature.
    pub signature: String,
    /// The first string (`s` or `o`) arguments of the body, in order, when
    /// the body is made of them (with `u` arguments skipped): an error's
    /// message, a job's object path, JobRemoved's job, unit and result.
    pub strings: Vec<String>,
}

/// How many bytes the message starting with these 16 bytes takes in all,
/// so the caller knows how much to read.
pub fn message_len(fixed: &[u8; 16]) -> Result<usize, Malformed> {
    let be = match fixed[0] {
        b'l' => false,
        b'B' => true,
        other => return bad(format!("unknown endianness byte {other:#x}")),
    };
    let word = |i: usize| {
        let b = [fixed[i], fixed[i + 1], fixed[i + 2], fixed[i + 3]];
        (if be {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }) as usize
    };
    let body = word(4);
    let fields = word(12);
    // The spec caps a message at 128 MiB.
    let total = (16 + fields).next_multiple_of(8) + body;
    if total > 128 << 20 {
        return bad(format!(
            "message of {total} bytes is over the 128 MiB limit"
        ));
    }
    Ok(total)
}

/// Decodes one whole message (as long as [`message_len`] said).
pub fn decode(buf: &[u8]) -> Result<Message, Malformed> {
    let mut r = Reader {
        buf,
        pos: 0,
        big_endian: false,
    };
    r.big_endian = match r.u8()? {
        b'l' => false,
        b'B' => true,
        other => return bad(format!("unknown endianness byte {other:#x}")),
    };
    let mut m = Message {
        kind: r.u8()?,
        ..Message::default()
    };
    let _flags = r.u8()?;
    if r.u8()? != 1 {
        return bad("unknown protocol version");
    }
    let body_len = r.u32()? as usize;
    let _serial = r.u32()?;
    let fields_len = r.u32()? as usize;
    r.align(8)?;
    let fields_end = r.pos + fields_len;
    if fields_end > buf.len() {
        return bad("header fields run past the message");
    }
    while r.pos < fields_end {
        r.align(8)?;
        let code = r.u8()?;
        let sig = r.sig()?;
        let v = match sig.as_str() {
            "s" | "o" => FieldValue::Str(r.str()?),
            "g" => FieldValue::Str(r.sig()?),
            "u" => FieldValue::U32(r.u32()?),
            "y" => {
                r.u8()?;
                FieldValue::Other
            }
            other => return bad(format!("header field {code} of type {other:?}")),
        };
        match (code, v) {
            (FIELD_ERROR_NAME, FieldValue::Str(s)) => m.error_name = Some(s),
            (FIELD_MEMBER, FieldValue::Str(s)) => m.member = Some(s),
            (FIELD_SIGNATURE, FieldValue::Str(s)) => m.signature = s,
            (FIELD_REPLY_SERIAL, FieldValue::U32(n)) => m.reply_serial = Some(n),
            _ => {}
        }
    }
    r.align(8)?;
    if r.pos + body_len != buf.len() {
        return bad("body length does not match the message");
    }
    // Only bodies made of s, o and u are read; anything else is left
    // unread (no reply we act on has another shape).
    if m.signature.chars().all(|c| matches!(c, 's' | 'o' | 'u')) {
        for c in m.signature.chars() {
            match c {
                'u' => {
                    r.u32()?;
                }
                _ => m.strings.push(r.str()?),
            }
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(args: &[Arg]) -> Vec<u8> {
        encode_call(
            &Call {
                path: "/org/freedesktop/systemd1",
                interface: "org.freedesktop.systemd1.Manager",
                member: "StartTransientUnit",
                destination: "org.freedesktop.systemd1",
                args,
            },
            7,
        )
    }

    #[test]
    fn a_call_has_the_header_the_spec_describes() {
        let m = call(&[Arg::Str("a.scope".into()), Arg::Str("replace".into())]);
        assert_eq!(&m[..4], &[b'l', METHOD_CALL, 0, 1]);
        let fixed: [u8; 16] = m[..16].try_into().expect("16 bytes");
        assert_eq!(message_len(&fixed), Ok(m.len()));
        // Body: "a.scope\0" at offset 0 (len 7), then "replace" 4-aligned.
        let body_len = u32::from_le_bytes(m[4..8].try_into().expect("4")) as usize;
        let body = &m[m.len() - body_len..];
        assert_eq!(&body[..4], &7u32.to_le_bytes());
        assert_eq!(&body[4..12], b"a.scope\0");
        assert_eq!(&body[12..16], &7u32.to_le_bytes());
        assert_eq!(&body[16..24], b"replace\0");
        assert_eq!(u32::from_le_bytes(m[8..12].try_into().expect("4")), 7);
        // Our own decoder reads the header back (member and signature).
        let d = decode(&m).expect("decode");
        assert_eq!(d.kind, METHOD_CALL);
        assert_eq!(d.member.as_deref(), Some("StartTransientUnit"));
        assert_eq!(d.signature, "ss");
        assert_eq!(d.strings, vec!["a.scope", "replace"]);
    }

    #[test]
    fn properties_are_aligned_structs_of_name_and_variant() {
        let m = call(&[
            Arg::Properties(vec![
                ("Delegate".into(), Value::Bool(true)),
                ("MemoryMax".into(), Value::U64(1 << 20)),
                ("PIDs".into(), Value::U32s(vec![42])),
            ]),
            Arg::NoAuxUnits,
        ]);
        let body_len = u32::from_le_bytes(m[4..8].try_into().expect("4")) as usize;
        let b = &m[m.len() - body_len..];
        let expected: Vec<u8> = [
            &[0u8; 4][..], // array length, patched below
            &[0; 4],       // pad to 8 for the first struct
            // ("Delegate", <b true>)
            &8u32.to_le_bytes(),
            b"Delegate\0",
            &[1, b'b', 0],
            &[0; 0],
            &1u32.to_le_bytes(), // 8+4+9+3 = 24: aligned already
            &[0; 4],             // to 32 for the next struct
            // ("MemoryMax", <t 1 MiB>)
            &9u32.to_le_bytes(),
            b"MemoryMax\0",
            &[1, b't', 0], // 32+4+10+3 = 49
            &[0; 7],       // u64 at 56
            &(1u64 << 20).to_le_bytes(),
            // ("PIDs", <au [42]>) at 64
            &4u32.to_le_bytes(),
            b"PIDs\0",
            &[2, b'a', b'u', 0], // 64+4+5+4 = 77
            &[0; 3],
            &4u32.to_le_bytes(), // array of 4 bytes
            &42u32.to_le_bytes(),
            // a(sa(sv)): empty, but padded to 8 after its length
            &0u32.to_le_bytes(), // at 88
            &[0; 4],
        ]
        .concat();
        let mut expected = expected;
        // Array length counts from the first struct (offset 8) to its end (88).
        expected[..4].copy_from_slice(&80u32.to_le_bytes());
        assert_eq!(b, &expected[..]);
    }

    #[test]
    fn byte_arrays_need_no_padding() {
        let m = call(&[Arg::Properties(vec![(
            "AllowedCPUs".into(),
            Value::Bytes(vec![0b101]),
        )])]);
        let body_len = u32::from_le_bytes(m[4..8].try_into().expect("4")) as usize;
        let b = &m[m.len() - body_len..];
        // 8 + 4 + "AllowedCPUs\0" (12) = 24, then sig "ay" (4) = 28, len at 28.
        assert_eq!(&b[28..32], &1u32.to_le_bytes());
        assert_eq!(b[32], 0b101);
        assert_eq!(b.len(), 33);
    }

    fn reply(
        kind: u8,
        fields: &[(u8, &str, &str)],
        reply_serial: Option<u32>,
        body: &[u8],
    ) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(b'l');
        w.u8(kind);
        w.u8(1);
        w.u8(1);
        w.u32(len32(body.len()));
        w.u32(99);
        w.array(8, |w| {
            for (code, sig, v) in fields {
                if *sig == "g" {
                    w.field(*code, "g", |w| w.sig(v));
                } else {
                    w.field(*code, sig, |w| w.str(v));
                }
            }
            if let Some(n) = reply_serial {
                w.field(FIELD_REPLY_SERIAL, "u", |w| w.u32(n));
            }
        });
        w.pad(8);
        w.buf.extend_from_slice(body);
        w.buf
    }

    fn body_of(f: impl FnOnce(&mut Writer)) -> Vec<u8> {
        let mut w = Writer::default();
        f(&mut w);
        w.buf
    }

    #[test]
    fn a_method_return_gives_its_object_path() {
        let body = body_of(|w| w.str("/org/freedesktop/systemd1/job/12"));
        let m = reply(
            METHOD_RETURN,
            &[(FIELD_SIGNATURE, "g", "o")],
            Some(7),
            &body,
        );
        let fixed: [u8; 16] = m[..16].try_into().expect("16");
        assert_eq!(message_len(&fixed), Ok(m.len()));
        let d = decode(&m).expect("decode");
        assert_eq!(d.kind, METHOD_RETURN);
        assert_eq!(d.reply_serial, Some(7));
        assert_eq!(d.strings, vec!["/org/freedesktop/systemd1/job/12"]);
    }

    #[test]
    fn an_error_gives_its_name_and_message() {
        let body = body_of(|w| w.str("Unit x.scope not loaded."));
        let m = reply(
            ERROR,
            &[
                (FIELD_ERROR_NAME, "s", "org.freedesktop.systemd1.NoSuchUnit"),
                (FIELD_SIGNATURE, "g", "s"),
            ],
            Some(3),
            &body,
        );
        let d = decode(&m).expect("decode");
        assert_eq!(d.kind, ERROR);
        assert_eq!(
            d.error_name.as_deref(),
            Some("org.freedesktop.systemd1.NoSuchUnit")
        );
        assert_eq!(d.strings, vec!["Unit x.scope not loaded."]);
    }

    #[test]
    fn job_removed_gives_job_unit_and_result() {
        let body = body_of(|w| {
            w.u32(12);
            w.str("/org/freedesktop/systemd1/job/12");
            w.str("t-x.scope");
            w.str("done");
        });
        let m = reply(
            SIGNAL,
            &[
                (FIELD_PATH, "o", "/org/freedesktop/systemd1"),
                (FIELD_MEMBER, "s", "JobRemoved"),
                (FIELD_SIGNATURE, "g", "uoss"),
            ],
            None,
            &body,
        );
        let d = decode(&m).expect("decode");
        assert_eq!(d.member.as_deref(), Some("JobRemoved"));
        assert_eq!(
            d.strings,
            vec!["/org/freedesktop/systemd1/job/12", "t-x.scope", "done"]
        );
    }

    #[test]
    fn other_bodies_are_skipped_not_misread() {
        let body = body_of(|w| w.u64(5));
        let m = reply(SIGNAL, &[(FIELD_SIGNATURE, "g", "t")], None, &body);
        let d = decode(&m).expect("decode");
        assert!(d.strings.is_empty());
    }

    #[test]
    fn garbage_is_refused_not_panicked_on() {
        assert!(decode(b"").is_err());
        assert!(decode(b"x\x02\x00\x01").is_err());
        let body = body_of(|w| w.str("/job/1"));
        let m = reply(
            METHOD_RETURN,
            &[(FIELD_SIGNATURE, "g", "o")],
            Some(1),
            &body,
        );
        for cut in 0..m.len() {
            assert!(decode(&m[..cut]).is_err(), "cut at {cut}");
        }
        let mut fixed = [0u8; 16];
        fixed[0] = b'l';
        fixed[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(message_len(&fixed).is_err());
    }
}
