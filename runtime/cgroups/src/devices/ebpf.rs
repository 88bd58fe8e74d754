//! Loading and attaching the cgroup v2 device filter with bpf(2).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use oci_spec::runtime::LinuxDeviceCgroup;

use super::parse_rules;
use super::program::{device_filter, Insn};
use crate::error::Error;

// bpf(2) commands, program and attach types (linux/bpf.h).
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 1 << 1;

/// Name given to our programs, so a re-apply detaches ours and only ours
/// (also what `bpftool cgroup show` prints).
const PROG_NAME: &[u8] = b"carapace_dev";
const LICENSE: &[u8] = b"Apache-2.0\0";
/// The kernel allows 64 programs per attach point; leave room for growth.
const MAX_QUERY: usize = 256;

#[derive(Clone, Copy)]
#[repr(C)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

#[derive(Clone, Copy)]
#[repr(C)]
struct ProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[derive(Clone, Copy)]
#[repr(C)]
struct ProgQuery {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
}

#[derive(Clone, Copy)]
#[repr(C)]
struct GetFdById {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

#[derive(Clone, Copy)]
#[repr(C)]
struct InfoByFd {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// `union bpf_attr`, padded well past its current size: the kernel may write
/// output fields (e.g. query.revision) that our structs do not declare, and
/// it requires every byte it does not know to be zero.
#[repr(C, align(8))]
union Attr {
    load: ProgLoad,
    attach: ProgAttach,
    query: ProgQuery,
    by_id: GetFdById,
    info: InfoByFd,
    raw: [u8; 256],
}

impl Attr {
    fn zeroed() -> Attr {
        Attr { raw: [0; 256] }
    }
}

/// The prefix of `struct bpf_prog_info` we read: the name sits at offset 64.
#[repr(C, align(8))]
struct ProgInfo {
    bytes: [u8; 80],
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> Result<libc::c_long, Errno> {
    // SAFETY: attr is a valid, writable, zero-padded bpf_attr of the size we
    // pass; any pointers inside it point to live buffers owned by the caller.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut Attr,
            std::mem::size_of::<Attr>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r)
    }
}

fn fd_from(r: libc::c_long) -> Result<OwnedFd, Errno> {
    let raw = i32::try_from(r).map_err(|_| Errno::EBADF)?;
    // SAFETY: the kernel just returned this new descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn fd_u32(fd: &OwnedFd) -> u32 {
    // Descriptors are never negative.
    fd.as_raw_fd() as u32
}

fn bpf_err(op: &'static str, dir: &Path, errno: Errno) -> Error {
    Error::Bpf {
        op,
        path: dir.to_path_buf(),
        errno,
        log: String::new(),
    }
}

fn load_once(insns: &[Insn], log: Option<&mut Vec<u8>>) -> Result<OwnedFd, Errno> {
    let mut name = [0u8; 16];
    name[..PROG_NAME.len()].copy_from_slice(PROG_NAME);
    let (log_level, log_size, log_buf) = match log {
        Some(buf) => (1, buf.len() as u32, buf.as_mut_ptr() as u64),
        None => (0, 0, 0),
    };
    let mut attr = Attr::zeroed();
    attr.load = ProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: u32::try_from(insns.len()).map_err(|_| Errno::E2BIG)?,
        insns: insns.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        log_level,
        log_size,
        log_buf,
        kern_version: 0,
        prog_flags: 0,
        prog_name: name,
    };
    fd_from(bpf(BPF_PROG_LOAD, &mut attr)?)
}

/// Loads the program; on failure reloads with the verifier log so the error
/// says why. Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK: on
/// EPERM the limit is raised for the load only and then restored, so it does
/// not leak into processes we start later.
fn load(dir: &Path, insns: &[Insn]) -> Result<OwnedFd, Error> {
    let first = match load_once(insns, None) {
        Ok(fd) => return Ok(fd),
        Err(Errno::EPERM) => {
            let mut old = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: plain getrlimit/setrlimit on valid structs.
            let got = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut old) } == 0;
            let inf = libc::rlimit {
                rlim_cur: libc::RLIM_INFINITY,
                rlim_max: libc::RLIM_INFINITY,
            };
            // SAFETY: as above.
            if got && unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &inf) } == 0 {
                let retried = load_once(insns, None);
                // SAFETY: as above; restores what getrlimit returned.
                unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &old) };
                match retried {
                    Ok(fd) => return Ok(fd),
                    Err(e) => e,
                }
            } else {
                Errno::EPERM
            }
        }
        Err(e) => e,
    };
    let mut log = vec![0u8; 64 * 1024];
    let log_text = match load_once(insns, Some(&mut log)) {
        Ok(fd) => return Ok(fd),
        Err(_) => {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            String::from_utf8_lossy(&log[..end]).trim().to_string()
        }
    };
    Err(Error::Bpf {
        op: "BPF_PROG_LOAD",
        path: dir.to_path_buf(),
        errno: first,
        log: if log_text.is_empty() {
            String::new()
        } else {
            format!(": verifier log: {log_text}")
        },
    })
}

