//! Reads and writes of /proc that must reach the kernel, not a file that a
//! hostile image or spec put in its place.
//!
//! After pivot_root, `/proc` is whatever the container's mounts made it: a
//! bind of a tmpfs over `/proc/self/attr` (CVE-2019-16884) turns an LSM
//! label write into a write to an ordinary file, and the label silently
//! never applies. Every security-relevant /proc access here therefore
//! opens the file, checks with fstatfs(2) that it lives on procfs (as runc's
//! `checkProcMount` and its verified procfs handle do), and only then reads
//! or writes through that same fd, so the check and the use cannot diverge.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Context, Error, Result};

/// `PROC_SUPER_MAGIC` from linux/magic.h.
pub const PROC_SUPER_MAGIC: i64 = 0x9fa0;

/// Does `fd` live on a procfs mount?
pub fn is_procfs(fd: impl AsFd) -> nix::Result<bool> {
    let st = nix::sys::statfs::fstatfs(fd)?;
    Ok(st.filesystem_type().0 as i64 == PROC_SUPER_MAGIC)
}

/// Open `path` (which must be a procfs file) for reading or writing, refusing
/// a final symlink and anything that is not on procfs.
pub fn open(path: &Path, write: bool) -> Result<File> {
    let f = std::fs::OpenOptions::new()
        .read(!write)
        .write(write)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .ctx(|| format!("open {}", path.display()))?;
    if !is_procfs(&f).ctx(|| format!("fstatfs {}", path.display()))? {
        return Err(Error::Init(format!(
            "{} is not on procfs: refusing to use it (a mount over /proc?)",
            path.display()
        )));
    }
    Ok(f)
}

/// Write `value` to the procfs file `path` in one write(2), as the kernel
/// expects for its tunables.
pub fn write(path: &Path, value: &str) -> Result<()> {
    let mut f = open(path, true)?;
    f.write_all(value.as_bytes())
        .ctx(|| format!("write {value:?} to {}", path.display()))
}

/// Read the procfs file `path` whole (these files are small).
pub fn read_to_string(path: &Path) -> Result<String> {
    let mut f = open(path, false)?;
    let mut s = String::new();
    f.read_to_string(&mut s)
        .ctx(|| format!("read {}", path.display()))?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_accepted() {
        let s = read_to_string(Path::new("/proc/self/oom_score_adj")).expect("read");
        assert!(s.trim().parse::<i32>().is_ok(), "{s:?}");
    }

    #[test]
    fn files_off_procfs_are_refused() {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("oom_score_adj");
        std::fs::write(&p, "0").expect("write");
        let e = write(&p, "-1000").expect_err("a tmpfs file must be refused");
        assert!(e.to_string().contains("not on procfs"), "{e}");
        assert_eq!(std::fs::read_to_string(&p).expect("read"), "0");
    }

    #[test]
    fn a_final_symlink_is_not_followed() {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("link");
        std::os::unix::fs::symlink("/proc/self/oom_score_adj", &p).expect("symlink");
        assert!(read_to_string(&p).is_err());
    }
}
