//! Layers on the real kernel: unpacked with overlay whiteouts, stacked with
//! overlayfs into a container root filesystem, seen through the mount, and
//! unmounted without a trace. Needs root.

use std::collections::BTreeMap;
use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use carapace_cri::image::rootfs::{self, RootfsError};
use carapace_cri::image::unpack::{unpack_layer, Compression, ImageBudget, Limits};
use tar::{Builder, EntryType, Header};

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "unpack/rootfs tests need root (chown, mknod, mount); CI runs them as root"
    );
}

/// Mount points at or under `dir`, from /proc/self/mountinfo.
fn mounts_under(dir: &Path) -> Vec<String> {
    let d = dir.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&d))
        .collect()
}

/// Unmounts on drop, so a failed assertion leaves no mount behind.
struct MountGuard(PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        if let Err(e) = rootfs::unmount(&self.0) {
            eprintln!("cleanup unmount {}: {e}", self.0.display());
        }
    }
}

fn header(kind: EntryType, mode: u32, uid: u64, gid: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_mtime(1_700_000_000);
    h.set_size(0);
    h
}

/// Builds a layer tar in memory.
struct Layer(Builder<Vec<u8>>);

impl Layer {
    fn new() -> Layer {
        Layer(Builder::new(Vec::new()))
    }

    fn entry(mut self, path: &str, mut h: Header, data: &[u8]) -> Layer {
        h.set_size(data.len() as u64);
        self.0.append_data(&mut h, path, data).expect("append");
        self
    }

    fn dir(self, path: &str) -> Layer {
        self.entry(path, header(EntryType::Directory, 0o755, 0, 0), b"")
    }

    fn file(self, path: &str, content: &[u8]) -> Layer {
        self.entry(path, header(EntryType::Regular, 0o644, 0, 0), content)
    }

    fn link(mut self, kind: EntryType, path: &str, target: &str) -> Layer {
        let mut h = header(kind, 0o777, 0, 0);
        self.0
            .append_link(&mut h, path, target)
            .expect("append link");
        self
    }

    fn xattrs(mut self, records: &[(&str, &[u8])]) -> Layer {
        self.0
            .append_pax_extensions(records.iter().map(|(k, v)| (*k, *v)))
            .expect("append pax");
        self
    }

    fn finish(self) -> Vec<u8> {
        self.0.into_inner().expect("finish tar")
    }
}

fn compress(tar: &[u8], compression: Compression) -> Vec<u8> {
    match compression {
        Compression::None => tar.to_vec(),
        Compression::Gzip => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(tar).expect("gzip");
            gz.finish().expect("gzip")
        }
        Compression::Zstd => zstd::encode_all(tar, 1).expect("zstd"),
    }
}

/// Writes the blob beside `layers/` and unpacks it to `layers/<name>`.
fn unpack(root: &Path, name: &str, tar: &[u8], compression: Compression) -> PathBuf {
    let blob = root.join(format!("{name}.blob"));
    fs::write(&blob, compress(tar, compression)).expect("write blob");
    let layers = root.join("layers");
    fs::create_dir_all(&layers).expect("layers dir");
    let dest = layers.join(name);
    let image = ImageBudget::new(Limits::NONE);
    unpack_layer(&blob, compression, &dest, Limits::NONE, &image).expect("unpack layer");
    dest
}

