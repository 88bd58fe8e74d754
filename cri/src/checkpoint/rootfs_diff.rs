//! A container's rootfs changes, from its overlay upper dir into the
//! archive's rootfs-diff.tar (plain files, as CRI-O writes it) and
//! deleted.files (the whiteouts), and back: at restore the diff is unpacked
//! with the image layer unpacker (every hostile-layer check included) into
//! a directory stacked as the topmost lower layer, and the deleted files
//! become overlay whiteouts there.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{makedev, mknod, Mode, SFlag};

/// The xattr overlayfs marks an opaque directory with.
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// The OCI layer entry that marks its directory opaque (kept in the diff
/// so a directory deleted and made again hides the image's content).
const OPAQUE_ENTRY: &str = ".wh..wh..opq";

/// Writes `upper`'s changes to `out` (a tar); returns the deleted paths
/// ("/etc/motd"), which the tar does not hold.
pub fn write(upper: &Path, out: &Path) -> io::Result<Vec<String>> {
    let f = fs::File::create(out)?;
    let mut b = tar::Builder::new(io::BufWriter::new(f));
    b.follow_symlinks(false);
    let mut deleted = Vec::new();
    walk(upper, Path::new(""), &mut b, &mut deleted)?;
    b.into_inner()?
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    deleted.sort();
    Ok(deleted)
}

fn walk<W: io::Write>(
    root: &Path,
    rel: &Path,
    b: &mut tar::Builder<W>,
    deleted: &mut Vec<String>,
) -> io::Result<()> {
    let dir = root.join(rel);
    let mut names: Vec<_> = fs::read_dir(&dir)?.collect::<Result<_, _>>()?;
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let name = rel.join(e.file_name());
        let path = root.join(&name);
        let md = fs::symlink_metadata(&path)?;
        let ft = md.file_type();
        if ft.is_char_device() && md.rdev() == 0 {
            deleted.push(format!("/{}", name.display()));
            continue;
        }
        b.append_path_with_name(&path, &name)?;
        if ft.is_dir() {
            if xattr::get(&path, OPAQUE_XATTR)?.as_deref() == Some(b"y") {
                let mut h = tar::Header::new_gnu();
                h.set_size(0);
                h.set_mode(0o644);
                h.set_entry_type(tar::EntryType::Regular);
                h.set_cksum();
                b.append_data(&mut h, name.join(OPAQUE_ENTRY), io::empty())?;
            }
            walk(root, &name, b, deleted)?;
        }
    }
    Ok(())
}

/// Makes an overlay whiteout in `diff` for each deleted path, so the
/// image's file stays deleted under the restored container. Paths are
/// cleaned lexically and must stay below `diff`; a parent that is not a
/// directory (a symlink the diff planted, say) refuses the restore.
pub fn whiteouts(diff: &Path, deleted: &[String]) -> io::Result<()> {
    for d in deleted {
        let rel: PathBuf = Path::new(d)
            .components()
            .map(|c| match c {
                Component::Normal(s) => Ok(Some(s)),
                Component::RootDir | Component::CurDir => Ok(None),
                _ => Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("deleted file {d:?} leaves the rootfs"),
                )),
            })
            .collect::<io::Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .collect();
        let Some(parent) = rel.parent() else { continue };
        if rel.as_os_str().is_empty() {
            continue;
        }
        let mut at = diff.to_path_buf();
        for c in parent.components() {
            at.push(c);
            match fs::symlink_metadata(&at) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("deleted file {d:?}: {} is not a directory", at.display()),
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(&at)?,
                Err(e) => return Err(e),
            }
        }
        let target = diff.join(&rel);
        match fs::symlink_metadata(&target) {
            // The diff made something here again: it stays.
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        mknod(&target, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0)).map_err(io::Error::from)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_and_deletions_round_trip() {
        let d = tempfile::tempdir().expect("tmp");
        let upper = d.path().join("upper");
        fs::create_dir_all(upper.join("etc")).expect("mkdir");
        fs::write(upper.join("etc/new"), b"x").expect("w");
        std::os::unix::fs::symlink("new", upper.join("etc/link")).expect("symlink");
        mknod(
            &upper.join("etc/motd"),
            SFlag::S_IFCHR,
            Mode::empty(),
            makedev(0, 0),
        )
        .expect("mknod");
        let tar_path = d.path().join("diff.tar");
        let deleted = write(&upper, &tar_path).expect("write");
        assert_eq!(deleted, vec!["/etc/motd".to_string()]);
        let mut names = Vec::new();
        let mut ar = tar::Archive::new(fs::File::open(&tar_path).expect("open"));
        for e in ar.entries().expect("entries") {
            names.push(
                e.expect("entry")
                    .path()
                    .expect("path")
                    .display()
                    .to_string(),
            );
        }
        assert_eq!(names, vec!["etc", "etc/link", "etc/new"]);

        let diff = d.path().join("diff");
        fs::create_dir(&diff).expect("mkdir");
        whiteouts(&diff, &deleted).expect("whiteouts");
        let md = fs::symlink_metadata(diff.join("etc/motd")).expect("whiteout");
        assert!(md.file_type().is_char_device() && md.rdev() == 0);
        // Escapes and symlinked parents are refused.
        assert!(whiteouts(&diff, &["/../x".to_string()]).is_err());
        std::os::unix::fs::symlink("/", diff.join("evil")).expect("symlink");
        assert!(whiteouts(&diff, &["/evil/etc/passwd".to_string()]).is_err());
    }
}
