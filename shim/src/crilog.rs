//! CRI container log writer.
//!
//! Kubelet does not talk to the container's stdio; it reads the log file whose
//! path it put in the container config and expects every line of it to be a
//! CRI log record:
//!
//! ```text
//! 2026-11-23T04:20:01.123456789Z stdout F hello world
//! ```
//!
//! i.e. `<RFC3339Nano UTC timestamp> <stdout|stderr> <P|F> <content>\n`.
//! `F` marks the end of a line of the container's output, `P` a piece of a line
//! that continues in the next record of the same stream.
//!
//! The behaviour deliberately matches containerd's CRI plugin
//! (`redirectLogs` in `internal/cri/io/logger.go`), because kubelet and the
//! tools around it were written against it:
//!
//! * a line ends at `\n`; a `\r` directly before that `\n` is dropped too (so
//!   `\r\n` output is logged like `\n` output), any other `\r` is content;
//! * a line whose content is longer than [`MAX_LINE`] is cut into `P` records of
//!   exactly [`MAX_LINE`] bytes, the remainder (1..=[`MAX_LINE`] bytes, possibly
//!   empty only for an empty line) becomes the `F` record; a line of exactly
//!   [`MAX_LINE`] bytes is a single `F` record;
//! * output that ends (EOF) without a newline is flushed as a `P` record, never
//!   as `F` — the line was not terminated, and containerd says so;
//! * write errors never stop the draining of the container's output: the record
//!   is dropped and the next one is tried again.
//!
//! Differences from containerd, on purpose: timestamps are always UTC with a
//! `Z` suffix (containerd formats `time.Now()` in the daemon's local zone;
//! both are valid RFC3339Nano for kubelet), and a log file that has been
//! deleted under us (its directory removed) is detected and reported instead
//! of being written to invisibly — see [`CriLog::write`].
//!
//! The shim runs as root, so the log is never opened through a symlink: the
//! file is opened by name inside its directory with `O_NOFOLLOW`, and only
//! when the container is created or kubelet asks for it (ReopenContainerLog)
//! — never behind kubelet's back because the file went missing.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::fcntl::{openat, OFlag};
use nix::sys::stat::Mode;

/// Which output stream a chunk came from (tty output is reported as Stdout).
///
/// It is written into every record so that kubelet can split `kubectl logs`
/// output by stream, and each stream keeps its own incomplete line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// The container's standard output, or its terminal when it has a tty.
    Stdout,
    /// The container's standard error (never used for tty containers).
    Stderr,
}

impl Stream {
    /// The stream's name as the CRI log format spells it (`stdout`/`stderr`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Longest content of one record, in bytes; longer lines are split into `P`
/// records. 16 KiB like containerd's `max_container_log_line_size` default, so
/// that log consumers see the same record sizes as on a containerd node.
pub const MAX_LINE: usize = 16 * 1024;

/// How often a healthy log file is checked for having been deleted. Bounds
/// the extra syscall to one per second instead of one per record.
const RECHECK_EVERY: Duration = Duration::from_secs(1);

/// Why the log could not be opened or written; the shim reports these (they
/// never stop the container's output from being drained).
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The log file could not be opened or created, e.g. because its directory
    /// does not exist (kubelet creates it) or was removed, or because a
    /// symlink sits at the log path (`ELOOP`: it is never followed).
    #[error("cannot open container log {}: {source}", .path.display())]
    Open {
        /// The log path that was being opened.
        path: PathBuf,
        /// The error from open(2).
        source: std::io::Error,
    },
    /// Writing a record failed (disk full, I/O error, ...); the record was
    /// dropped.
    #[error("cannot write {} record to container log {}: {source}", .stream.as_str(), .path.display())]
    Write {
        /// The log file being written.
        path: PathBuf,
        /// The stream whose record was dropped.
        stream: Stream,
        /// The error from write(2).
        source: std::io::Error,
    },
    /// The open log file has been deleted (typically its pod log directory was
    /// removed); output is dropped until kubelet asks for the log to be
    /// reopened (ReopenContainerLog), which it does when it finds it missing.
    #[error("container log {} was deleted; dropping output until it is reopened", .path.display())]
    Unlinked {
        /// The log path whose file disappeared.
        path: PathBuf,
    },
}

