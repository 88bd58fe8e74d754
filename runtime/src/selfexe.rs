//! CVE-2019-5736 defence: before any command that lets a process enter a
//! container's namespaces (create, run, exec), the runtime re-executes
//! itself from a sealed memfd copy. A container process that opens
//! /proc/PID/exe of the runtime then reaches only that sealed copy, which the
//! kernel refuses to write, never the binary on the host.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};

use nix::fcntl::{FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};

use crate::error::{Context, Error, Result};

fn required() -> SealFlag {
    SealFlag::F_SEAL_SEAL | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE
}

/// Are we already running from a sealed copy?
pub fn is_sealed() -> bool {
    let Ok(exe) = File::open("/proc/self/exe") else {
        return false;
    };
    match nix::fcntl::fcntl(exe.as_fd(), FcntlArg::F_GET_SEALS) {
        Ok(bits) => SealFlag::from_bits_truncate(bits).contains(required()),
        Err(_) => false,
    }
}

/// Re-exec from a sealed memfd copy unless already done. Returns only when
/// already sealed; otherwise it replaces the process (or fails).
pub fn ensure_sealed() -> Result<()> {
    if is_sealed() {
        return Ok(());
    }
    const MFD_EXEC: u32 = 0x10;
    let name = c"carapace-runtime";
    let base = MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING;
    // Newer kernels want executable memfds asked for explicitly (MFD_EXEC);
    // older ones do not know the flag.
    let fd = match memfd_create(name, base | MFdFlags::from_bits_retain(MFD_EXEC)) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::EINVAL) => memfd_create(name, base).ctx(|| "memfd_create")?,
        Err(e) => return Err(e).ctx(|| "memfd_create"),
    };
    let mut src = File::open("/proc/self/exe").ctx(|| "open /proc/self/exe")?;
    let mut dst = File::from(fd);
    std::io::copy(&mut src, &mut dst).ctx(|| "copy the runtime binary into a memfd")?;
    nix::fcntl::fcntl(dst.as_fd(), FcntlArg::F_ADD_SEALS(required())).ctx(|| "seal the memfd")?;
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.into_encoded_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| Error::InvalidArgument("argument with a NUL byte".into()))?;
    let env: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.into_encoded_bytes();
            kv.push(b'=');
            kv.extend(v.into_encoded_bytes());
            CString::new(kv).ok()
        })
        .collect();
    let _ = dst.as_raw_fd();
    nix::unistd::fexecve(dst.as_fd(), &args, &env).ctx(|| "re-exec from the sealed memfd")?;
    unreachable!("fexecve returned without error")
}
