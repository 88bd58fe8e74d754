//! Layer unpacking: turns one OCI/Docker layer blob into a directory that
//! overlayfs can stack as a lower dir, the way containerd's `archive.Apply`
//! with overlay whiteout conversion does.
//!
//! A layer is untrusted input. Every entry name is cleaned lexically and must
//! stay below the layer root; nothing is ever created through a symlink (an
//! entry whose parent is a symlink rejects the layer); hard links may only
//! point at paths already unpacked from the same layer. The layer is built in
//! a sibling staging dir and renamed into place only when complete, so a
//! `dest` that exists is always a whole layer.

use std::collections::{BTreeMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, BufReader, Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
use nix::sys::stat::{makedev, mknod, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use sha2::{Digest, Sha256};
use tar::EntryType;
use xattr::FileExt;

const MEDIA_TYPE_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const MEDIA_TYPE_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const MEDIA_TYPE_OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const MEDIA_TYPE_OCI_NONDIST_LAYER: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar";
const MEDIA_TYPE_OCI_NONDIST_LAYER_GZIP: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
const MEDIA_TYPE_OCI_NONDIST_LAYER_ZSTD: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
const MEDIA_TYPE_DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
const MEDIA_TYPE_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const MEDIA_TYPE_DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";
const MEDIA_TYPE_DOCKER_FOREIGN_LAYER: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar";
const MEDIA_TYPE_DOCKER_FOREIGN_LAYER_GZIP: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// Prefix of an AUFS-style whiteout entry name (`.wh.NAME` deletes `NAME`).
const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// Prefix of AUFS metadata entries (`.wh..wh.plnk` …), which carry nothing
/// overlayfs needs.
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
/// Entry name marking its directory opaque (lower layers' content hidden).
const WHITEOUT_OPAQUE: &[u8] = b".wh..wh..opq";
/// The xattr overlayfs reads to treat a directory as opaque.
const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// Namespace of overlayfs' private xattrs, which a layer must not carry.
const OVERLAY_XATTR_PREFIX: &[u8] = b"trusted.overlay.";
/// PAX record prefix under which tar stores extended attributes.
const PAX_XATTR_PREFIX: &[u8] = b"SCHILY.xattr.";
/// PAX record holding a sub-second modification time.
const PAX_MTIME: &[u8] = b"mtime";
/// Copy buffer for regular-file content.
const COPY_BUFFER: usize = 64 * 1024;
/// The most the tar reader may consume to find one entry: its header and
/// the metadata entries before it (GNU long name and long link, PAX
/// records), which the tar crate reads whole into memory. Go's
/// archive/tar (containerd, CRI-O) refuses such entries over 1 MiB too.
pub const META_LIMIT: u64 = 1 << 20;
/// How much of an entry name an error message shows.
const SHOWN_NAME: usize = 256;

/// The most one layer may unpack to: a gzip or zstd bomb of a few MiB
/// must not fill the image filesystem. Checked while unpacking, entry by
/// entry and chunk by chunk; 0 is no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of file content (holes included).
    pub bytes: u64,
    /// Entries (files, directories, links, devices).
    pub inodes: u64,
}

impl Limits {
    /// No limit at all (tests, imports of trusted archives).
    pub const NONE: Limits = Limits {
        bytes: 0,
        inodes: 0,
    };
}

/// What all the layers of one image may unpack to together. A pull unpacks
/// its layers in parallel, so the budget is shared and charged as each
/// layer goes, chunk by chunk; layers already on the node are charged
/// their recorded usage.
#[derive(Debug)]
pub struct ImageBudget {
    limits: Limits,
    bytes: AtomicU64,
    inodes: AtomicU64,
    /// Set when the pull failed elsewhere or was dropped: the layers still
    /// unpacking stop at their next chunk and leave nothing.
    cancelled: std::sync::atomic::AtomicBool,
}

impl ImageBudget {
    /// A fresh budget for one pull or import.
    pub fn new(limits: Limits) -> ImageBudget {
        ImageBudget {
            limits,
            bytes: AtomicU64::new(0),
            inodes: AtomicU64::new(0),
            cancelled: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Stops every layer still unpacking against this budget.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    /// Charges `bytes` of content and `inodes` entries; an error once the
    /// image is past either limit.
    pub fn charge(&self, bytes: u64, inodes: u64) -> Result<(), UnpackError> {
        if self.cancelled.load(Ordering::Relaxed) {
            return Err(UnpackError::Cancelled);
        }
        let over = |used: &AtomicU64, n: u64, limit: u64| {
            n > 0 && limit > 0 && used.fetch_add(n, Ordering::Relaxed).saturating_add(n) > limit
        };
        if over(&self.bytes, bytes, self.limits.bytes) {
            return Err(UnpackError::OverLimit {
                scope: "image",
                what: "bytes",
                limit: self.limits.bytes,
            });
        }
        if over(&self.inodes, inodes, self.limits.inodes) {
            return Err(UnpackError::OverLimit {
                scope: "image",
                what: "inodes",
                limit: self.limits.inodes,
            });
        }
        Ok(())
    }
}

/// How a layer blob is compressed; the media type decides it because the
/// blob itself is not sniffed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar stream.
    None,
    /// gzip (possibly several concatenated members).
    Gzip,
    /// zstd (possibly several frames).
    Zstd,
}

impl Compression {
    /// Maps an OCI or Docker layer media type to its compression, so the
    /// puller can reject layer kinds it cannot unpack before fetching them.
    pub fn from_media_type(mt: &str) -> Result<Compression, UnpackError> {
        match mt {
            MEDIA_TYPE_OCI_LAYER
            | MEDIA_TYPE_OCI_NONDIST_LAYER
            | MEDIA_TYPE_DOCKER_LAYER
            | MEDIA_TYPE_DOCKER_FOREIGN_LAYER => Ok(Compression::None),
            MEDIA_TYPE_OCI_LAYER_GZIP
            | MEDIA_TYPE_OCI_NONDIST_LAYER_GZIP
            | MEDIA_TYPE_DOCKER_LAYER_GZIP
            | MEDIA_TYPE_DOCKER_FOREIGN_LAYER_GZIP => Ok(Compression::Gzip),
            MEDIA_TYPE_OCI_LAYER_ZSTD
            | MEDIA_TYPE_OCI_NONDIST_LAYER_ZSTD
            | MEDIA_TYPE_DOCKER_LAYER_ZSTD => Ok(Compression::Zstd),
            other => Err(UnpackError::MediaType(other.to_owned())),
        }
    }
}

/// What unpacking one layer produced: the digest the image config's
/// `rootfs.diff_ids` must list, and the layer's disk usage for the image
/// filesystem report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unpacked {
    /// `sha256:<hex>` of the uncompressed tar stream, trailing bytes included.
    pub diff_id: String,
    /// Bytes of regular-file content in the layer dir (hard links counted once).
    pub size: u64,
    /// Inodes in the layer dir, its root included (hard links counted once).
    pub inodes: u64,
}

/// Why a layer could not be unpacked; every variant names the tar entry or
/// the path involved so a bad image can be diagnosed from the message alone.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The manifest lists a layer media type we cannot unpack.
    #[error("unsupported layer media type {0:?}")]
    MediaType(String),
    /// The layer dir already exists; it is left untouched.
    #[error("layer dir {0} already exists")]
    DestExists(PathBuf),
    /// The destination has no parent or no final name to stage beside.
    #[error("layer dir {0} has no parent dir and name")]
    InvalidDest(PathBuf),
    /// The blob could not be decompressed or is not a well-formed tar stream.
    #[error("read layer blob {blob}: {source}")]
    Stream {
        /// The blob being read.
        blob: PathBuf,
        /// Decompressor or tar parser error.
        source: io::Error,
    },
    /// An entry name (or hard link target) leads above the layer root.
    #[error("tar entry {entry:?}: {what} escapes the layer root")]
    Escape {
        /// The entry name as found in the tar.
        entry: String,
        /// "path" or the hard link target.
        what: String,
    },
    /// An entry would be created (or a hard link resolved) through a symlink.
    #[error(
        "tar entry {entry:?}: path through symlink {:?}",
        shown_path(component)
    )]
    PathThroughSymlink {
        /// The entry name as found in the tar.
        entry: String,
        /// The symlink component, relative to the layer root.
        component: PathBuf,
    },
    /// A parent component of an entry exists but is not a directory.
    #[error(
        "tar entry {entry:?}: parent {:?} is not a directory",
        shown_path(component)
    )]
    NotADirectory {
        /// The entry name as found in the tar.
        entry: String,
        /// The offending component, relative to the layer root.
        component: PathBuf,
    },
    /// A whiteout entry names nothing that could be deleted.
    #[error("tar entry {entry:?}: bad whiteout: {reason}")]
    BadWhiteout {
        /// The entry name as found in the tar.
        entry: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A hard link points at a path not (yet) unpacked from this layer.
    #[error(
        "tar entry {entry:?}: hard link target {:?} does not exist in the layer",
        shown_path(target)
    )]
    LinkTargetMissing {
        /// The entry name as found in the tar.
        entry: String,
        /// The cleaned target, relative to the layer root.
        target: PathBuf,
    },
    /// An entry is malformed (bad name, missing link target, bad header field…).
    #[error("tar entry {entry:?}: {reason}")]
    InvalidEntry {
        /// The entry name as found in the tar.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An entry of a type no container filesystem holds (e.g. GNU volume label).
    #[error("tar entry {entry:?}: unsupported entry type {kind:?}")]
    UnsupportedType {
        /// The entry name as found in the tar.
        entry: String,
        /// The tar type flag.
        kind: EntryType,
    },
    /// The layer, or its image, unpacks to more than its [`Limits`] allow.
    #[error(
        "the {scope} unpacks to more than {limit} {what} (the limit of [images] max_{scope}_{what})"
    )]
    OverLimit {
        /// "layer" or "image".
        scope: &'static str,
        /// "bytes" or "inodes".
        what: &'static str,
        /// The limit.
        limit: u64,
    },
    /// The pull this layer belongs to failed elsewhere or was cancelled.
    #[error("cancelled: the pull failed elsewhere or its caller went away")]
    Cancelled,
    /// A filesystem operation failed.
    #[error("{op} {}: {source}", shown_path(path))]
    Io {
        /// The operation, e.g. "create file", "setxattr user.x on".
        op: String,
        /// The path operated on.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

impl UnpackError {
    fn io(op: impl Into<String>, path: &Path) -> impl FnOnce(io::Error) -> UnpackError {
        let op = op.into();
        let path = path.to_path_buf();
        move |source| UnpackError::Io { op, path, source }
    }

    fn errno(op: impl Into<String>, path: &Path) -> impl FnOnce(Errno) -> UnpackError {
        let io = Self::io(op, path);
        move |errno| io(io::Error::from(errno))
    }

    fn invalid(entry: &str, reason: impl Into<String>) -> UnpackError {
        UnpackError::InvalidEntry {
            entry: entry.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Unpacks one layer blob into `dest` (which must not exist) as an overlayfs
/// lower dir holding only this layer's changes, whiteouts in overlay form.
///
/// The layer is written into a staging dir beside `dest` (named
/// `.<dest name>.unpack-<pid>-<n>`) and renamed to `dest` once complete; on
/// any error the staging dir is removed and `dest` is never created. A crash
/// can leave a staging dir behind for the caller's garbage collection.
pub fn unpack_layer(
    blob: &Path,
    compression: Compression,
    dest: &Path,
    limits: Limits,
    image: &ImageBudget,
) -> Result<Unpacked, UnpackError> {
    match fs::symlink_metadata(dest) {
        Ok(_) => return Err(UnpackError::DestExists(dest.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(UnpackError::io("lstat", dest)(e)),
    }
    let file = File::open(blob).map_err(UnpackError::io("open layer blob", blob))?;
    let staging = Staging::create(dest)?;
    let diff_id = apply_blob(file, compression, blob, staging.path(), limits, image)?;
    let (size, inodes) = usage(staging.path())?;
    staging.commit(dest)?;
    Ok(Unpacked {
        diff_id,
        size,
        inodes,
    })
}

/// A staging dir beside the destination, removed on drop unless committed.
struct Staging {
    path: PathBuf,
    committed: bool,
}

impl Staging {
    fn create(dest: &Path) -> Result<Staging, UnpackError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let (Some(parent), Some(name)) = (dest.parent(), dest.file_name()) else {
            return Err(UnpackError::InvalidDest(dest.to_path_buf()));
        };
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let mut staging_name = OsString::from(".");
            staging_name.push(name);
            staging_name.push(format!(".unpack-{}-{n}", std::process::id()));
            let path = parent.join(staging_name);
            match fs::DirBuilder::new().mode(0o755).create(&path) {
                Ok(()) => {
                    let staging = Staging {
                        path,
                        committed: false,
                    };
                    // The umask may have narrowed the mode; a layer root
                    // without its own tar entry must still be traversable.
                    fs::set_permissions(&staging.path, Permissions::from_mode(0o755))
                        .map_err(UnpackError::io("chmod", &staging.path))?;
                    return Ok(staging);
                }
                // A leftover of a crashed unpack with our pid: take another name.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(UnpackError::io("create staging dir", &path)(e)),
            }
        }
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn commit(mut self, dest: &Path) -> Result<(), UnpackError> {
        match renameat2(
            AT_FDCWD,
            &self.path,
            AT_FDCWD,
            dest,
            RenameFlags::RENAME_NOREPLACE,
        ) {
            Ok(()) => {
                self.committed = true;
                Ok(())
            }
            Err(Errno::EEXIST) => Err(UnpackError::DestExists(dest.to_path_buf())),
            Err(e) => Err(UnpackError::errno(
                format!("rename {} to", self.path.display()),
                dest,
            )(e)),
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        if let Err(e) = fs::remove_dir_all(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "removing layer staging dir");
        }
    }
}

/// Hashes everything read through it, so the diff ID covers exactly the
/// decompressed stream.
struct Digesting<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Digesting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Streams the blob through the decompressor and the tar parser into
/// `root`; returns the diff ID.
fn apply_blob(
    file: File,
    compression: Compression,
    blob: &Path,
    root: &Path,
    limits: Limits,
    image: &ImageBudget,
) -> Result<String, UnpackError> {
    let stream_err = |source| UnpackError::Stream {
        blob: blob.to_path_buf(),
        source,
    };
    let decompressed: Box<dyn Read> = match compression {
        Compression::None => Box::new(file),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(file)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(file).map_err(stream_err)?),
    };
    let mut digesting = Digesting {
        inner: decompressed,
        hasher: Sha256::new(),
    };
    let mut reader = BufReader::with_capacity(COPY_BUFFER, &mut digesting);
    let budget = MetaBudget::default();
    let mut archive = tar::Archive::new(Budgeted {
        inner: &mut reader,
        budget: budget.clone(),
    });
    let mut applier = Applier {
        root,
        blob,
        dir_times: BTreeMap::new(),
        buf: vec![0; COPY_BUFFER],
        limits,
        image,
        bytes: 0,
        inodes: 0,
    };
    let mut entries = archive.entries().map_err(stream_err)?;
    loop {
        // Only what the tar reader consumes to find the next entry is
        // bounded: an entry's own data is read (or drained) below.
        budget.limit(Some(META_LIMIT));
        let next = entries.next();
        budget.limit(None);
        let Some(entry) = next else { break };
        let mut entry = entry.map_err(stream_err)?;
        applier.apply(&mut entry)?;
        io::copy(&mut entry, &mut io::sink()).map_err(stream_err)?;
    }
    // Bytes after the end-of-archive marker are part of the diff ID.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(stream_err)?;
    applier.finish();
    let digest = digesting.hasher.finalize();
    let mut diff_id = String::with_capacity(7 + 64);
    diff_id.push_str("sha256:");
    for byte in digest.iter() {
        diff_id.push_str(&format!("{byte:02x}"));
    }
    Ok(diff_id)
}

/// What the tar reader may still consume before the next entry is found
/// (None: no limit, while an entry's data is read). Shared between the
/// unpack loop and [`Budgeted`], both on the one thread unpacking.
#[derive(Clone, Default)]
struct MetaBudget(std::rc::Rc<std::cell::Cell<Option<u64>>>);

impl MetaBudget {
    fn limit(&self, left: Option<u64>) {
        self.0.set(left);
    }
}

/// The reader under the tar parser: fails a read past the budget, so a
/// long-name or PAX entry of hundreds of MiB is refused after 1 MiB
/// instead of being read whole into memory (and copied again) first.
struct Budgeted<R> {
    inner: R,
    budget: MetaBudget,
}

impl<R: Read> Read for Budgeted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(left) = self.budget.0.get() else {
            return self.inner.read(buf);
        };
        if left == 0 {
            return Err(io::Error::other(format!(
                "the metadata of one tar entry (header, long name, long link name, PAX \
                 records) is over {} KiB",
                META_LIMIT >> 10
            )));
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.budget.0.set(Some(left - n as u64));
        Ok(n)
    }
}

/// An entry name as error messages show it: at most [`SHOWN_NAME`] bytes,
/// with the full length said, so a hostile name cannot blow up a gRPC
/// status (or a log line).
fn shown_name(raw: &[u8]) -> String {
    if raw.len() <= SHOWN_NAME {
        return String::from_utf8_lossy(raw).into_owned();
    }
    format!(
        "{}… ({} bytes)",
        String::from_utf8_lossy(&raw[..SHOWN_NAME]),
        raw.len()
    )
}

/// A path as error messages show it (see [`shown_name`]).
fn shown_path(p: &Path) -> String {
    shown_name(p.as_os_str().as_bytes())
}

/// The time to give an entry (as both atime and mtime, like containerd
/// when the tar carries no access time).
#[derive(Clone, Copy, Debug)]
struct Times {
    mtime: TimeSpec,
}

/// An entry's metadata, read from its header and PAX records before its
/// content is consumed.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    times: Times,
    xattrs: Vec<(OsString, Vec<u8>)>,
}

impl Meta {
    fn read<R: Read>(entry: &mut tar::Entry<'_, R>, name: &str) -> Result<Meta, UnpackError> {
        let header = entry.header();
        let field = |what: &str, e: io::Error| UnpackError::invalid(name, format!("{what}: {e}"));
        let mode = header.mode().map_err(|e| field("mode", e))? & 0o7777;
        let uid = header.uid().map_err(|e| field("uid", e))?;
        let gid = header.gid().map_err(|e| field("gid", e))?;
        let uid = u32::try_from(uid)
            .map_err(|_| UnpackError::invalid(name, format!("uid {uid} out of range")))?;
        let gid = u32::try_from(gid)
            .map_err(|_| UnpackError::invalid(name, format!("gid {gid} out of range")))?;
        let header_mtime = header.mtime().map_err(|e| field("mtime", e))?;
        let mut mtime = TimeSpec::new(i64::try_from(header_mtime).unwrap_or(i64::MAX), 0);
        let mut xattrs = Vec::new();
        let pax = entry
            .pax_extensions()
            .map_err(|e| UnpackError::invalid(name, format!("PAX records: {e}")))?;
        if let Some(pax) = pax {
            for record in pax {
                let record =
                    record.map_err(|e| UnpackError::invalid(name, format!("PAX record: {e}")))?;
                let key = record.key_bytes();
                if let Some(xattr) = key.strip_prefix(PAX_XATTR_PREFIX) {
                    if xattr.starts_with(OVERLAY_XATTR_PREFIX) {
                        tracing::debug!(
                            entry = name,
                            "dropping overlay xattr carried by the layer"
                        );
                        continue;
                    }
                    xattrs.push((
                        OsStr::from_bytes(xattr).to_os_string(),
                        record.value_bytes().to_vec(),
                    ));
                } else if key == PAX_MTIME {
                    if let Some(t) = parse_pax_time(record.value_bytes()) {
                        mtime = t;
                    }
                }
            }
        }
        Ok(Meta {
            mode,
            uid,
            gid,
            times: Times { mtime },
            xattrs,
        })
    }
}

/// Parses a PAX time (`[-]seconds[.fraction]`); `None` if malformed, in which
/// case the header's whole-second time is used.
fn parse_pax_time(value: &[u8]) -> Option<TimeSpec> {
    let value = std::str::from_utf8(value).ok()?;
    let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
    let secs: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    let mut nanos: i64 = digits.parse().ok()?;
    let mut secs = secs;
    if value.starts_with('-') && nanos > 0 {
        // -1.5 means 1.5 s before the epoch: -2 s + 0.5 s.
        secs -= 1;
        nanos = 1_000_000_000 - nanos;
    }
    Some(TimeSpec::new(secs, nanos))
}

/// Why a tar name could not be turned into a path below the root.
enum NameError {
    Escape,
    Nul,
}

/// Cleans a tar name lexically: leading `/` and `./` go, `.` components go,
/// `..` pops a component and may not go above the root. The result holds
/// only normal components; empty means the root itself.
fn clean_name(raw: &[u8]) -> Result<PathBuf, NameError> {
    if raw.contains(&0) {
        return Err(NameError::Nul);
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                if parts.pop().is_none() {
                    return Err(NameError::Escape);
                }
            }
            _ => parts.push(part),
        }
    }
    Ok(parts.iter().map(|p| OsStr::from_bytes(p)).collect())
}