/// An open CRI log file plus the incomplete line of each stream.
///
/// One per container (both streams share the file, like containerd, so the
/// records of stdout and stderr appear in the order they were produced). It is
/// not internally synchronised: the shim serialises calls (e.g. behind a mutex)
/// and every record goes out in a single `write(2)` on an `O_APPEND` file, so
/// records never interleave in the file.
pub struct CriLog {
    path: PathBuf,
    /// The log's directory, opened once by its path; the file is opened by
    /// `name` inside it.
    dir: File,
    /// The log file's name in `dir`.
    name: OsString,
    /// `None` after the file was found deleted, until [`CriLog::reopen`].
    file: Option<File>,
    stdout_tail: Vec<u8>,
    stderr_tail: Vec<u8>,
    /// Scratch buffer a record is built in before it is written.
    record: Vec<u8>,
    error: Option<LogError>,
    recheck_every: Duration,
    last_check: Instant,
}

impl std::fmt::Debug for CriLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CriLog")
            .field("path", &self.path)
            .field("open", &self.file.is_some())
            .field("stdout_tail_len", &self.stdout_tail.len())
            .field("stderr_tail_len", &self.stderr_tail.len())
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

/// The directory of the log at `path` and the file's name in it.
fn split_log_path(path: &Path) -> Result<(&Path, &std::ffi::OsStr), LogError> {
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) if !dir.as_os_str().is_empty() => Ok((dir, name)),
        (Some(_), Some(name)) => Ok((Path::new("."), name)),
        _ => Err(LogError::Open {
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the log path names no file",
            ),
        }),
    }
}

/// Opens the directory of the log at `path`. Its path is the daemon's
/// choice (the pod's log directory, checked by the daemon), so it is opened
/// normally; only the file inside it is guarded against symlinks.
fn open_log_dir(path: &Path) -> Result<File, LogError> {
    let (dir, _) = split_log_path(path)?;
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)
        .map_err(|source| LogError::Open {
            path: path.to_path_buf(),
            source,
        })
}

/// Opens the log file `name` in `dir` the way containerd does (create if
/// missing, append, 0640, close-on-exec), but with `O_NOFOLLOW`: a symlink
/// planted at the log path fails the open (`ELOOP`) instead of having the
/// root shim create or append to the file it points at. `path` is for
/// messages.
fn open_log_file(dir: &File, name: &std::ffi::OsStr, path: &Path) -> Result<File, LogError> {
    openat(
        dir,
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_APPEND | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o640),
    )
    .map(File::from)
    .map_err(|errno| LogError::Open {
        path: path.to_path_buf(),
        source: errno.into(),
    })
}

/// Whether `f` has been deleted (its last link is gone); a file that cannot
/// be examined counts as present.
fn is_deleted(f: &File) -> bool {
    matches!(f.metadata(), Ok(meta) if meta.nlink() == 0)
}

/// Length of the part of an unterminated line that is certainly content: a
/// trailing `\r` may still turn out to be half of a `\r\n` line end.
fn settled_len(tail: &[u8]) -> usize {
    tail.len() - usize::from(tail.last() == Some(&b'\r'))
}

impl CriLog {
    /// Opens (creating, append mode, mode 0o640) the log at `path`. The parent
    /// directory must exist (kubelet creates it); a missing one is an error
    /// naming the path. A symlink at `path` is not followed: the open fails.
    pub fn open(path: &Path) -> Result<CriLog, LogError> {
        let dir = open_log_dir(path)?;
        let (_, name) = split_log_path(path)?;
        let name = name.to_os_string();
        let file = open_log_file(&dir, &name, path)?;
        Ok(CriLog {
            path: path.to_path_buf(),
            dir,
            name,
            file: Some(file),
            stdout_tail: Vec::new(),
            stderr_tail: Vec::new(),
            // Grows with the longest record written, not reserved up
            // front: a quiet container's shim keeps no 16 KiB of scratch.
            record: Vec::new(),
            error: None,
            recheck_every: RECHECK_EVERY,
            last_check: Instant::now(),
        })
    }