/// Everything about a tree that a write through the overlay could change.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("dir entry").path();
            let m = fs::symlink_metadata(&path).expect("lstat");
            let content = if m.is_file() {
                format!("{:?}", fs::read(&path).expect("read"))
            } else if m.is_dir() {
                stack.push(path.clone());
                String::new()
            } else {
                String::new()
            };
            let xattrs: Vec<_> = xattr::list(&path).expect("list xattrs").collect();
            let rel = path.strip_prefix(dir).expect("under dir").to_path_buf();
            out.insert(
                rel,
                format!(
                    "{:o} {}:{} {} {} {:?} {content}",
                    m.mode(),
                    m.uid(),
                    m.gid(),
                    m.rdev(),
                    m.mtime(),
                    xattrs
                ),
            );
        }
    }
    out
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn three_layers_stack_into_a_container_rootfs() {
    require_root();
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();

    let base = Layer::new()
        .dir("data/")
        .file("data/keep", b"keep")
        .file("data/gone", b"gone")
        .dir("opq/")
        .file("opq/a", b"a")
        .file("opq/b", b"b")
        .file("replace", b"old")
        .xattrs(&[("SCHILY.xattr.user.origin", b"base")])
        .entry(
            "bin/tool",
            header(EntryType::Regular, 0o4750, 1000, 1001),
            b"#!/bin/true\n",
        )
        .link(EntryType::Symlink, "link", "data/keep")
        .link(EntryType::Link, "data/keep-hardlink", "data/keep")
        .finish();
    let second = Layer::new()
        .dir("data/")
        .file("data/.wh.gone", b"")
        .dir("opq/")
        .file("opq/.wh..wh..opq", b"")
        .file("opq/c", b"c")
        .file("replace", b"new")
        .finish();
    let third = Layer::new()
        .dir("etc/")
        .file("etc/added", b"third")
        .file("data/third", b"3")
        .finish();

    let l1 = unpack(root, "base", &base, Compression::Gzip);
    let l2 = unpack(root, "second", &second, Compression::Zstd);
    let l3 = unpack(root, "third", &third, Compression::None);
    let lowers_before: Vec<_> = [&l1, &l2, &l3].iter().map(|l| snapshot(l)).collect();

    let upper = root.join("c1/upper");
    let work = root.join("c1/work");
    let target = root.join("c1/rootfs");
    rootfs::mount_overlay(
        &[l3.clone(), l2.clone(), l1.clone()],
        &upper,
        &work,
        &target,
        None,
    )
    .expect("mount overlay");
    let guard = MountGuard(target.clone());
    assert_eq!(
        mounts_under(&target),
        vec![target.to_string_lossy().into_owned()]
    );

    // Reads see the stack: whiteouts delete, the opaque dir hides, the upper
    // layer wins, the base shows through.
    assert!(!target.join("data/gone").exists());
    assert_eq!(fs::read(target.join("data/keep")).expect("keep"), b"keep");
    assert_eq!(names(&target.join("opq")), vec!["c"]);
    assert_eq!(fs::read(target.join("replace")).expect("replace"), b"new");
    assert_eq!(fs::read(target.join("etc/added")).expect("added"), b"third");
    assert_eq!(fs::read(target.join("data/third")).expect("third"), b"3");
    let tool = fs::symlink_metadata(target.join("bin/tool")).expect("tool");
    assert_eq!(
        (tool.mode() & 0o7777, tool.uid(), tool.gid()),
        (0o4750, 1000, 1001)
    );
    assert_eq!(
        xattr::get(target.join("bin/tool"), "user.origin").expect("getxattr"),
        Some(b"base".to_vec())
    );
    assert_eq!(
        fs::read_link(target.join("link")).expect("readlink"),
        PathBuf::from("data/keep")
    );
    assert_eq!(
        fs::metadata(target.join("data/keep")).expect("keep").ino(),
        fs::metadata(target.join("data/keep-hardlink"))
            .expect("hardlink")
            .ino()
    );

    // Writes land in the upper dir only.
    fs::write(target.join("data/keep"), b"changed").expect("write through overlay");
    fs::write(target.join("fresh"), b"fresh").expect("create through overlay");
    fs::remove_file(target.join("replace")).expect("delete through overlay");
    assert_eq!(
        fs::read(upper.join("data/keep")).expect("copied up"),
        b"changed"
    );
    assert_eq!(
        fs::read(upper.join("fresh")).expect("fresh in upper"),
        b"fresh"
    );
    assert!(fs::symlink_metadata(upper.join("replace"))
        .expect("whiteout in upper")
        .file_type()
        .is_char_device());
    let lowers_after: Vec<_> = [&l1, &l2, &l3].iter().map(|l| snapshot(l)).collect();
    assert_eq!(lowers_before, lowers_after, "lower dirs changed");

    drop(guard);
    assert!(
        mounts_under(&target).is_empty(),
        "still mounted: {:?}",
        mounts_under(&target)
    );
    rootfs::unmount(&target).expect("second unmount is a no-op");
}

/// A layer store name: 64 hex digits, like a chain ID.
fn chain_id_name(i: usize) -> String {
    format!("{i:064x}")
}

#[test]
fn sixty_layers_mount_by_paths_relative_to_their_parent() {
    deep_stack_mounts(60);
}

#[test]
fn two_hundred_layers_mount_through_short_links() {
    deep_stack_mounts(200);
}

/// Mounts `layers` layers (each adds a file and overrides `top`; the last
/// whites out the first's file) and checks the merged view.
fn deep_stack_mounts(layers: usize) {
    require_root();
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let mut lowers = Vec::new();
    for i in 0..layers {
        let mut layer = Layer::new()
            .file("top", i.to_string().as_bytes())
            .file(&format!("only-{i}"), b"x");
        if i == layers - 1 {
            layer = layer.file(".wh.only-0", b"");
        }
        lowers.push(unpack(
            root,
            &chain_id_name(i),
            &layer.finish(),
            Compression::None,
        ));
    }
    // Topmost first: the last layer of the image leads.
    lowers.reverse();
    let absolute_len: usize = lowers.iter().map(|l| l.as_os_str().len() + 1).sum();
    assert!(
        absolute_len > 4096,
        "test must overflow one page ({absolute_len} bytes)"
    );

    let cwd = std::env::current_dir().expect("cwd");
    let target = root.join("rootfs");
    rootfs::mount_overlay(
        &lowers,
        &root.join("upper"),
        &root.join("work"),
        &target,
        None,
    )
    .expect("mount 60 layers");
    let _guard = MountGuard(target.clone());
    assert_eq!(
        std::env::current_dir().expect("cwd"),
        cwd,
        "mount changed our cwd"
    );

    assert_eq!(
        fs::read(target.join("top")).expect("top"),
        (layers - 1).to_string().as_bytes()
    );
    assert!(!target.join("only-0").exists());
    for i in 1..layers {
        assert!(target.join(format!("only-{i}")).exists(), "only-{i}");
    }
    let stray: Vec<_> = fs::read_dir(root)
        .expect("root")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".lowers"))
        .collect();
    assert!(stray.is_empty(), "link dirs left: {stray:?}");
}