/// Applies entries to the layer root, remembering directory times for the end.
struct Applier<'a> {
    root: &'a Path,
    blob: &'a Path,
    dir_times: BTreeMap<PathBuf, Times>,
    buf: Vec<u8>,
    limits: Limits,
    /// The budget this layer's image shares with its other layers.
    image: &'a ImageBudget,
    /// File content unpacked so far.
    bytes: u64,
    /// Entries unpacked so far.
    inodes: u64,
}

impl Applier<'_> {
    fn apply<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        self.inodes += 1;
        if self.limits.inodes > 0 && self.inodes > self.limits.inodes {
            return Err(UnpackError::OverLimit {
                scope: "layer",
                what: "inodes",
                limit: self.limits.inodes,
            });
        }
        self.image.charge(0, 1)?;
        let raw = entry.path_bytes().into_owned();
        let name = shown_name(&raw);
        let mut kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            // Archive-wide defaults; containerd ignores them too.
            return Ok(());
        }
        // Pre-POSIX archives mark directories by a trailing slash on an
        // old-style ('\0') regular entry.
        if entry.header().as_old().linkflag[0] == 0 && raw.ends_with(b"/") {
            kind = EntryType::Directory;
        }
        let rel = clean_name(&raw).map_err(|e| match e {
            NameError::Escape => UnpackError::Escape {
                entry: name.clone(),
                what: "path".to_owned(),
            },
            NameError::Nul => UnpackError::invalid(&name, "name contains a NUL byte"),
        })?;

        if let Some(parent) = rel.parent() {
            if parent
                .iter()
                .any(|c| c.as_bytes().starts_with(WHITEOUT_META_PREFIX))
            {
                tracing::debug!(entry = name, "skipping entry inside AUFS metadata dir");
                return Ok(());
            }
        }
        if let Some(base) = rel.file_name() {
            if let Some(whited) = base.as_bytes().strip_prefix(WHITEOUT_PREFIX) {
                let parent = rel.parent().unwrap_or(Path::new(""));
                return self.whiteout(&name, parent, base.as_bytes(), whited);
            }
        }

        let meta = Meta::read(entry, &name)?;
        if rel.as_os_str().is_empty() {
            if !kind.is_dir() {
                return Err(UnpackError::invalid(
                    &name,
                    "the layer root can only be a directory",
                ));
            }
            return self.directory(&rel, &meta);
        }

        let parent = rel.parent().unwrap_or(Path::new(""));
        self.walk_dirs(&name, parent, true)?;
        let path = self.root.join(&rel);
        match kind {
            EntryType::Directory => {
                match lstat(&path)? {
                    Some(existing) if existing.is_dir() => {}
                    existing => {
                        if let Some(existing) = existing {
                            remove(&path, &existing)?;
                        }
                        fs::DirBuilder::new()
                            .mode(0o700)
                            .create(&path)
                            .map_err(UnpackError::io("mkdir", &path))?;
                    }
                }
                self.directory(&rel, &meta)
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.replace(&path)?;
                self.regular(entry, &path, &meta)
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| UnpackError::invalid(&name, "symlink without a target"))?
                    .into_owned();
                self.replace(&path)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path)
                    .map_err(UnpackError::io("symlink", &path))?;
                std::os::unix::fs::lchown(&path, Some(meta.uid), Some(meta.gid))
                    .map_err(UnpackError::io("lchown", &path))?;
                set_xattrs(&path, &meta.xattrs, false, |n, v| xattr::set(&path, n, v))?;
                set_times(&path, meta.times)
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| UnpackError::invalid(&name, "hard link without a target"))?
                    .into_owned();
                self.hard_link(&name, &rel, &target)
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let (sflag, dev) = match kind {
                    EntryType::Char => (SFlag::S_IFCHR, device_number(entry.header(), &name)?),
                    EntryType::Block => (SFlag::S_IFBLK, device_number(entry.header(), &name)?),
                    // A FIFO's device fields are often left blank.
                    _ => (SFlag::S_IFIFO, 0),
                };
                self.replace(&path)?;
                mknod(&path, sflag, Mode::empty(), dev)
                    .map_err(UnpackError::errno("mknod", &path))?;
                std::os::unix::fs::lchown(&path, Some(meta.uid), Some(meta.gid))
                    .map_err(UnpackError::io("lchown", &path))?;
                // The node was just created by us, so chmod's following of a
                // final symlink cannot happen.
                fs::set_permissions(&path, Permissions::from_mode(meta.mode))
                    .map_err(UnpackError::io("chmod", &path))?;
                set_xattrs(&path, &meta.xattrs, false, |n, v| xattr::set(&path, n, v))?;
                set_times(&path, meta.times)
            }
            other => Err(UnpackError::UnsupportedType {
                entry: name,
                kind: other,
            }),
        }
    }

    /// Turns an AUFS whiteout entry into its overlayfs form.
    fn whiteout(
        &mut self,
        name: &str,
        parent: &Path,
        base: &[u8],
        whited: &[u8],
    ) -> Result<(), UnpackError> {
        if base == WHITEOUT_OPAQUE {
            self.walk_dirs(name, parent, true)?;
            let dir = self.root.join(parent);
            return xattr::set(&dir, OVERLAY_OPAQUE_XATTR, b"y").map_err(UnpackError::io(
                format!("setxattr {OVERLAY_OPAQUE_XATTR} on"),
                &dir,
            ));
        }
        if base.starts_with(WHITEOUT_META_PREFIX) {
            tracing::debug!(entry = name, "skipping AUFS metadata entry");
            return Ok(());
        }
        if whited.is_empty() || whited == b"." || whited == b".." {
            return Err(UnpackError::BadWhiteout {
                entry: name.to_owned(),
                reason: "it names no file",
            });
        }
        self.walk_dirs(name, parent, true)?;
        let path = self.root.join(parent).join(OsStr::from_bytes(whited));
        self.replace(&path)?;
        mknod(&path, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
            .map_err(UnpackError::errno("mknod whiteout", &path))?;
        std::os::unix::fs::lchown(&path, Some(0), Some(0)).map_err(UnpackError::io("lchown", &path))
    }

    /// Sets a directory's ownership, mode and xattrs; its times wait for the
    /// end so later children don't bump them.
    fn directory(&mut self, rel: &Path, meta: &Meta) -> Result<(), UnpackError> {
        let path = self.root.join(rel);
        let dir = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(UnpackError::io("open dir", &path))?;
        std::os::unix::fs::fchown(&dir, Some(meta.uid), Some(meta.gid))
            .map_err(UnpackError::io("chown", &path))?;
        dir.set_permissions(Permissions::from_mode(meta.mode))
            .map_err(UnpackError::io("chmod", &path))?;
        set_xattrs(&path, &meta.xattrs, true, |n, v| dir.set_xattr(n, v))?;
        self.dir_times.insert(rel.to_path_buf(), meta.times);
        Ok(())
    }

    /// Writes a regular file; ownership before mode, since chown clears
    /// setuid/setgid, and xattrs after chown, since it clears
    /// `security.capability`.
    fn regular<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: &Path,
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(UnpackError::io("create file", path))?;
        let mut written = 0u64;
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(UnpackError::Stream {
                        blob: self.blob.to_path_buf(),
                        source,
                    })
                }
            };
            written += n as u64;
            self.bytes += n as u64;
            if self.limits.bytes > 0 && self.bytes > self.limits.bytes {
                return Err(UnpackError::OverLimit {
                    scope: "layer",
                    what: "bytes",
                    limit: self.limits.bytes,
                });
            }
            self.image.charge(n as u64, 0)?;
            // Zeros become a hole: a sparse file (or any run of zeros, a
            // gzip bomb's favourite) takes no space on the image store.
            if self.buf[..n].iter().all(|b| *b == 0) {
                file.seek(io::SeekFrom::Current(n as i64))
                    .map_err(UnpackError::io("seek", path))?;
                continue;
            }
            file.write_all(&self.buf[..n])
                .map_err(UnpackError::io("write", path))?;
        }
        // A file that ends in a hole gets its length.
        file.set_len(written)
            .map_err(UnpackError::io("truncate", path))?;
        std::os::unix::fs::fchown(&file, Some(meta.uid), Some(meta.gid))
            .map_err(UnpackError::io("chown", path))?;
        file.set_permissions(Permissions::from_mode(meta.mode))
            .map_err(UnpackError::io("chmod", path))?;
        set_xattrs(path, &meta.xattrs, true, |n, v| file.set_xattr(n, v))?;
        drop(file);
        set_times(path, meta.times)
    }

    /// Links `rel` to another path of this layer, resolved with the same
    /// rules as entry names and never through a symlink.
    fn hard_link(&mut self, name: &str, rel: &Path, raw_target: &[u8]) -> Result<(), UnpackError> {
        let target = clean_name(raw_target).map_err(|e| match e {
            NameError::Escape => UnpackError::Escape {
                entry: name.to_owned(),
                what: format!("hard link target {:?}", shown_name(raw_target)),
            },
            NameError::Nul => UnpackError::invalid(name, "hard link target contains a NUL byte"),
        })?;
        if target.as_os_str().is_empty() {
            return Err(UnpackError::invalid(name, "hard link to the layer root"));
        }
        if target == rel {
            return Err(UnpackError::invalid(name, "hard link to itself"));
        }
        let target_parent = target.parent().unwrap_or(Path::new(""));
        match self.walk_dirs(name, target_parent, false) {
            Err(UnpackError::LinkTargetMissing { .. }) => {
                return Err(UnpackError::LinkTargetMissing {
                    entry: name.to_owned(),
                    target,
                })
            }
            other => other?,
        }
        let target_path = self.root.join(&target);
        match lstat(&target_path)? {
            None => {
                return Err(UnpackError::LinkTargetMissing {
                    entry: name.to_owned(),
                    target,
                })
            }
            Some(m) if m.is_dir() => {
                return Err(UnpackError::invalid(name, "hard link to a directory"))
            }
            Some(_) => {}
        }
        let path = self.root.join(rel);
        self.replace(&path)?;
        // link(2) never follows a symlink target: a link to a symlink links
        // the symlink itself.
        fs::hard_link(&target_path, &path).map_err(UnpackError::io(
            format!("link {} to", target_path.display()),
            &path,
        ))
    }

    /// Checks that every component of `rel_dir` is a real directory (not a
    /// symlink), creating missing ones as root-owned 0755 dirs when `create`.
    fn walk_dirs(&self, name: &str, rel_dir: &Path, create: bool) -> Result<(), UnpackError> {
        let mut rel = PathBuf::new();
        for component in rel_dir.components() {
            rel.push(component);
            let path = self.root.join(&rel);
            match lstat(&path)? {
                Some(m) if m.is_dir() => {}
                Some(m) if m.file_type().is_symlink() => {
                    return Err(UnpackError::PathThroughSymlink {
                        entry: name.to_owned(),
                        component: rel,
                    })
                }
                Some(_) => {
                    return Err(UnpackError::NotADirectory {
                        entry: name.to_owned(),
                        component: rel,
                    })
                }
                None if !create => {
                    return Err(UnpackError::LinkTargetMissing {
                        entry: name.to_owned(),
                        target: rel,
                    })
                }
                None => {
                    fs::DirBuilder::new()
                        .mode(0o755)
                        .create(&path)
                        .map_err(UnpackError::io("mkdir", &path))?;
                    fs::set_permissions(&path, Permissions::from_mode(0o755))
                        .map_err(UnpackError::io("chmod", &path))?;
                }
            }
        }
        Ok(())
    }

    /// Removes whatever an earlier entry put at `path`.
    fn replace(&self, path: &Path) -> Result<(), UnpackError> {
        match lstat(path)? {
            Some(existing) => remove(path, &existing),
            None => Ok(()),
        }
    }

    /// Applies the directory times collected during the walk. A directory
    /// replaced or moved under a symlink since is skipped; failures only
    /// cost a timestamp, so they are logged.
    fn finish(&self) {
        for (rel, times) in &self.dir_times {
            let parent = rel.parent().unwrap_or(Path::new(""));
            if self.walk_dirs("", parent, false).is_err() {
                continue;
            }
            let path = self.root.join(rel);
            match lstat(&path) {
                Ok(Some(m)) if m.is_dir() => {}
                _ => continue,
            }
            if let Err(e) = set_times(&path, *times) {
                tracing::warn!(error = %e, "setting directory times");
            }
        }
    }
}