    /// The log path kubelet asked for; needed to reopen it and for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Feed a chunk of output as read from the container's pipe/pty. Complete
    /// lines are written immediately as F records; the incomplete tail is
    /// buffered per stream; once a buffered line exceeds MAX_LINE its first
    /// MAX_LINE bytes are written as a P record (exactly MAX_LINE bytes stay
    /// buffered, as in containerd, so that a line of exactly MAX_LINE bytes is
    /// one F record). Output must never block or be lost silently: if writing
    /// fails (e.g. disk full) the data is dropped, the error is remembered (see
    /// `take_error`) and later writes keep trying.
    ///
    /// Writing to a deleted file does not fail on Linux, so at most once per
    /// second the file is checked for having been deleted (e.g. its directory
    /// removed); from then on the file is closed (freeing its space), output
    /// is dropped and [`LogError::Unlinked`] is reported. Nothing is created
    /// at the path again until [`CriLog::reopen`]: a deleted log stays
    /// deleted, as with containerd. Kubelet's log manager calls
    /// ReopenContainerLog when it finds a container's log missing, and that
    /// brings output back.
    pub fn write(&mut self, stream: Stream, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        // Work on the tail outside `self` so records can be emitted from it.
        let mut tail = std::mem::take(self.tail_mut(stream));
        let mut rest = data;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            let line = &rest[..nl];
            if tail.is_empty() {
                self.emit_line(stream, line);
            } else {
                tail.extend_from_slice(line);
                self.emit_line(stream, &tail);
                tail.clear();
            }
            rest = &rest[nl + 1..];
        }
        tail.extend_from_slice(rest);
        let mut start = 0;
        while settled_len(&tail[start..]) > MAX_LINE {
            self.emit(stream, true, &tail[start..start + MAX_LINE]);
            start += MAX_LINE;
        }
        tail.drain(..start);
        // A huge unterminated chunk must not pin its memory for the life of
        // the container; the tail never holds more than MAX_LINE + 1 bytes.
        if tail.capacity() > 4 * MAX_LINE {
            tail.shrink_to(MAX_LINE + 1);
        }
        *self.tail_mut(stream) = tail;
    }

    /// The stream reached EOF: flush its buffered tail (as containerd does).
    ///
    /// The unterminated tail is written as `P` record(s) — containerd marks a
    /// line that was not ended by a newline as partial even at EOF. Nothing is
    /// written when the stream ended right after a newline.
    pub fn close_stream(&mut self, stream: Stream) {
        let tail = std::mem::take(self.tail_mut(stream));
        for piece in tail.chunks(MAX_LINE) {
            self.emit(stream, true, piece);
        }
    }

    /// Reopen the file at the same path (kubelet renamed it for rotation, or
    /// found it missing, and asks via ReopenContainerLog).
    ///
    /// Like containerd's ReopenContainerLog: the new file is opened first; if
    /// that fails (e.g. directory gone, or a symlink at the path) the error is
    /// returned and nothing changes — output keeps going to the old (renamed)
    /// file, and kubelet, seeing the error, renames it back. On success the
    /// buffered incomplete lines are flushed as `P` records into the old file
    /// (containerd closes the old writers, which flushes them as at EOF), then
    /// the old file is closed and all further output goes to the new one.
    ///
    /// The file is opened in the directory held since [`CriLog::open`]; only
    /// if that directory has been removed is the directory path opened anew,
    /// so that a pod log directory that was removed and made again gets the
    /// log back.
    pub fn reopen(&mut self) -> Result<(), LogError> {
        if is_deleted(&self.dir) {
            self.dir = open_log_dir(&self.path)?;
        }
        let new = open_log_file(&self.dir, &self.name, &self.path)?;
        if self.file.is_some() {
            self.close_stream(Stream::Stdout);
            self.close_stream(Stream::Stderr);
        }
        // Without an old file the tails simply continue in the new one.
        self.file = Some(new);
        self.last_check = Instant::now();
        Ok(())
    }

    /// The first write error since the last call, for the shim to report.
    pub fn take_error(&mut self) -> Option<LogError> {
        self.error.take()
    }

    fn tail_mut(&mut self, stream: Stream) -> &mut Vec<u8> {
        match stream {
            Stream::Stdout => &mut self.stdout_tail,
            Stream::Stderr => &mut self.stderr_tail,
        }
    }

    fn note_error(&mut self, err: LogError) {
        if self.error.is_none() {
            self.error = Some(err);
        }
    }

    /// Writes one terminated line (without its `\n`): P records while it is
    /// longer than MAX_LINE, then the rest as an F record.
    fn emit_line(&mut self, stream: Stream, line: &[u8]) {
        let mut content = line.strip_suffix(b"\r").unwrap_or(line);
        while content.len() > MAX_LINE {
            let (piece, rest) = content.split_at(MAX_LINE);
            self.emit(stream, true, piece);
            content = rest;
        }
        self.emit(stream, false, content);
    }

    /// Formats and writes one record with a single write(2).
    fn emit(&mut self, stream: Stream, partial: bool, content: &[u8]) {
        self.record.clear();
        format_record(
            &mut self.record,
            SystemTime::now(),
            stream,
            partial,
            content,
        );
        self.check_file();
        let Some(file) = self.file.as_mut() else {
            // Lost file: dropped, and already reported by check_file.
            return;
        };
        if let Err(source) = file.write_all(&self.record) {
            self.note_error(LogError::Write {
                path: self.path.clone(),
                stream,
                source,
            });
        }
    }

    /// Rate-limited: notices a deleted log file and closes it, freeing its
    /// disk space. A lost file is not opened again here: only an explicit
    /// [`CriLog::reopen`] creates a file at the log path.
    fn check_file(&mut self) {
        if self.last_check.elapsed() < self.recheck_every {
            return;
        }
        self.last_check = Instant::now();
        if self.file.as_ref().is_some_and(is_deleted) {
            self.file = None;
            self.note_error(LogError::Unlinked {
                path: self.path.clone(),
            });
        }
    }
}