fn query(dirfd: &OwnedFd) -> Result<Vec<u32>, Errno> {
    let mut ids = vec![0u32; MAX_QUERY];
    let mut attr = Attr::zeroed();
    attr.query = ProgQuery {
        target_fd: fd_u32(dirfd),
        attach_type: BPF_CGROUP_DEVICE,
        query_flags: 0,
        attach_flags: 0,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: MAX_QUERY as u32,
    };
    bpf(BPF_PROG_QUERY, &mut attr)?;
    // SAFETY: the kernel filled in the query member we initialized.
    let count = unsafe { attr.query.prog_cnt } as usize;
    ids.truncate(count.min(MAX_QUERY));
    Ok(ids)
}

fn prog_by_id(id: u32) -> Result<Option<OwnedFd>, Errno> {
    let mut attr = Attr::zeroed();
    attr.by_id = GetFdById {
        prog_id: id,
        next_id: 0,
        open_flags: 0,
    };
    match bpf(BPF_PROG_GET_FD_BY_ID, &mut attr) {
        Ok(r) => fd_from(r).map(Some),
        // Detached and freed since the query.
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

fn prog_name(prog: &OwnedFd) -> Result<Vec<u8>, Errno> {
    let mut info = ProgInfo { bytes: [0; 80] };
    let mut attr = Attr::zeroed();
    attr.info = InfoByFd {
        bpf_fd: fd_u32(prog),
        info_len: 80,
        info: info.bytes.as_mut_ptr() as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    let name = &info.bytes[64..80];
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    Ok(name[..end].to_vec())
}

fn attach_or_detach(
    cmd: libc::c_long,
    dirfd: &OwnedFd,
    prog: &OwnedFd,
    flags: u32,
) -> Result<(), Errno> {
    let mut attr = Attr::zeroed();
    attr.attach = ProgAttach {
        target_fd: fd_u32(dirfd),
        attach_bpf_fd: fd_u32(prog),
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: flags,
        replace_bpf_fd: 0,
    };
    bpf(cmd, &mut attr).map(|_| ())
}

fn open_dir(dir: &Path) -> Result<OwnedFd, Error> {
    open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| Error::Open {
        path: dir.to_path_buf(),
        errno,
    })
}

/// Enforces an OCI device rule list on a cgroup v2 directory by attaching a
/// BPF_PROG_TYPE_CGROUP_DEVICE program (BPF_F_ALLOW_MULTI) generated from it:
/// the last matching rule decides, anything unmatched is denied.
///
/// Re-applying (the `update` path) attaches the new program first and then
/// detaches the ones this crate attached before, so there is never a moment
/// without a filter. Programs attached by others (e.g. systemd) are left in
/// place; they can only restrict further. Public so the runtime's own tests
/// can exercise device filtering on any cgroup2 directory.
pub fn apply_device_rules_v2(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), Error> {
    let rules = parse_rules(rules)?;
    let insns = device_filter(&rules);
    let dirfd = open_dir(dir)?;
    let old = query(&dirfd).map_err(|e| bpf_err("BPF_PROG_QUERY", dir, e))?;
    let prog = load(dir, &insns)?;
    attach_or_detach(BPF_PROG_ATTACH, &dirfd, &prog, BPF_F_ALLOW_MULTI)
        .map_err(|e| bpf_err("BPF_PROG_ATTACH", dir, e))?;
    for id in old {
        let Some(old_prog) =
            prog_by_id(id).map_err(|e| bpf_err("BPF_PROG_GET_FD_BY_ID", dir, e))?
        else {
            continue;
        };
        let name = prog_name(&old_prog).map_err(|e| bpf_err("BPF_OBJ_GET_INFO_BY_FD", dir, e))?;
        if name == PROG_NAME {
            match attach_or_detach(BPF_PROG_DETACH, &dirfd, &old_prog, 0) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(bpf_err("BPF_PROG_DETACH", dir, e)),
            }
        }
    }
    Ok(())
}

/// Ids of the device programs attached directly to a cgroup v2 directory.
/// Exists for diagnostics and tests (e.g. "an update left exactly one filter").
pub fn attached_device_filters(dir: &Path) -> Result<Vec<u32>, Error> {
    let dirfd = open_dir(dir)?;
    query(&dirfd).map_err(|e| bpf_err("BPF_PROG_QUERY", dir, e))
}