/// The device number of a char or block device entry.
fn device_number(header: &tar::Header, name: &str) -> Result<libc::dev_t, UnpackError> {
    let field = |what: &str, n: io::Result<Option<u32>>| {
        n.map(Option::unwrap_or_default)
            .map_err(|e| UnpackError::invalid(name, format!("{what}: {e}")))
    };
    let major = field("device major", header.device_major())?;
    let minor = field("device minor", header.device_minor())?;
    Ok(makedev(major.into(), minor.into()))
}

fn lstat(path: &Path) -> Result<Option<fs::Metadata>, UnpackError> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(UnpackError::io("lstat", path)(e)),
    }
}

/// Removes a path without following symlinks (std's `remove_dir_all` does
/// not follow them either).
fn remove(path: &Path, existing: &fs::Metadata) -> Result<(), UnpackError> {
    if existing.is_dir() {
        fs::remove_dir_all(path).map_err(UnpackError::io("remove dir", path))
    } else {
        fs::remove_file(path).map_err(UnpackError::io("remove", path))
    }
}

/// Sets an entry's mtime (and atime to the same) without following a final
/// symlink.
fn set_times(path: &Path, times: Times) -> Result<(), UnpackError> {
    utimensat(
        AT_FDCWD,
        path,
        &times.mtime,
        &times.mtime,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(UnpackError::errno("set times on", path))
}

/// Sets the entry's xattrs. A filesystem without xattr support only loses
/// them (logged); `user.*` xattrs, which the kernel refuses on symlinks and
/// device nodes (so no real file there could have had them), are skipped.
fn set_xattrs(
    path: &Path,
    xattrs: &[(OsString, Vec<u8>)],
    user_allowed: bool,
    mut set: impl FnMut(&OsStr, &[u8]) -> io::Result<()>,
) -> Result<(), UnpackError> {
    for (name, value) in xattrs {
        match set(name, value) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                tracing::warn!(path = %path.display(), xattr = ?name, "xattrs not supported; dropped");
            }
            Err(e)
                if e.raw_os_error() == Some(libc::EPERM)
                    && !user_allowed
                    && name.as_bytes().starts_with(b"user.") =>
            {
                tracing::debug!(path = %path.display(), xattr = ?name, "user xattr on a special file; dropped");
            }
            Err(e) => {
                return Err(UnpackError::io(
                    format!("setxattr {} on", name.to_string_lossy()),
                    path,
                )(e))
            }
        }
    }
    Ok(())
}