impl Drop for CriLog {
    /// Flushes incomplete lines as `P` records so that output is not lost if
    /// the shim drops the log without closing the streams.
    fn drop(&mut self) {
        self.close_stream(Stream::Stdout);
        self.close_stream(Stream::Stderr);
    }
}

/// Formats one record; exposed for tests and for the shim's exec capture.
///
/// Appends `<ts> <stream> <P|F> <content>\n` to `out` (it does not clear it).
/// `ts` is written as RFC3339Nano in UTC: nanosecond fraction with trailing
/// zeros trimmed, no fraction at all when it is zero. `content` is copied as
/// is; the caller must not pass a `\n` in it.
pub fn format_record(
    out: &mut Vec<u8>,
    ts: SystemTime,
    stream: Stream,
    partial: bool,
    content: &[u8],
) {
    out.reserve(36 + 1 + 6 + 3 + content.len() + 1);
    push_timestamp(out, ts);
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(if partial { b" P " } else { b" F " });
    out.extend_from_slice(content);
    out.push(b'\n');
}

/// Seconds and nanoseconds since the Unix epoch, nanoseconds in 0..1e9 also
/// for times before the epoch (floor division).
fn unix_parts(ts: SystemTime) -> (i64, u32) {
    match ts.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(before) => {
            let d = before.duration();
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            match d.subsec_nanos() {
                0 => (-secs, 0),
                n => (-secs - 1, 1_000_000_000 - n),
            }
        }
    }
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01
/// (Howard Hinnant's days-to-civil algorithm, eras of 400 years).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // shift the epoch to 0000-03-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of March-based year
    let mp = (5 * doy + 2) / 153; // March = 0
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // month is 1..=12 and day 1..=31, so the casts are lossless.
    (year, month as u32, day as u32)
}