#[test]
fn more_layers_than_overlayfs_stacks_is_a_clear_error() {
    require_root();
    let tmp = tempfile::tempdir().expect("tmp");
    let layers = tmp.path().join("layers");
    let lowers: Vec<PathBuf> = (0..501).map(|i| layers.join(chain_id_name(i))).collect();
    let target = tmp.path().join("rootfs");
    let err = rootfs::mount_overlay(
        &lowers,
        &tmp.path().join("u"),
        &tmp.path().join("w"),
        &target,
        None,
    )
    .expect_err("501 lowers");
    assert!(matches!(err, RootfsError::OptionsTooLong { .. }), "{err}");
    assert!(err.to_string().contains("500 lower dirs"), "{err}");
    let err = rootfs::mount_readonly(&lowers, &target).expect_err("501 lowers");
    assert!(err.to_string().contains("500 lower dirs"), "{err}");
    assert!(mounts_under(tmp.path()).is_empty());
}

#[test]
fn readonly_mounts_refuse_writes() {
    require_root();
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let l1 = unpack(
        root,
        "one",
        &Layer::new().file("f", b"1").file("g", b"g").finish(),
        Compression::None,
    );
    let l2 = unpack(
        root,
        "two",
        &Layer::new().file("f", b"2").finish(),
        Compression::None,
    );

    let stacked = root.join("stacked");
    rootfs::mount_readonly(&[l2.clone(), l1.clone()], &stacked).expect("overlay read-only");
    let _g1 = MountGuard(stacked.clone());
    assert_eq!(fs::read(stacked.join("f")).expect("f"), b"2");
    assert_eq!(fs::read(stacked.join("g")).expect("g"), b"g");
    let err = fs::write(stacked.join("new"), b"x").expect_err("write must fail");
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");

    let single = root.join("single");
    rootfs::mount_readonly(std::slice::from_ref(&l1), &single).expect("bind read-only");
    let _g2 = MountGuard(single.clone());
    assert_eq!(fs::read(single.join("f")).expect("f"), b"1");
    let err = fs::write(single.join("f"), b"x").expect_err("write must fail");
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    // The layer itself stays writable for the store; only the view is read-only.
    assert_eq!(fs::read(l1.join("f")).expect("f"), b"1");
}

#[test]
fn unmount_removes_stacked_mounts_and_is_idempotent() {
    require_root();
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let l1 = unpack(
        root,
        "one",
        &Layer::new().file("f", b"1").finish(),
        Compression::None,
    );
    let target = root.join("target");
    let _guard = MountGuard(target.clone());
    rootfs::mount_readonly(std::slice::from_ref(&l1), &target).expect("first mount");
    rootfs::mount_readonly(std::slice::from_ref(&l1), &target).expect("stacked mount");
    assert_eq!(mounts_under(&target).len(), 2);
    rootfs::unmount(&target).expect("unmount");
    assert!(
        mounts_under(&target).is_empty(),
        "{:?}",
        mounts_under(&target)
    );
    rootfs::unmount(&target).expect("not mounted is fine");
    rootfs::unmount(&root.join("never-existed")).expect("missing is fine");
}

#[test]
fn paths_overlay_cannot_carry_are_refused() {
    require_root();
    let tmp = tempfile::tempdir().expect("tmp");
    let target = tmp.path().join("rootfs");
    for bad in [
        tmp.path().join("a:b"),
        tmp.path().join("a,b"),
        tmp.path().join("a\\b"),
        PathBuf::from("relative/layer"),
    ] {
        let err = rootfs::mount_readonly(&[bad.clone(), tmp.path().join("ok")], &target)
            .expect_err("bad path must be refused");
        assert!(matches!(err, RootfsError::BadPath { .. }), "{bad:?}: {err}");
    }
    let err = rootfs::mount_overlay(
        &[],
        &tmp.path().join("u"),
        &tmp.path().join("w"),
        &target,
        None,
    )
    .expect_err("no lowers");
    assert!(matches!(err, RootfsError::NoLowers { .. }), "{err}");
    assert!(mounts_under(tmp.path()).is_empty());
    match fs::metadata(tmp.path().join("u")) {
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        other => panic!("refused mount created its upper dir: {other:?}"),
    }
}