/// Regular-file bytes and inodes in a layer dir, hard links counted once.
fn usage(root: &Path) -> Result<(u64, u64), UnpackError> {
    let mut size = 0u64;
    let mut inodes = 1u64;
    let mut seen = HashSet::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = fs::read_dir(&dir).map_err(UnpackError::io("read dir", &dir))?;
        for entry in entries {
            let entry = entry.map_err(UnpackError::io("read dir", &dir))?;
            // DirEntry::metadata does not follow symlinks.
            let meta = entry
                .metadata()
                .map_err(UnpackError::io("lstat", &entry.path()))?;
            if meta.is_dir() {
                dirs.push(entry.path());
            } else if meta.nlink() > 1 && !seen.insert(meta.ino()) {
                continue;
            }
            inodes += 1;
            if meta.is_file() {
                size += meta.len();
            }
        }
    }
    Ok((size, inodes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;
    use tar::{Builder, Header};

    fn require_root() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "unpack tests need root (chown, mknod, trusted.* xattrs); run them as root"
        );
    }

    fn header(kind: EntryType, mode: u32) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_000_000);
        h.set_size(0);
        h
    }

    /// Builds a layer tar in memory.
    struct Layer {
        builder: Builder<Vec<u8>>,
    }

    impl Layer {
        fn new() -> Layer {
            Layer {
                builder: Builder::new(Vec::new()),
            }
        }

        fn entry(mut self, path: &str, mut h: Header, data: &[u8]) -> Layer {
            h.set_size(data.len() as u64);
            self.builder.append_data(&mut h, path, data).unwrap();
            self
        }

        fn dir(self, path: &str) -> Layer {
            self.entry(path, header(EntryType::Directory, 0o755), b"")
        }

        fn file(self, path: &str, content: &[u8]) -> Layer {
            self.entry(path, header(EntryType::Regular, 0o644), content)
        }

        fn link(mut self, kind: EntryType, path: &str, target: &str) -> Layer {
            let mut h = header(kind, 0o777);
            self.builder.append_link(&mut h, path, target).unwrap();
            self
        }

        fn symlink(self, path: &str, target: &str) -> Layer {
            self.link(EntryType::Symlink, path, target)
        }

        fn hardlink(self, path: &str, target: &str) -> Layer {
            self.link(EntryType::Link, path, target)
        }

        /// An entry with verbatim name and link name bytes, which
        /// `Header::set_path` would refuse (`..`, absolute paths).
        fn raw(mut self, kind: EntryType, name: &[u8], link: &[u8], data: &[u8]) -> Layer {
            let mut h = header(kind, 0o644);
            h.set_size(data.len() as u64);
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name);
            old.linkname[..link.len()].copy_from_slice(link);
            h.set_cksum();
            self.builder.append(&h, data).unwrap();
            self
        }

        fn pax(mut self, records: &[(&str, &[u8])]) -> Layer {
            self.builder
                .append_pax_extensions(records.iter().map(|(k, v)| (*k, *v)))
                .unwrap();
            self
        }

        /// A GNU long name ('L') entry naming the next entry.
        fn gnu_long_name(mut self, name: &[u8]) -> Layer {
            let mut h = header(EntryType::GNULongName, 0o644);
            h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
            h.set_size(name.len() as u64);
            h.set_cksum();
            self.builder.append(&h, name).unwrap();
            self
        }

        fn finish(self) -> Vec<u8> {
            self.builder.into_inner().unwrap()
        }
    }

    /// A temp dir holding the blob, the layer dest and a canary dir beside
    /// it that no layer may touch.
    struct Fixture {
        dir: tempfile::TempDir,
        limits: Limits,
    }

    impl Fixture {
        fn new() -> Fixture {
            require_root();
            let dir = tempfile::tempdir().unwrap();
            fs::create_dir(dir.path().join("canary")).unwrap();
            Fixture {
                dir,
                limits: Limits::NONE,
            }
        }

        fn dest(&self) -> PathBuf {
            self.dir.path().join("layer")
        }

        fn path(&self, rel: &str) -> PathBuf {
            self.dest().join(rel)
        }

        fn unpack_as(
            &self,
            blob: &[u8],
            compression: Compression,
        ) -> Result<Unpacked, UnpackError> {
            let path = self.dir.path().join("blob");
            fs::write(&path, blob).unwrap();
            let image = ImageBudget::new(Limits::NONE);
            let result = unpack_layer(&path, compression, &self.dest(), self.limits, &image);
            fs::remove_file(&path).unwrap();
            result
        }

        fn unpack(&self, tar: &[u8]) -> Result<Unpacked, UnpackError> {
            self.unpack_as(tar, Compression::None)
        }

        /// Asserts the failed unpack left nothing behind: no dest, no
        /// staging dir, an untouched canary.
        fn assert_nothing_written(&self) {
            let names: Vec<_> = fs::read_dir(self.dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, vec![OsString::from("canary")]);
            assert_eq!(
                fs::read_dir(self.dir.path().join("canary"))
                    .unwrap()
                    .count(),
                0
            );
        }
    }

    fn sha256_hex(data: &[u8]) -> String {
        let digest = Sha256::digest(data);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }

    fn lmeta(path: &Path) -> fs::Metadata {
        fs::symlink_metadata(path).unwrap()
    }

    #[test]
    fn media_types_map_to_compression() {
        let table = [
            ("application/vnd.oci.image.layer.v1.tar", Compression::None),
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+zstd",
                Compression::Zstd,
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar",
                Compression::None,
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
                Compression::Zstd,
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar",
                Compression::None,
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.zstd",
                Compression::Zstd,
            ),
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar",
                Compression::None,
            ),
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                Compression::Gzip,
            ),
        ];
        for (mt, want) in table {
            assert_eq!(Compression::from_media_type(mt).unwrap(), want, "{mt}");
        }
    }

    #[test]
    fn unknown_media_types_are_rejected() {
        for mt in [
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+bzip2",
            "application/vnd.oci.image.layer.v1.tar+encrypted",
            "",
        ] {
            assert!(
                matches!(Compression::from_media_type(mt), Err(UnpackError::MediaType(m)) if m == mt),
                "{mt}"
            );
        }
    }

    #[test]
    fn names_are_cleaned_lexically() {
        let ok = |raw: &str| match clean_name(raw.as_bytes()) {
            Ok(p) => p,
            Err(_) => panic!("{raw} rejected"),
        };
        assert_eq!(ok("./a/b"), PathBuf::from("a/b"));
        assert_eq!(ok("/etc/x"), PathBuf::from("etc/x"));
        assert_eq!(ok("a//./b/"), PathBuf::from("a/b"));
        assert_eq!(ok("a/../b"), PathBuf::from("b"));
        assert_eq!(ok("./"), PathBuf::new());
        assert_eq!(ok("/"), PathBuf::new());
        for raw in ["..", "../x", "a/../../x", "/../x", "./a/../../x"] {
            assert!(
                matches!(clean_name(raw.as_bytes()), Err(NameError::Escape)),
                "{raw}"
            );
        }
        assert!(matches!(clean_name(b"a\0b"), Err(NameError::Nul)));
    }

    #[test]
    fn whiteout_becomes_char_device_0_0() {
        let fx = Fixture::new();
        let tar = Layer::new()
            .dir("data/")
            .file("data/.wh.gone", b"")
            .finish();
        fx.unpack(&tar).unwrap();
        let m = lmeta(&fx.path("data/gone"));
        assert!(m.file_type().is_char_device());
        assert_eq!(m.rdev(), 0);
        assert_eq!((m.uid(), m.gid()), (0, 0));
        assert!(!fx.path("data/.wh.gone").exists());
    }

    #[test]
    fn whiteout_replaces_entry_from_same_layer() {
        let fx = Fixture::new();
        let tar = Layer::new()
            .file("f", b"x")
            .dir("d/")
            .file("d/child", b"y")
            .file(".wh.f", b"")
            .file(".wh.d", b"")
            .finish();
        fx.unpack(&tar).unwrap();
        for name in ["f", "d"] {
            let m = lmeta(&fx.path(name));
            assert!(m.file_type().is_char_device(), "{name}");
            assert_eq!(m.rdev(), 0);
        }
    }

    #[test]
    fn whiteout_in_missing_dir_creates_the_dir() {
        let fx = Fixture::new();
        let tar = Layer::new().file("a/b/.wh.c", b"").finish();
        fx.unpack(&tar).unwrap();
        assert!(lmeta(&fx.path("a/b")).is_dir());
        assert!(lmeta(&fx.path("a/b/c")).file_type().is_char_device());
    }

    #[test]
    fn opaque_marker_sets_overlay_opaque_xattr() {
        let fx = Fixture::new();
        let tar = Layer::new()
            .dir("opq/")
            .file("opq/.wh..wh..opq", b"")
            .file("opq/c", b"c")
            .file("new/.wh..wh..opq", b"")
            .finish();
        fx.unpack(&tar).unwrap();
        for dir in ["opq", "new"] {
            let value = xattr::get(fx.path(dir), OVERLAY_OPAQUE_XATTR).unwrap();
            assert_eq!(value.as_deref(), Some(&b"y"[..]), "{dir}");
            assert!(!fx.path(dir).join(".wh..wh..opq").exists());
        }
        let names: Vec<_> = fs::read_dir(fx.path("opq"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsString::from("c")]);
    }

    #[test]
    fn aufs_metadata_entries_are_skipped() {
        let fx = Fixture::new();
        let tar = Layer::new()
            .dir(".wh..wh.plnk/")
            .file(".wh..wh.plnk/123.456", b"x")
            .file(".wh..wh.aufs", b"")
            .finish();
        fx.unpack(&tar).unwrap();
        assert_eq!(fs::read_dir(fx.dest()).unwrap().count(), 0);
    }

    #[test]
    fn whiteout_naming_nothing_is_rejected() {
        let fx = Fixture::new();
        let tar = Layer::new().file("d/.wh.", b"").finish();
        assert!(matches!(
            fx.unpack(&tar),
            Err(UnpackError::BadWhiteout { .. })
        ));
        fx.assert_nothing_written();
    }

    #[test]
    fn parent_escape_is_rejected_and_nothing_written_outside() {
        for name in [
            &b"../canary/escape"[..],
            b"a/../../canary/escape",
            b"./../escape",
        ] {
            let fx = Fixture::new();
            let tar = Layer::new()
                .file("ok", b"fine")
                .raw(EntryType::Regular, name, b"", b"evil")
                .finish();
            let err = fx.unpack(&tar).unwrap_err();
            assert!(matches!(err, UnpackError::Escape { .. }), "{err}");
            fx.assert_nothing_written();
        }
    }

    #[test]
    fn dotdot_inside_the_layer_is_allowed() {
        let fx = Fixture::new();
        let tar = Layer::new()
            .dir("a/")
            .raw(EntryType::Regular, b"a/../b", b"", b"b")
            .finish();
        fx.unpack(&tar).unwrap();
        assert_eq!(fs::read(fx.path("b")).unwrap(), b"b");
    }

    #[test]
    fn absolute_path_lands_under_dest() {
        let fx = Fixture::new();
        let tar = Layer::new()
            .raw(EntryType::Regular, b"/etc/x", b"", b"inside")
            .finish();
        fx.unpack(&tar).unwrap();
        assert_eq!(fs::read(fx.path("etc/x")).unwrap(), b"inside");
    }

    #[test]
    fn write_through_symlink_to_root_is_rejected() {
        let fx = Fixture::new();
        let tar = Layer::new()
            .symlink("a", "/")
            .file("a/evil", b"evil")
            .finish();
        let err = fx.unpack(&tar).unwrap_err();
        assert!(
            matches!(&err, UnpackError::PathThroughSymlink { component, .. } if component == Path::new("a")),
            "{err}"
        );
        assert!(!Path::new("/evil").exists());
        fx.assert_nothing_written();
    }

    #[test]
    fn write_through_escaping_relative_symlink_is_rejected() {
        let fx = Fixture::new();
        let tar = Layer::new()
            .symlink("b", "../../")
            .file("b/evil", b"evil")
            .dir("c/")
            .symlink("c/up", "../../canary")
            .file("c/up/evil", b"evil")
            .finish();
        let err = fx.unpack(&tar).unwrap_err();
        assert!(
            matches!(err, UnpackError::PathThroughSymlink { .. }),
            "{err}"
        );
        fx.assert_nothing_written();
    }

    #[test]
    fn directory_entry_replaces_symlink_instead_of_following_it() {
        let fx = Fixture::new();
        let tar = Layer::new()
            .symlink("d", "../canary")
            .dir("d/")
            .file("d/f", b"inside")
            .symlink("s", "../canary/s")
            .file("s", b"regular")
            .finish();
        fx.unpack(&tar).unwrap();
        assert!(lmeta(&fx.path("d")).is_dir());
        assert_eq!(fs::read(fx.path("d/f")).unwrap(), b"inside");
        assert!(lmeta(&fx.path("s")).is_file());
        assert_eq!(
            fs::read_dir(fx.dir.path().join("canary")).unwrap().count(),
            0
        );
    }

    #[test]
    fn hard_link_escaping_root_is_rejected() {
        let fx = Fixture::new();
        let tar = Layer::new().hardlink("passwd", "../../etc/passwd").finish();
        let err = fx.unpack(&tar).unwrap_err();
        assert!(matches!(err, UnpackError::Escape { .. }), "{err}");
        fx.assert_nothing_written();
    }

    #[test]
    fn hard_link_through_symlink_is_rejected() {
        let fx = Fixture::new();
        let tar = Layer::new()
            .symlink("etc", "/etc")
            .hardlink("passwd", "etc/passwd")
            .finish();
        let err = fx.unpack(&tar).unwrap_err();
        assert!(
            matches!(err, UnpackError::PathThroughSymlink { .. }),
            "{err}"
        );
        fx.assert_nothing_written();
    }

    #[test]
    fn hard_link_to_missing_target_is_rejected() {
        let fx = Fixture::new();
        let tar = Layer::new().hardlink("h", "nope/f").finish();
        let err = fx.unpack(&tar).unwrap_err();
        assert!(
            matches!(&err, UnpackError::LinkTargetMissing { target, .. } if target == Path::new("nope/f")),
            "{err}"
        );
        fx.assert_nothing_written();
    }

    #[test]
    fn hard_link_within_layer_shares_the_inode() {
        let fx = Fixture::new();
        let tar = Layer::new()
            .file("bin/f", b"content")
            .hardlink("bin/h", "./bin/f")
            .symlink("s", "bin/f")
            .hardlink("hs", "/s")
            .finish();
        fx.unpack(&tar).unwrap();
        let f = lmeta(&fx.path("bin/f"));
        let h = lmeta(&fx.path("bin/h"));
        assert_eq!(f.ino(), h.ino());
        assert_eq!(f.nlink(), 2);
        // A hard link to a symlink links the symlink itself.
        let hs = lmeta(&fx.path("hs"));
        assert!(hs.file_type().is_symlink());
        assert_eq!(hs.ino(), lmeta(&fx.path("s")).ino());
    }

    #[test]
    fn device_nodes_and_fifos_are_created() {
        let fx = Fixture::new();
        let mut chr = header(EntryType::Char, 0o666);
        chr.set_device_major(1).unwrap();
        chr.set_device_minor(3).unwrap();
        let mut blk = header(EntryType::Block, 0o660);
        blk.set_device_major(7).unwrap();
        blk.set_device_minor(0).unwrap();
        blk.set_gid(6);
        let tar = Layer::new()
            .entry("dev/null", chr, b"")
            .entry("dev/loop0", blk, b"")
            .entry("run/fifo", header(EntryType::Fifo, 0o600), b"")
            .finish();
        fx.unpack(&tar).unwrap();
        let null = lmeta(&fx.path("dev/null"));
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), makedev(1, 3));
        assert_eq!(null.mode() & 0o7777, 0o666);
        let lp = lmeta(&fx.path("dev/loop0"));
        assert!(lp.file_type().is_block_device());
        assert_eq!(lp.rdev(), makedev(7, 0));
        assert_eq!((lp.mode() & 0o7777, lp.gid()), (0o660, 6));
        let fifo = lmeta(&fx.path("run/fifo"));
        assert!(fifo.file_type().is_fifo());
        assert_eq!(fifo.mode() & 0o7777, 0o600);
    }

    #[test]
    fn pax_xattrs_are_applied_and_overlay_xattrs_dropped() {
        let fx = Fixture::new();
        let tar = Layer::new()
            .pax(&[
                ("SCHILY.xattr.user.x", b"dir-value"),
                ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
            ])
            .dir("d/")
            .pax(&[
                ("SCHILY.xattr.user.x", b"file-value"),
                ("SCHILY.xattr.trusted.overlay.redirect", b"/elsewhere"),
            ])
            .file("d/f", b"f")
            .finish();
        fx.unpack(&tar).unwrap();
        assert_eq!(
            xattr::get(fx.path("d"), "user.x").unwrap().as_deref(),
            Some(&b"dir-value"[..])
        );
        assert_eq!(
            xattr::get(fx.path("d/f"), "user.x").unwrap().as_deref(),
            Some(&b"file-value"[..])
        );
        assert_eq!(
            xattr::get(fx.path("d"), OVERLAY_OPAQUE_XATTR).unwrap(),
            None
        );
        assert_eq!(
            xattr::get(fx.path("d/f"), "trusted.overlay.redirect").unwrap(),
            None
        );
    }

    #[test]
    fn setuid_file_keeps_setuid_and_capabilities_with_non_root_owner() {
        let fx = Fixture::new();
        // vfs_cap_data revision 2, effective, permitted = CAP_NET_BIND_SERVICE.
        let cap: &[u8] = &[1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let mut h = header(EntryType::Regular, 0o6755);
        h.set_uid(1000);
        h.set_gid(1001);
        let tar = Layer::new()
            .pax(&[("SCHILY.xattr.security.capability", cap)])
            .entry("bin/suid", h, b"#!/bin/true\n")
            .finish();
        fx.unpack(&tar).unwrap();
        let m = lmeta(&fx.path("bin/suid"));
        assert_eq!(m.mode() & 0o7777, 0o6755);
        assert_eq!((m.uid(), m.gid()), (1000, 1001));
        assert_eq!(
            xattr::get(fx.path("bin/suid"), "security.capability")
                .unwrap()
                .as_deref(),
            Some(cap)
        );
    }

    #[test]
    fn ownership_modes_and_times_are_applied() {
        let fx = Fixture::new();
        let mut root = header(EntryType::Directory, 0o750);
        root.set_uid(5);
        root.set_mtime(111);
        let mut dir = header(EntryType::Directory, 0o1777);
        dir.set_uid(7);
        dir.set_gid(8);
        dir.set_mtime(222);
        let mut file = header(EntryType::Regular, 0o640);
        file.set_uid(9);
        file.set_mtime(333);
        let mut link = header(EntryType::Symlink, 0o777);
        link.set_uid(10);
        link.set_gid(11);
        link.set_mtime(444);
        let mut tar = Layer::new()
            .entry("./", root, b"")
            .entry("tmp/", dir, b"")
            .entry("tmp/f", file, b"data")
            .pax(&[("mtime", b"555.25")])
            .dir("precise/");
        tar.builder.append_link(&mut link, "tmp/l", "f").unwrap();
        fx.unpack(&tar.finish()).unwrap();

        let r = lmeta(&fx.dest());
        assert_eq!((r.mode() & 0o7777, r.uid(), r.mtime()), (0o750, 5, 111));
        let d = lmeta(&fx.path("tmp"));
        // Later children (f, l) must not have bumped the directory's mtime.
        assert_eq!(
            (d.mode() & 0o7777, d.uid(), d.gid(), d.mtime()),
            (0o1777, 7, 8, 222)
        );
        let f = lmeta(&fx.path("tmp/f"));
        assert_eq!((f.mode() & 0o7777, f.uid(), f.mtime()), (0o640, 9, 333));
        let l = lmeta(&fx.path("tmp/l"));
        assert_eq!(fs::read_link(fx.path("tmp/l")).unwrap(), PathBuf::from("f"));
        assert_eq!((l.uid(), l.gid(), l.mtime()), (10, 11, 444));
        let p = lmeta(&fx.path("precise"));
        assert_eq!((p.mtime(), p.mtime_nsec()), (555, 250_000_000));
    }

    #[test]
    fn later_entries_replace_earlier_ones() {
        let fx = Fixture::new();
        let tar = Layer::new()
            .file("x", b"file")
            .dir("x/")
            .file("x/y", b"y")
            .dir("d/")
            .file("d/inner", b"inner")
            .file("d", b"now a file")
            .file("same", b"old")
            .file("same", b"new")
            .finish();
        fx.unpack(&tar).unwrap();
        assert!(lmeta(&fx.path("x")).is_dir());
        assert_eq!(fs::read(fx.path("x/y")).unwrap(), b"y");
        assert_eq!(fs::read(fx.path("d")).unwrap(), b"now a file");
        assert_eq!(fs::read(fx.path("same")).unwrap(), b"new");
    }

    #[test]
    fn entry_under_a_regular_file_is_rejected() {
        let fx = Fixture::new();
        let tar = Layer::new().file("f", b"").file("f/g", b"").finish();
        assert!(matches!(
            fx.unpack(&tar),
            Err(UnpackError::NotADirectory { .. })
        ));
        fx.assert_nothing_written();
    }

    #[test]
    fn diff_id_is_sha256_of_uncompressed_tar_including_trailing_bytes() {
        let fx = Fixture::new();
        let mut tar = Layer::new().file("f", b"content").finish();
        // Record padding and junk after the end-of-archive marker.
        tar.extend_from_slice(&[0; 2048]);
        tar.extend_from_slice(b"trailing bytes");
        let unpacked = fx.unpack(&tar).unwrap();
        assert_eq!(unpacked.diff_id, sha256_hex(&tar));
    }

    #[test]
    fn gzip_zstd_and_plain_blobs_unpack_alike() {
        let tar = Layer::new()
            .dir("d/")
            .file("d/f", b"same everywhere")
            .finish();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&tar[..], 3).unwrap();
        for (blob, compression) in [
            (tar.clone(), Compression::None),
            (gz, Compression::Gzip),
            (zst, Compression::Zstd),
        ] {
            let fx = Fixture::new();
            let unpacked = fx.unpack_as(&blob, compression).unwrap();
            assert_eq!(unpacked.diff_id, sha256_hex(&tar), "{compression:?}");
            assert_eq!(fs::read(fx.path("d/f")).unwrap(), b"same everywhere");
        }
    }

    #[test]
    fn multi_member_gzip_is_read_to_the_end() {
        let tar = Layer::new().file("a", b"a").file("b", b"b").finish();
        let (first, second) = tar.split_at(512 + 512);
        let mut blob = Vec::new();
        for part in [first, second] {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(part).unwrap();
            blob.extend(gz.finish().unwrap());
        }
        let fx = Fixture::new();
        let unpacked = fx.unpack_as(&blob, Compression::Gzip).unwrap();
        assert_eq!(unpacked.diff_id, sha256_hex(&tar));
        assert_eq!(fs::read(fx.path("b")).unwrap(), b"b");
    }

    #[test]
    fn corrupt_blob_fails_and_leaves_no_dest() {
        let tar = Layer::new()
            .file("a", &[7; 100_000])
            .file("b", b"b")
            .finish();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let fx = Fixture::new();
        let err = fx
            .unpack_as(&gz[..gz.len() / 2], Compression::Gzip)
            .unwrap_err();
        assert!(matches!(err, UnpackError::Stream { .. }), "{err}");
        fx.assert_nothing_written();
        let err = fx.unpack_as(&tar, Compression::Zstd).unwrap_err();
        assert!(matches!(err, UnpackError::Stream { .. }), "{err}");
        fx.assert_nothing_written();
    }

    #[test]
    fn existing_dest_is_refused_and_left_alone() {
        let fx = Fixture::new();
        fs::create_dir(fx.dest()).unwrap();
        fs::write(fx.path("keep"), b"keep").unwrap();
        let tar = Layer::new().file("f", b"f").finish();
        assert!(matches!(fx.unpack(&tar), Err(UnpackError::DestExists(_))));
        assert_eq!(fs::read(fx.path("keep")).unwrap(), b"keep");
        assert!(!fx.path("f").exists());
    }

    #[test]
    fn usage_counts_file_bytes_and_inodes_once_per_inode() {
        let fx = Fixture::new();
        let tar = Layer::new()
            .file("a", &[1; 10])
            .hardlink("b", "a")
            .dir("d/")
            .file("d/c", &[2; 5])
            .symlink("s", "a")
            .file("gone", &[3; 100])
            .file(".wh.gone", b"")
            .finish();
        let unpacked = fx.unpack(&tar).unwrap();
        assert_eq!(unpacked.size, 15);
        // root, a (= b), d, d/c, s, the whiteout node.
        assert_eq!(unpacked.inodes, 6);
    }

    /// The long-name bomb of issue 22: a GNU long name of 8 MiB used to be
    /// read whole (and copied again) before any check; now the reader
    /// refuses after 1 MiB, and the error neither echoes the name nor
    /// leaves anything behind.
    #[test]
    fn a_long_name_over_the_metadata_limit_fails_the_layer_early() {
        let fx = Fixture::new();
        let tar = Layer::new()
            .gnu_long_name(&vec![b'a'; 8 << 20])
            .file("f", b"x")
            .finish();
        let e = fx.unpack(&tar).expect_err("8 MiB name");
        let msg = e.to_string();
        assert!(
            msg.contains("over 1024 KiB"),
            "{}",
            &msg[..msg.len().min(500)]
        );
        assert!(msg.len() < 1024, "the error is {} bytes", msg.len());
        fx.assert_nothing_written();
    }

    #[test]
    fn pax_records_over_the_metadata_limit_fail_the_layer_early() {
        let fx = Fixture::new();
        let tar = Layer::new()
            .pax(&[("path", &vec![b'b'; 4 << 20])])
            .file("f", b"x")
            .finish();
        let e = fx.unpack(&tar).expect_err("4 MiB PAX path");
        let msg = e.to_string();
        assert!(
            msg.contains("over 1024 KiB"),
            "{}",
            &msg[..msg.len().min(500)]
        );
        fx.assert_nothing_written();
    }

    /// A name under the limit but longer than any path the kernel takes
    /// fails at create; the message shows a bounded prefix.
    #[test]
    fn errors_show_a_bounded_prefix_of_a_long_name() {
        let fx = Fixture::new();
        let tar = Layer::new()
            .gnu_long_name(&vec![b'c'; 512 << 10])
            .file("f", b"x")
            .finish();
        let e = fx.unpack(&tar).expect_err("512 KiB name");
        let msg = e.to_string();
        assert!(msg.len() < 2048, "the error is {} bytes", msg.len());
        assert!(msg.contains(" bytes)"), "{msg}");
        fx.assert_nothing_written();
    }

    /// Runs of zeros (a sparse file, a zero-filled gzip bomb) are written
    /// as holes: the content reads the same and takes no space.
    #[test]
    fn zero_runs_are_unpacked_as_holes() {
        let fx = Fixture::new();
        let mut tail = vec![0u8; 8 << 20];
        tail.extend_from_slice(b"end");
        let tar = Layer::new()
            .file("zeros", &vec![0u8; 8 << 20])
            .file("tail", &tail)
            .finish();
        fx.unpack(&tar).expect("unpack");
        for (name, len) in [("zeros", 8u64 << 20), ("tail", (8 << 20) + 3)] {
            let md = fs::metadata(fx.path(name)).unwrap();
            assert_eq!(md.len(), len, "{name}");
            assert!(
                md.blocks() * 512 < 1 << 20,
                "{name}: {} blocks",
                md.blocks()
            );
        }
        assert_eq!(fs::read(fx.path("tail")).unwrap(), tail);
    }

    /// A bomb cannot fill the image store: past the layer's byte or inode
    /// limit the unpack stops (mid-file for bytes) and leaves nothing.
    #[test]
    fn a_layer_over_its_limits_fails_while_unpacking_and_leaves_nothing() {
        let mut fx = Fixture::new();
        fx.limits = Limits {
            bytes: 1 << 20,
            inodes: 0,
        };
        let big = Layer::new()
            .file("a", &vec![7u8; 600 << 10])
            .file("b", &vec![7u8; 600 << 10])
            .finish();
        let e = fx.unpack(&big).expect_err("1.2 MiB over a 1 MiB limit");
        assert!(
            matches!(e, UnpackError::OverLimit { what: "bytes", .. }),
            "{e}"
        );
        fx.assert_nothing_written();
        fx.limits = Limits {
            bytes: 0,
            inodes: 3,
        };
        let many = Layer::new()
            .dir("d")
            .file("d/1", b"1")
            .file("d/2", b"2")
            .file("d/3", b"3")
            .finish();
        let e = fx.unpack(&many).expect_err("4 entries over 3");
        assert!(
            matches!(e, UnpackError::OverLimit { what: "inodes", .. }),
            "{e}"
        );
        fx.assert_nothing_written();
        fx.limits = Limits {
            bytes: 2 << 20,
            inodes: 4,
        };
        fx.unpack(&many).expect("within the limits");
        fs::remove_dir_all(fx.dest()).unwrap();
        fx.unpack(&big).expect("within the limits");
    }

    /// Layers each within their own limit still stop once their image,
    /// together, is past its limit; the failing layer leaves nothing.
    #[test]
    fn layers_share_their_image_budget() {
        let fx = Fixture::new();
        let blob = fx.dir.path().join("blob");
        let layer = Layer::new().file("a", &vec![7u8; 600 << 10]).finish();
        fs::write(&blob, &layer).unwrap();
        let image = ImageBudget::new(Limits {
            bytes: 1 << 20,
            inodes: 0,
        });
        let first = fx.dir.path().join("first");
        unpack_layer(&blob, Compression::None, &first, Limits::NONE, &image)
            .expect("600 KiB of a 1 MiB image budget");
        let second = fx.dir.path().join("second");
        let e = unpack_layer(&blob, Compression::None, &second, Limits::NONE, &image)
            .expect_err("1.2 MiB over a 1 MiB image");
        assert!(
            matches!(
                e,
                UnpackError::OverLimit {
                    scope: "image",
                    what: "bytes",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("max_image_bytes"), "{e}");
        assert!(!second.exists());
        let inodes = ImageBudget::new(Limits {
            bytes: 0,
            inodes: 3,
        });
        inodes.charge(0, 2).expect("2 of 3");
        inodes.charge(1 << 40, 1).expect("3 of 3, bytes unlimited");
        let e = inodes.charge(0, 1).expect_err("4 of 3");
        assert!(e.to_string().contains("max_image_inodes"), "{e}");
        let cancelled = ImageBudget::new(Limits::NONE);
        cancelled.cancel();
        let e = unpack_layer(&blob, Compression::None, &second, Limits::NONE, &cancelled)
            .expect_err("a cancelled image");
        assert!(matches!(e, UnpackError::Cancelled), "{e}");
        assert!(!second.exists());
    }
}