/// Appends `v` in decimal, zero-padded to at least `width` digits.
fn push_padded(out: &mut Vec<u8>, mut v: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut n = 0;
    loop {
        digits[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend(std::iter::repeat_n(b'0', width.saturating_sub(n)));
    out.extend(digits[..n].iter().rev());
}

/// Appends `ts` as Go's `time.RFC3339Nano` would in UTC.
fn push_timestamp(out: &mut Vec<u8>, ts: SystemTime) {
    let (secs, nanos) = unix_parts(ts);
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400) as u64;
    if year < 0 {
        out.push(b'-');
    }
    push_padded(out, year.unsigned_abs(), 4);
    out.push(b'-');
    push_padded(out, u64::from(month), 2);
    out.push(b'-');
    push_padded(out, u64::from(day), 2);
    out.push(b'T');
    push_padded(out, sod / 3_600, 2);
    out.push(b':');
    push_padded(out, sod / 60 % 60, 2);
    out.push(b':');
    push_padded(out, sod % 60, 2);
    if nanos != 0 {
        let mut frac = nanos;
        let mut width = 9;
        while frac % 10 == 0 {
            frac /= 10;
            width -= 1;
        }
        out.push(b'.');
        push_padded(out, u64::from(frac), width);
    }
    out.push(b'Z');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::fd::AsRawFd;

    /// One parsed record: (timestamp, stream, tag, content).
    type Rec = (String, String, String, Vec<u8>);

    fn records(path: &Path) -> Vec<Rec> {
        let data = fs::read(path).expect("read log");
        assert!(
            data.is_empty() || data.ends_with(b"\n"),
            "log must end with a complete record: {:?}",
            String::from_utf8_lossy(&data)
        );
        data.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let mut it = l.splitn(4, |&b| b == b' ');
                let ts = String::from_utf8(it.next().expect("ts").to_vec()).expect("utf8");
                let st = String::from_utf8(it.next().expect("stream").to_vec()).expect("utf8");
                let tag = String::from_utf8(it.next().expect("tag").to_vec()).expect("utf8");
                let content = it.next().expect("content").to_vec();
                (ts, st, tag, content)
            })
            .collect()
    }

    /// (stream, tag, content) triples, the part of a record tests compare.
    fn summary(path: &Path) -> Vec<(String, String, Vec<u8>)> {
        records(path)
            .into_iter()
            .map(|(_, s, t, c)| (s, t, c))
            .collect()
    }

    fn rec(stream: &str, tag: &str, content: &[u8]) -> (String, String, Vec<u8>) {
        (stream.to_string(), tag.to_string(), content.to_vec())
    }

    fn setup() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.log");
        (dir, path)
    }

    fn ts(secs: i64, nanos: u32) -> String {
        let t = if secs >= 0 {
            UNIX_EPOCH + Duration::new(secs as u64, nanos)
        } else {
            UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::new(0, nanos)
        };
        let mut out = Vec::new();
        push_timestamp(&mut out, t);
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn full_lines_are_f_records() {
        let (_dir, path) = setup();
        let mut log = CriLog::open(&path).expect("open");
        log.write(Stream::Stdout, b"hello\nworld\n\nlast\n");
        assert_eq!(
            summary(&path),
            vec![
                rec("stdout", "F", b"hello"),
                rec("stdout", "F", b"world"),
                rec("stdout", "F", b""),
                rec("stdout", "F", b"last"),
            ]
        );
        let all = records(&path);
        for (t, ..) in &all {
            assert!(t.ends_with('Z') && t.len() >= 20, "bad timestamp {t}");
        }
        assert!(log.take_error().is_none());
    }

    #[test]
    fn stdout_and_stderr_are_tagged_and_buffered_separately() {
        let (_dir, path) = setup();
        let mut log = CriLog::open(&path).expect("open");
        log.write(Stream::Stdout, b"out-");
        log.write(Stream::Stderr, b"err line\n");
        log.write(Stream::Stdout, b"line\n");
        log.write(Stream::Stderr, b"again\n");
        assert_eq!(
            summary(&path),
            vec![
                rec("stderr", "F", b"err line"),
                rec("stdout", "F", b"out-line"),
                rec("stderr", "F", b"again"),
            ]
        );
        assert_eq!(Stream::Stdout.as_str(), "stdout");
        assert_eq!(Stream::Stderr.as_str(), "stderr");
    }

    #[test]
    fn line_of_40000_bytes_is_p_p_f() {
        let (_dir, path) = setup();
        let mut log = CriLog::open(&path).expect("open");
        let line: Vec<u8> = (0..40_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut data = line.clone();
        data.push(b'\n');
        log.write(Stream::Stdout, &data);
        let got = summary(&path);
        let tags: Vec<&str> = got.iter().map(|r| r.1.as_str()).collect();
        let sizes: Vec<usize> = got.iter().map(|r| r.2.len()).collect();
        assert_eq!(tags, ["P", "P", "F"]);
        assert_eq!(sizes, [16_384, 16_384, 7_232]);
        assert_eq!(got.concat_content(), line);
    }

    #[test]
    fn long_line_fed_in_small_chunks_is_split_the_same() {
        let (_dir, path) = setup();
        let mut log = CriLog::open(&path).expect("open");
        let line: Vec<u8> = (0..40_000u32).map(|i| b'0' + (i % 10) as u8).collect();
        for chunk in line.chunks(1_000) {
            log.write(Stream::Stderr, chunk);
        }
        // Only the complete 16 KiB pieces are out before the newline.
        assert_eq!(summary(&path).len(), 2);
        log.write(Stream::Stderr, b"\n");
        let got = summary(&path);
        let sizes: Vec<(&str, usize)> = got.iter().map(|r| (r.1.as_str(), r.2.len())).collect();
        assert_eq!(sizes, [("P", 16_384), ("P", 16_384), ("F", 7_232)]);
        assert!(got.iter().all(|r| r.0 == "stderr"));
        assert_eq!(got.concat_content(), line);
    }

    #[test]
    fn line_of_exactly_max_line_is_one_f_record() {
        let (_dir, path) = setup();
        let mut log = CriLog::open(&path).expect("open");
        log.write(Stream::Stdout, &[b'x'; MAX_LINE]);
        assert!(
            summary(&path).is_empty(),
            "a full buffer is not split early"
        );
        log.write(Stream::Stdout, b"\n");
        log.write(Stream::Stdout, &[b'y'; MAX_LINE + 1]);
        log.write(Stream::Stdout, b"\n");
        let got = summary(&path);
        assert_eq!(
            got,
            vec![
                rec("stdout", "F", &[b'x'; MAX_LINE]),
                rec("stdout", "P", &[b'y'; MAX_LINE]),
                rec("stdout", "F", b"y"),
            ]
        );
    }

    #[test]
    fn chunk_boundary_in_the_middle_of_a_line() {
        let (_dir, path) = setup();
        let mut log = CriLog::open(&path).expect("open");
        log.write(Stream::Stdout, b"hel");
        assert!(summary(&path).is_empty());
        log.write(Stream::Stdout, b"lo wo");
        log.write(Stream::Stdout, b"rld\nsecond ");
        assert_eq!(summary(&path), vec![rec("stdout", "F", b"hello world")]);
        log.write(Stream::Stdout, b"line\nthird\n");
        assert_eq!(
            summary(&path),
            vec![
                rec("stdout", "F", b"hello world"),
                rec("stdout", "F", b"second line"),
                rec("stdout", "F", b"third"),
            ]
        );
    }

    #[test]
    fn eof_without_newline_flushes_a_p_record() {
        let (_dir, path) = setup();
        let mut log = CriLog::open(&path).expect("open");
        log.write(Stream::Stdout, b"done\nno newline");
        log.write(Stream::Stderr, b"ends cleanly\n");
        log.close_stream(Stream::Stdout);
        log.close_stream(Stream::Stderr);
        // Closing again (or an empty tail) writes nothing.
        log.close_stream(Stream::Stdout);
        assert_eq!(
            summary(&path),
            vec![
                rec("stdout", "F", b"done"),
                rec("stderr", "F", b"ends cleanly"),
                rec("stdout", "P", b"no newline"),
            ]
        );
    }

    #[test]
    fn eof_with_max_line_tail_is_one_p_record() {
        let (_dir, path) = setup();
        let mut log = CriLog::open(&path).expect("open");
        log.write(Stream::Stdout, &[b'z'; MAX_LINE]);
        log.close_stream(Stream::Stdout);
        assert_eq!(summary(&path), vec![rec("stdout", "P", &[b'z'; MAX_LINE])]);
    }

    #[test]
    fn carriage_returns_match_containerd() {
        let (_dir, path) = setup();
        let mut log = CriLog::open(&path).expect("open");
        log.write(Stream::Stdout, b"dos\r\n");
        log.write(Stream::Stdout, b"progress 10%\rprogress 20%\n");
        log.write(Stream::Stdout, b"split\r");
        log.write(Stream::Stdout, b"\n");
        log.write(Stream::Stdout, b"two crs\r\r\n");
        // \r\n straddling the MAX_LINE boundary: the line is MAX_LINE bytes.
        log.write(Stream::Stdout, &[b'a'; MAX_LINE]);
        log.write(Stream::Stdout, b"\r");
        log.write(Stream::Stdout, b"\n");
        log.write(Stream::Stdout, b"trailing cr at eof\r");
        log.close_stream(Stream::Stdout);
        assert_eq!(
            summary(&path),
            vec![
                rec("stdout", "F", b"dos"),
                rec("stdout", "F", b"progress 10%\rprogress 20%"),
                rec("stdout", "F", b"split"),
                rec("stdout", "F", b"two crs\r"),
                rec("stdout", "F", &[b'a'; MAX_LINE]),
                rec("stdout", "P", b"trailing cr at eof\r"),
            ]
        );
    }

    #[test]
    fn timestamp_format_is_rfc3339nano_utc() {
        assert_eq!(ts(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(ts(1_700_000_000, 500_000_000), "2023-11-14T22:13:20.5Z");
        assert_eq!(ts(1_700_000_000, 0), "2023-11-14T22:13:20Z");
        assert_eq!(
            ts(1_234_567_890, 123_456_789),
            "2009-02-13T23:31:30.123456789Z"
        );
        assert_eq!(ts(1_234_567_890, 1_000), "2009-02-13T23:31:30.000001Z");
        assert_eq!(ts(1_234_567_890, 120_000_000), "2009-02-13T23:31:30.12Z");
        assert_eq!(ts(1_709_164_800, 1), "2024-02-29T00:00:00.000000001Z");
        assert_eq!(ts(951_868_800, 0), "2000-03-01T00:00:00Z");
        assert_eq!(ts(253_402_300_799, 0), "9999-12-31T23:59:59Z");
        assert_eq!(ts(-1, 0), "1969-12-31T23:59:59Z");
        assert_eq!(ts(-1, 500_000_000), "1969-12-31T23:59:59.5Z");
    }

    #[test]
    fn format_record_layout() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 500_000_000);
        let mut out = b"keep:".to_vec();
        format_record(&mut out, t, Stream::Stdout, false, b"hello world");
        format_record(&mut out, t, Stream::Stderr, true, b"");
        assert_eq!(
            out,
            b"keep:2023-11-14T22:13:20.5Z stdout F hello world\n\
              2023-11-14T22:13:20.5Z stderr P \n"
                .to_vec()
        );
    }

    #[test]
    fn open_fails_naming_path_when_directory_missing() {
        let (dir, _) = setup();
        let path = dir.path().join("no-such-dir").join("0.log");
        let err = CriLog::open(&path).expect_err("must fail");
        match &err {
            LogError::Open { path: p, source } => {
                assert_eq!(p, &path);
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains(&path.display().to_string()));
    }

    #[test]
    fn open_appends_with_mode_0640() {
        let (_dir, path) = setup();
        fs::write(&path, b"2023-11-14T22:13:20Z stdout F old\n").expect("seed");
        let mut log = CriLog::open(&path).expect("open");
        assert_eq!(log.path(), path.as_path());
        log.write(Stream::Stdout, b"new\n");
        assert_eq!(
            summary(&path),
            vec![rec("stdout", "F", b"old"), rec("stdout", "F", b"new")]
        );
        let fresh = path.with_file_name("1.log");
        drop(CriLog::open(&fresh).expect("open fresh"));
        let mode = fs::metadata(&fresh).expect("stat").mode() & 0o7777;
        assert_eq!(mode & !0o640, 0, "mode {mode:o} grants more than 0640");
        let fd = log.file.as_ref().expect("open file").as_raw_fd();
        // SAFETY: F_GETFD only reads the flags of an fd this test owns.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        assert!(
            flags >= 0 && flags & libc::FD_CLOEXEC != 0,
            "not close-on-exec"
        );
    }

    #[test]
    fn reopen_after_rename_writes_to_new_file() {
        let (_dir, path) = setup();
        let rotated = path.with_file_name("0.log.20261123-042001");
        let mut log = CriLog::open(&path).expect("open");
        log.write(Stream::Stdout, b"before\npart");
        fs::rename(&path, &rotated).expect("rename");
        log.write(Stream::Stderr, b"still old\n");
        log.reopen().expect("reopen");
        log.write(Stream::Stdout, b"ial\nafter\n");
        assert_eq!(
            summary(&rotated),
            vec![
                rec("stdout", "F", b"before"),
                rec("stderr", "F", b"still old"),
                rec("stdout", "P", b"part"),
            ]
        );
        assert_eq!(
            summary(&path),
            vec![rec("stdout", "F", b"ial"), rec("stdout", "F", b"after")]
        );
        assert!(log.take_error().is_none());
    }

    #[test]
    fn reopen_failure_keeps_writing_to_old_file() {
        let (dir, path) = setup();
        let mut log = CriLog::open(&path).expect("open");
        // Make the path unopenable while the old file lives on elsewhere.
        let moved = dir.path().join("moved");
        fs::create_dir(&moved).expect("mkdir");
        fs::rename(&path, moved.join("0.log")).expect("rename");
        fs::create_dir(&path).expect("dir in the way");
        let err = log.reopen().expect_err("must fail");
        assert!(matches!(&err, LogError::Open { path: p, .. } if p == &path));
        log.write(Stream::Stdout, b"kept\n");
        assert_eq!(
            summary(&moved.join("0.log")),
            vec![rec("stdout", "F", b"kept")]
        );
    }

    #[test]
    fn removed_log_directory_is_reported_and_only_reopen_brings_the_log_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pod_dir = dir.path().join("pod");
        fs::create_dir(&pod_dir).expect("mkdir");
        let path = pod_dir.join("0.log");
        let mut log = CriLog::open(&path).expect("open");
        log.recheck_every = Duration::ZERO;
        log.write(Stream::Stdout, b"one\n");
        fs::remove_dir_all(&pod_dir).expect("rm -r");
        log.write(Stream::Stdout, b"two\n");
        log.write(Stream::Stderr, b"three\npartial");
        let err = log.take_error().expect("error reported");
        assert!(
            matches!(&err, LogError::Unlinked { path: p } if p == &path),
            "{err:?}"
        );
        assert!(log.take_error().is_none(), "reported once");
        assert!(log.reopen().is_err(), "no directory to reopen in");
        // The directory is back, but writes alone do not recreate the log.
        fs::create_dir(&pod_dir).expect("mkdir again");
        log.write(Stream::Stdout, b"four\n");
        assert!(!path.exists(), "a write recreated the deleted log");
        assert!(log.take_error().is_none());
        // ReopenContainerLog (kubelet's recovery of a missing log) does.
        log.reopen().expect("reopen in the new directory");
        log.write(Stream::Stdout, b"five\n");
        log.close_stream(Stream::Stderr);
        assert_eq!(
            summary(&path),
            vec![rec("stdout", "F", b"five"), rec("stderr", "P", b"partial")]
        );
    }

    #[test]
    fn deleted_log_is_not_recreated_until_reopen() {
        let (_dir, path) = setup();
        let mut log = CriLog::open(&path).expect("open");
        log.recheck_every = Duration::ZERO;
        log.write(Stream::Stdout, b"one\n");
        fs::remove_file(&path).expect("rm log");
        log.write(Stream::Stdout, b"two\n");
        assert!(matches!(log.take_error(), Some(LogError::Unlinked { .. })));
        for _ in 0..3 {
            log.write(Stream::Stdout, b"dropped\n");
            assert!(!path.exists(), "the deleted log was recreated by a write");
            assert!(log.take_error().is_none(), "no retries to report");
        }
        log.reopen().expect("reopen");
        log.write(Stream::Stdout, b"three\n");
        assert_eq!(summary(&path), vec![rec("stdout", "F", b"three")]);
        assert!(log.take_error().is_none());
    }

    #[test]
    fn symlink_at_the_log_path_is_not_followed() {
        let (dir, path) = setup();
        let target = dir.path().join("victim");
        fs::write(&target, b"precious\n").expect("seed victim");
        std::os::unix::fs::symlink(&target, &path).expect("plant symlink");
        let err = CriLog::open(&path).expect_err("opened through a symlink");
        match &err {
            LogError::Open { path: p, source } => {
                assert_eq!(p, &path);
                assert_eq!(source.raw_os_error(), Some(libc::ELOOP), "{source}");
            }
            other => panic!("unexpected {other:?}"),
        }
        // A dangling symlink does not get its target created either.
        let dangling = dir.path().join("1.log");
        let created = dir.path().join("created-through-link");
        std::os::unix::fs::symlink(&created, &dangling).expect("plant dangling symlink");
        assert!(CriLog::open(&dangling).is_err());
        assert!(!created.exists(), "the symlink's target was created");
        assert_eq!(fs::read(&target).expect("victim"), b"precious\n");
    }

    #[test]
    fn symlink_planted_before_reopen_is_not_followed() {
        let (dir, path) = setup();
        let target = dir.path().join("victim");
        fs::write(&target, b"precious\n").expect("seed victim");
        let rotated = path.with_file_name("0.log.1");
        let mut log = CriLog::open(&path).expect("open");
        log.write(Stream::Stdout, b"before\n");
        fs::rename(&path, &rotated).expect("rotate");
        std::os::unix::fs::symlink(&target, &path).expect("plant symlink");
        let err = log.reopen().expect_err("reopened through a symlink");
        assert!(
            matches!(&err, LogError::Open { source, .. } if source.raw_os_error() == Some(libc::ELOOP)),
            "{err:?}"
        );
        log.write(Stream::Stdout, b"after\n");
        assert_eq!(fs::read(&target).expect("victim"), b"precious\n");
        assert_eq!(
            summary(&rotated),
            vec![rec("stdout", "F", b"before"), rec("stdout", "F", b"after")]
        );
    }

    #[test]
    fn write_error_is_remembered_and_retried() {
        let full = Path::new("/dev/full");
        if !full.exists() {
            return;
        }
        let mut log = CriLog::open(full).expect("open /dev/full");
        log.write(Stream::Stdout, b"lost\n");
        match log.take_error() {
            Some(LogError::Write { stream, source, .. }) => {
                assert_eq!(stream, Stream::Stdout);
                assert_eq!(source.raw_os_error(), Some(libc::ENOSPC));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(log.take_error().is_none());
        log.write(Stream::Stderr, b"lost too\n");
        assert!(matches!(
            log.take_error(),
            Some(LogError::Write {
                stream: Stream::Stderr,
                ..
            })
        ));
    }

    #[test]
    fn drop_flushes_incomplete_lines() {
        let (_dir, path) = setup();
        let mut log = CriLog::open(&path).expect("open");
        log.write(Stream::Stdout, b"bye");
        drop(log);
        assert_eq!(summary(&path), vec![rec("stdout", "P", b"bye")]);
    }

    #[test]
    fn binary_content_passes_through() {
        let (_dir, path) = setup();
        let mut log = CriLog::open(&path).expect("open");
        log.write(Stream::Stdout, b"\xff\x00 \x1b[31mred\x1b[0m\n");
        assert_eq!(
            summary(&path),
            vec![rec("stdout", "F", b"\xff\x00 \x1b[31mred\x1b[0m")]
        );
    }

    trait ConcatContent {
        fn concat_content(&self) -> Vec<u8>;
    }

    impl ConcatContent for Vec<(String, String, Vec<u8>)> {
        fn concat_content(&self) -> Vec<u8> {
            self.iter().flat_map(|r| r.2.iter().copied()).collect()
        }
    }
}
