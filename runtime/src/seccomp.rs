//! Seccomp: compile an OCI seccomp profile into a BPF program with
//! libseccomp, and load it into the container's init right before exec.
//!
//! Compiling happens in the runtime CLI before fork, so a bad profile is
//! reported to the user as an error of `create`/`exec`; the child only makes
//! one `seccomp(2)` call with the ready program and allocates nothing.
//!
//! The semantics follow runc's `libcontainer/seccomp`:
//! * syscall names libseccomp does not know are skipped (profiles list
//!   syscalls newer than this libseccomp), and so are rules whose action is
//!   the default action (libseccomp rejects them);
//! * conditions on different arguments are ANDed in one rule; when one
//!   argument is compared more than once, every condition becomes a rule of
//!   its own (ORed), as runc does;
//! * `SCMP_ACT_KILL` is `SCMP_ACT_KILL_THREAD`; `SCMP_ACT_ERRNO` and
//!   `SCMP_ACT_TRACE` without `errnoRet` return `EPERM`;
//! * unless the default action lets syscalls through (ALLOW, LOG, TRACE), a
//!   stub in front of libseccomp's program answers `ENOSYS` to syscall
//!   numbers above the highest one the profile names for that architecture:
//!   those are newer than the profile, and `ENOSYS` makes programs fall back
//!   (glibc's clone3 → clone, …) where the default `EPERM` makes them fail;
//!   unlike runc, the native arch gets the stub even when the profile lists
//!   no architectures;
//! * of two unconditional rules for one syscall the first wins (libseccomp
//!   ignores the second), as under runc;
//! * libseccomp's no_new_privs attribute is off: the runtime sets
//!   no_new_privs itself when the process asks for it, and otherwise loads
//!   the filter while it still has CAP_SYS_ADMIN.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Seek};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use nix::errno::Errno;
use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

/// Why a seccomp profile could not be compiled or its filter loaded. Compile
/// errors start with "invalid seccomp profile" and name the syscall, action,
/// architecture or flag in question.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// A `syscalls[].names` entry is the empty string.
    #[error("invalid seccomp profile: empty syscall name")]
    EmptySyscallName,
    /// libseccomp does not support an architecture the profile lists.
    #[error(
        "invalid seccomp profile: architecture {arch} is not supported by libseccomp: {source}"
    )]
    Arch {
        /// The architecture, as spelled in the profile.
        arch: String,
        /// libseccomp's error.
        source: libseccomp::error::SeccompError,
    },
    /// The runtime does not know a filter flag.
    #[error("invalid seccomp profile: flag {flag} is not supported")]
    UnsupportedFlag {
        /// The flag, as spelled in the profile.
        flag: String,
    },
    /// libseccomp (or the kernel, which it probes) cannot apply a flag.
    #[error("invalid seccomp profile: flag {flag}: {source}")]
    Flag {
        /// The flag, as spelled in the profile.
        flag: String,
        /// libseccomp's error.
        source: libseccomp::error::SeccompError,
    },
    /// The default action is not usable (not supported by the kernel, or
    /// SCMP_ACT_NOTIFY, which would catch the runtime's own syscalls).
    #[error("invalid seccomp profile: default action {action}: {reason}")]
    DefaultAction {
        /// The action, as spelled in the profile.
        action: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An `errnoRet` (or `defaultErrnoRet`) does not fit the 16 bits the
    /// kernel returns.
    #[error("invalid seccomp profile: {rule}: errnoRet {errno} is out of range (0-65535)")]
    ErrnoRange {
        /// `syscall "name"` for a rule, or `default action`.
        rule: String,
        /// The value.
        errno: u32,
    },
    /// SCMP_ACT_NOTIFY on `write`: the init must write to hand the notify fd
    /// over after loading the filter, so it would block forever (as runc).
    #[error(
        "invalid seccomp profile: syscall \"write\": SCMP_ACT_NOTIFY cannot be used for write"
    )]
    NotifyWrite,
    /// SCMP_ACT_NOTIFY is used but there is nobody to send the fd to.
    #[error("invalid seccomp profile: syscall {syscall:?} uses SCMP_ACT_NOTIFY but listenerPath is not set")]
    NoListener {
        /// The first syscall with a NOTIFY rule.
        syscall: String,
    },
    /// A condition names an argument past the sixth.
    #[error("invalid seccomp profile: syscall {syscall:?}: argument index {index} is out of range (0-5)")]
    ArgIndex {
        /// The syscall.
        syscall: String,
        /// The index.
        index: usize,
    },
    /// libseccomp rejected a rule (e.g. an action the kernel lacks, or two
    /// conflicting unconditional rules for one syscall).
    #[error("invalid seccomp profile: syscall {syscall:?} with action {action}: {source}")]
    Rule {
        /// The syscall.
        syscall: String,
        /// The rule's action, as spelled in the profile.
        action: String,
        /// libseccomp's error.
        source: libseccomp::error::SeccompError,
    },
    /// The program is longer than the kernel accepts.
    #[error("invalid seccomp profile: the filter has {len} BPF instructions, more than the kernel's limit of 4096")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// libseccomp failed outside of a particular rule.
    #[error("compile seccomp filter: {what}: {source}")]
    Libseccomp {
        /// The step that failed.
        what: &'static str,
        /// libseccomp's error.
        source: libseccomp::error::SeccompError,
    },
    /// Reading libseccomp's BPF output back failed.
    #[error("compile seccomp filter: read the BPF program: {0}")]
    Export(#[source] std::io::Error),
    /// `seccomp(SECCOMP_SET_MODE_FILTER)` failed.
    #[error("load seccomp filter: {source}{}", load_hint(*source))]
    Load {
        /// The kernel's error.
        source: Errno,
    },
    /// `notify_fd` was asked for before `load`.
    #[error("seccomp notify fd requested before the filter was loaded")]
    NotLoaded,
}

fn load_hint(e: Errno) -> &'static str {
    match e {
        Errno::EACCES => " (no_new_privs is unset and CAP_SYS_ADMIN is missing)",
        Errno::EINVAL => " (a filter flag or action is not supported by this kernel)",
        _ => "",
    }
}

/// A compiled, ready-to-load filter. It is built before fork, so a bad
/// profile fails `create` with a clear message, and loading it in the child
/// is a single syscall that allocates nothing.
pub struct Filter {
    /// The BPF program: the ENOSYS stub (if any) followed by libseccomp's.
    program: Vec<libc::sock_filter>,
    /// `SECCOMP_FILTER_FLAG_*` for `seccomp(2)`.
    flags: libc::c_ulong,
    /// Whether a rule uses SCMP_ACT_NOTIFY (so load creates a listener).
    notify: bool,
    /// The listener fd after load, -1 before.
    listener: AtomicI32,
    /// Syscall names skipped because libseccomp does not know them.
    ignored: Vec<String>,
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Filter")
            .field("instructions", &self.program.len())
            .field("flags", &self.flags)
            .field("notify", &self.notify)
            .field("ignored", &self.ignored)
            .finish()
    }
}

impl Filter {
    /// Load into the calling thread (the container init calls this as late
    /// as possible). It makes one `seccomp(2)` call and allocates nothing,
    /// so it is safe after fork in a single-threaded child. It never sets
    /// no_new_privs: without it the caller needs CAP_SYS_ADMIN.
    pub fn load(&self) -> Result<(), SeccompError> {
        let prog = libc::sock_fprog {
            // compile() guarantees at most BPF_MAXINSNS instructions.
            len: self.program.len() as u16,
            filter: self.program.as_ptr().cast_mut(),
        };
        // SAFETY: prog points at a live, well-formed program for the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER as libc::c_ulong,
                self.flags,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc < 0 {
            return Err(SeccompError::Load {
                source: Errno::last(),
            });
        }
        if self.notify {
            self.listener.store(rc as RawFd, Ordering::SeqCst);
        }
        Ok(())
    }

    /// If the profile uses SCMP_ACT_NOTIFY: after `load()` returns the
    /// notify fd (close-on-exec, owned by the caller) that the runtime must
    /// send to `listenerPath`. `None` when the profile does not notify.
    pub fn notify_fd(&self) -> Result<Option<RawFd>, SeccompError> {
        if !self.notify {
            return Ok(None);
        }
        match self.listener.load(Ordering::SeqCst) {
            -1 => Err(SeccompError::NotLoaded),
            fd => Ok(Some(fd)),
        }
    }

    /// Whether loading creates a notify fd, so the parent knows before the
    /// child runs that it must expect one and forward it to the listener.
    pub fn uses_notify(&self) -> bool {
        self.notify
    }

    /// Syscall names that were skipped because libseccomp does not know
    /// them, so the CLI can log them (runc logs them at debug level).
    pub fn ignored_syscalls(&self) -> &[String] {
        &self.ignored
    }
}

/// Compile `profile` into a loadable filter, with runc's semantics (see the
/// module documentation). Errors name the offending syscall, action,
/// architecture or flag.
pub fn compile(profile: &LinuxSeccomp) -> Result<Filter, SeccompError> {
    let syscalls = profile.syscalls().as_deref().unwrap_or(&[]);

    let default_name = profile.default_action().to_string();
    if profile.default_action() == LinuxSeccompAction::ScmpActNotify {
        return Err(SeccompError::DefaultAction {
            action: default_name,
            reason: "SCMP_ACT_NOTIFY cannot be the default action".into(),
        });
    }
    let default = action(
        profile.default_action(),
        profile.default_errno_ret(),
        "default action",
    )?;
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| SeccompError::DefaultAction {
        action: default_name,
        reason: e.to_string(),
    })?;

    let mut arches = vec![ScmpArch::native()];
    for arch in profile.architectures().as_deref().unwrap_or(&[]) {
        let name = arch.to_string();
        let a = name
            .parse::<ScmpArch>()
            .map_err(|source| SeccompError::Arch {
                arch: name.clone(),
                source,
            })?;
        ctx.add_arch(a)
            .map_err(|source| SeccompError::Arch { arch: name, source })?;
        if !arches.contains(&a) {
            arches.push(a);
        }
    }

    let mut flags: libc::c_ulong = 0;
    for flag in profile.flags().as_deref().unwrap_or(&[]) {
        let name = flag.to_string();
        let set = match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => {
                flags |= libc::SECCOMP_FILTER_FLAG_TSYNC;
                ctx.set_ctl_tsync(true)
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => {
                flags |= libc::SECCOMP_FILTER_FLAG_LOG;
                ctx.set_ctl_log(true)
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                flags |= libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW;
                ctx.set_ctl_ssb(true)
            }
            _ => return Err(SeccompError::UnsupportedFlag { flag: name }),
        };
        set.map_err(|source| SeccompError::Flag { flag: name, source })?;
    }
    ctx.set_ctl_nnp(false)
        .map_err(|source| SeccompError::Libseccomp {
            what: "unset the no_new_privs attribute",
            source,
        })?;

    let mut notify = false;
    let mut ignored = Vec::new();
    let mut rules = 0usize;
    for rule in syscalls {
        let first = rule.names().first().map_or("", |s| s);
        let act = action(
            rule.action(),
            rule.errno_ret(),
            &format!("syscall {first:?}"),
        )?;
        let conditions = rule.args().as_deref().unwrap_or(&[]);
        for name in rule.names() {
            if name.is_empty() {
                return Err(SeccompError::EmptySyscallName);
            }
            if act == ScmpAction::Notify {
                if name == "write" {
                    return Err(SeccompError::NotifyWrite);
                }
                if profile.listener_path().is_none() {
                    return Err(SeccompError::NoListener {
                        syscall: name.clone(),
                    });
                }
            }
            let sets = condition_sets(name, conditions)?;
            if act == default {
                continue;
            }
            // Native resolution, as runc: names of other arches come back as
            // negative pseudo-numbers that libseccomp maps per arch.
            let Ok(nr) = ScmpSyscall::from_name(name) else {
                ignored.push(name.clone());
                continue;
            };
            notify |= act == ScmpAction::Notify;
            for set in &sets {
                ctx.add_rule_conditional(act, nr, set)
                    .map_err(|source| SeccompError::Rule {
                        syscall: name.clone(),
                        action: rule.action().to_string(),
                        source,
                    })?;
                rules += 1;
            }
        }
    }
    if notify {
        flags |= libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
        if flags & libc::SECCOMP_FILTER_FLAG_TSYNC != 0 {
            // TSYNC reports failures as a thread ID, which clashes with the
            // listener fd as return value unless TSYNC_ESRCH is set.
            flags |= libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH;
        }
    }
    // libseccomp's binary tree pays off for long lists (and libseccomp <=
    // 2.5.4 mishandles it with no rules at all), as runc.
    if rules > 32 {
        ctx.set_ctl_optimize(2)
            .map_err(|source| SeccompError::Libseccomp {
                what: "enable binary tree optimization",
                source,
            })?;
    }

    let mut program = if wants_enosys_stub(profile.default_action(), default) {
        enosys_stub(&arch_limits(&arches, syscalls))
    } else {
        Vec::new()
    };
    program.extend(export(&ctx)?);
    if program.len() > libc::BPF_MAXINSNS as usize {
        return Err(SeccompError::TooLarge { len: program.len() });
    }
    Ok(Filter {
        program,
        flags,
        notify,
        listener: AtomicI32::new(-1),
        ignored,
    })
}

/// The libseccomp action for an OCI action, with runc's defaults.
/// `rule` names it in errors: `syscall "name"` or `default action`.
fn action(
    act: LinuxSeccompAction,
    errno_ret: Option<u32>,
    rule: &str,
) -> Result<ScmpAction, SeccompError> {
    let ret = || -> Result<u16, SeccompError> {
        match errno_ret {
            None => Ok(libc::EPERM as u16),
            Some(e) => u16::try_from(e).map_err(|_| SeccompError::ErrnoRange {
                rule: rule.into(),
                errno: e,
            }),
        }
    };
    Ok(match act {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(i32::from(ret()?)),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(ret()?),
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
    })
}

/// The rules one syscall entry becomes, each a list of ANDed conditions.
/// Conditions on distinct arguments form one rule; if any argument is
/// compared more than once, each condition is a rule of its own (runc's
/// behaviour; libseccomp cannot AND two comparisons of one argument).
fn condition_sets(
    syscall: &str,
    args: &[LinuxSeccompArg],
) -> Result<Vec<Vec<ScmpArgCompare>>, SeccompError> {
    let mut seen = [false; 6];
    let mut repeated = false;
    let mut conds = Vec::with_capacity(args.len());
    for a in args {
        let index = a.index();
        let slot = seen.get_mut(index).ok_or_else(|| SeccompError::ArgIndex {
            syscall: syscall.into(),
            index,
        })?;
        repeated |= *slot;
        *slot = true;
        conds.push(condition(a));
    }
    Ok(if repeated {
        conds.into_iter().map(|c| vec![c]).collect()
    } else {
        vec![conds]
    })
}

/// One OCI condition as a libseccomp comparison. For SCMP_CMP_MASKED_EQ
/// `value` is the mask and `valueTwo` the expected result.
fn condition(a: &LinuxSeccompArg) -> ScmpArgCompare {
    let value_two = a.value_two().unwrap_or(0);
    let (op, datum) = match a.op() {
        LinuxSeccompOperator::ScmpCmpNe => (ScmpCompareOp::NotEqual, a.value()),
        LinuxSeccompOperator::ScmpCmpLt => (ScmpCompareOp::Less, a.value()),
        LinuxSeccompOperator::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, a.value()),
        LinuxSeccompOperator::ScmpCmpEq => (ScmpCompareOp::Equal, a.value()),
        LinuxSeccompOperator::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, a.value()),
        LinuxSeccompOperator::ScmpCmpGt => (ScmpCompareOp::Greater, a.value()),
        LinuxSeccompOperator::ScmpCmpMaskedEq => (ScmpCompareOp::MaskedEqual(a.value()), value_two),
    };
    // Index checked by condition_sets (0..=5).
    ScmpArgCompare::new(a.index() as u32, op, datum)
}

/// Write libseccomp's program to a memfd and read it back as instructions.
fn export(ctx: &ScmpFilterContext) -> Result<Vec<libc::sock_filter>, SeccompError> {
    use nix::sys::memfd::{memfd_create, MFdFlags};
    let fd = memfd_create(c"carapace-seccomp", MFdFlags::MFD_CLOEXEC)
        .map_err(|e| SeccompError::Export(e.into()))?;
    ctx.export_bpf(&fd)
        .map_err(|source| SeccompError::Libseccomp {
            what: "export the BPF program",
            source,
        })?;
    let mut file = std::fs::File::from(fd);
    let mut bytes = Vec::new();
    file.rewind()
        .and_then(|()| file.read_to_end(&mut bytes))
        .map_err(SeccompError::Export)?;
    const INSN: usize = std::mem::size_of::<libc::sock_filter>();
    if bytes.len() % INSN != 0 {
        return Err(SeccompError::Export(std::io::Error::other(format!(
            "{} bytes is not a whole number of instructions",
            bytes.len()
        ))));
    }
    // libseccomp writes host-endian `struct sock_filter`s.
    Ok(bytes
        .chunks_exact(INSN)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}

// ---- the ENOSYS stub ----------------------------------------------------

/// runc's rule: patch unless the default action lets syscalls through
/// (ALLOW, LOG, and TRACE, whose tracer should handle new syscalls), or
/// already answers ENOSYS.
fn wants_enosys_stub(oci: LinuxSeccompAction, default: ScmpAction) -> bool {
    !matches!(
        oci,
        LinuxSeccompAction::ScmpActAllow
            | LinuxSeccompAction::ScmpActLog
            | LinuxSeccompAction::ScmpActTrace
    ) && default != ScmpAction::Errno(libc::ENOSYS)
}

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The kernel's `AUDIT_ARCH_*` value for a libseccomp arch (x32 shares
/// x86_64's and is told apart by bit 30 of the syscall number).
fn audit_arch(arch: ScmpArch) -> Option<u32> {
    Some(match arch {
        ScmpArch::X86 => 0x4000_0003,
        ScmpArch::X8664 | ScmpArch::X32 => AUDIT_ARCH_X86_64,
        ScmpArch::Arm => 0x4000_0028,
        ScmpArch::Aarch64 => 0xc000_00b7,
        ScmpArch::Loongarch64 => 0xc000_0102,
        ScmpArch::M68k => 0x0000_0004,
        ScmpArch::Mips => 0x0000_0008,
        ScmpArch::Mips64 => 0x8000_0008,
        ScmpArch::Mips64N32 => 0xa000_0008,
        ScmpArch::Mipsel => 0x4000_0008,
        ScmpArch::Mipsel64 => 0xc000_0008,
        ScmpArch::Mipsel64N32 => 0xe000_0008,
        ScmpArch::Ppc => 0x0000_0014,
        ScmpArch::Ppc64 => 0x8000_0015,
        ScmpArch::Ppc64Le => 0xc000_0015,
        ScmpArch::S390 => 0x0000_0016,
        ScmpArch::S390X => 0x8000_0016,
        ScmpArch::Parisc => 0x0000_000f,
        ScmpArch::Parisc64 => 0x8000_000f,
        ScmpArch::Riscv64 => 0xc000_00f3,
        ScmpArch::Sheb => 0x0000_002a,
        ScmpArch::Sh => 0x4000_002a,
        _ => return None,
    })
}

/// Per kernel architecture: the highest syscall number the profile names.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct ArchLimit {
    /// For the arch itself (x86_64 mode on x86_64).
    max: Option<u32>,
    /// For x32 mode on x86_64.
    x32_max: Option<u32>,
    /// s390(x): syscall 0 multiplexes numbers the kernel does not know.
    s390: bool,
}

/// The highest syscall number the profile names, per `AUDIT_ARCH_*`, for
/// the arches in the filter. runc counts every entry, whatever its action.
fn arch_limits(
    arches: &[ScmpArch],
    syscalls: &[oci_spec::runtime::LinuxSyscall],
) -> BTreeMap<u32, ArchLimit> {
    let mut limits = BTreeMap::new();
    for &arch in arches {
        let Some(audit) = audit_arch(arch) else {
            continue;
        };
        let max = syscalls
            .iter()
            .flat_map(|r| r.names())
            .filter_map(|n| ScmpSyscall::from_name_by_arch(n, arch).ok())
            .filter_map(|nr| u32::try_from(nr.as_raw_syscall()).ok())
            .filter(|&nr| nr > 0)
            .max();
        let Some(max) = max else { continue };
        let l: &mut ArchLimit = limits.entry(audit).or_default();
        match arch {
            ScmpArch::X32 => l.x32_max = Some(max),
            ScmpArch::S390 | ScmpArch::S390X => {
                l.max = Some(max);
                l.s390 = true;
            }
            _ => l.max = Some(max),
        }
    }
    limits
}

const BPF_LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const BPF_JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const BPF_JGT_K: u16 = (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16;
const BPF_JSET_K: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
const BPF_JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
const BPF_RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
/// `offsetof(struct seccomp_data, nr)` and `arch`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;

/// A stub instruction; `ja` to a label is resolved once the layout is known.
#[derive(Clone, Copy)]
enum Op {
    Insn(libc::sock_filter),
    Ja(Label),
}

#[derive(Clone, Copy)]
enum Label {
    Section(usize),
    Enosys,
    Filter,
}

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> Op {
    Op::Insn(libc::sock_filter { code, jt, jf, k })
}

/// "If nr > max return ENOSYS, else run the filter." Conditional jumps only
/// ever skip one instruction; distances go in `ja`'s 32-bit offset.
fn check_max(max: Option<u32>) -> Vec<Op> {
    match max {
        Some(max) => vec![
            insn(BPF_JGT_K, 0, 1, max),
            Op::Ja(Label::Enosys),
            Op::Ja(Label::Filter),
        ],
        None => vec![Op::Ja(Label::Filter)],
    }
}

/// The program to put in front of libseccomp's: per architecture, syscall
/// numbers above the profile's highest get ENOSYS; everything else falls
/// through to libseccomp's program (which handles unknown arches itself).
fn enosys_stub(limits: &BTreeMap<u32, ArchLimit>) -> Vec<libc::sock_filter> {
    if limits.is_empty() {
        return Vec::new();
    }
    let mut head = vec![insn(BPF_LD_W_ABS, 0, 0, DATA_ARCH)];
    let mut sections = Vec::new();
    for (i, (&audit, limit)) in limits.iter().enumerate() {
        head.push(insn(BPF_JEQ_K, 0, 1, audit));
        head.push(Op::Ja(Label::Section(i)));

        let mut s = vec![insn(BPF_LD_W_ABS, 0, 0, DATA_NR)];
        if limit.s390 {
            s.push(insn(BPF_JEQ_K, 0, 1, 0));
            s.push(Op::Ja(Label::Enosys));
        }
        if audit == AUDIT_ARCH_X86_64 {
            // x32 syscalls carry bit 30; each mode has its own table.
            let native = check_max(limit.max);
            s.push(insn(BPF_JSET_K, native.len() as u8, 0, X32_SYSCALL_BIT));
            s.extend(native);
            s.extend(check_max(limit.x32_max));
        } else {
            s.extend(check_max(limit.max));
        }
        sections.push(s);
    }
    head.push(Op::Ja(Label::Filter));

    let mut starts = Vec::with_capacity(sections.len());
    let mut pos = head.len();
    for s in &sections {
        starts.push(pos);
        pos += s.len();
    }
    let enosys = pos;
    let filter = enosys + 1;
    let ops = head.into_iter().chain(sections.into_iter().flatten());
    let mut out: Vec<libc::sock_filter> = ops
        .enumerate()
        .map(|(pc, op)| match op {
            Op::Insn(i) => i,
            Op::Ja(label) => {
                let target = match label {
                    Label::Section(i) => starts[i],
                    Label::Enosys => enosys,
                    Label::Filter => filter,
                };
                libc::sock_filter {
                    code: BPF_JA,
                    jt: 0,
                    jf: 0,
                    k: (target - pc - 1) as u32,
                }
            }
        })
        .collect();
    out.push(libc::sock_filter {
        code: BPF_RET_K,
        jt: 0,
        jf: 0,
        k: libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(json).expect("profile parses")
    }

    fn err(json: serde_json::Value) -> String {
        compile(&profile(json))
            .expect_err("compile fails")
            .to_string()
    }

    /// A small classic-BPF interpreter over `struct seccomp_data`, enough for
    /// libseccomp's output and our stub, so filters are checked without
    /// loading them.
    fn run(prog: &[libc::sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = Vec::with_capacity(64);
        data.extend_from_slice(&nr.to_ne_bytes());
        data.extend_from_slice(&arch.to_ne_bytes());
        data.extend_from_slice(&0u64.to_ne_bytes()); // instruction_pointer
        for a in args {
            data.extend_from_slice(&a.to_ne_bytes());
        }
        let word = |off: u32| {
            let o = off as usize;
            u32::from_ne_bytes(data[o..o + 4].try_into().expect("in bounds"))
        };
        let (mut a, mut x, mut mem) = (0u32, 0u32, [0u32; 16]);
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            pc += 1;
            let code = u32::from(i.code);
            let src = if code & 0x08 == libc::BPF_X { x } else { i.k };
            match code & 0x07 {
                libc::BPF_LD => match code & 0xe0 {
                    libc::BPF_ABS => a = word(i.k),
                    libc::BPF_IMM => a = i.k,
                    libc::BPF_MEM => a = mem[i.k as usize],
                    m => panic!("ld mode {m:#x}"),
                },
                libc::BPF_LDX => match code & 0xe0 {
                    libc::BPF_IMM => x = i.k,
                    libc::BPF_MEM => x = mem[i.k as usize],
                    m => panic!("ldx mode {m:#x}"),
                },
                libc::BPF_ST => mem[i.k as usize] = a,
                libc::BPF_STX => mem[i.k as usize] = x,
                libc::BPF_ALU => {
                    a = match code & 0xf0 {
                        libc::BPF_ADD => a.wrapping_add(src),
                        libc::BPF_SUB => a.wrapping_sub(src),
                        libc::BPF_AND => a & src,
                        libc::BPF_OR => a | src,
                        libc::BPF_LSH => a << src,
                        libc::BPF_RSH => a >> src,
                        op => panic!("alu op {op:#x}"),
                    }
                }
                libc::BPF_JMP => {
                    let taken = match code & 0xf0 {
                        libc::BPF_JA => {
                            pc += i.k as usize;
                            continue;
                        }
                        libc::BPF_JEQ => a == src,
                        libc::BPF_JGT => a > src,
                        libc::BPF_JGE => a >= src,
                        libc::BPF_JSET => a & src != 0,
                        op => panic!("jmp op {op:#x}"),
                    };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
                libc::BPF_RET => return if code & 0x18 == libc::BPF_A { a } else { i.k },
                libc::BPF_MISC => {
                    if code & 0xf8 == libc::BPF_TAX {
                        x = a
                    } else {
                        a = x
                    }
                }
                _ => unreachable!(),
            }
        }
    }

    const RET_ALLOW: u32 = 0x7fff_0000;
    const RET_ERRNO: u32 = libc::SECCOMP_RET_ERRNO;
    const RET_KILL_PROCESS: u32 = 0x8000_0000;

    fn native_audit() -> u32 {
        audit_arch(ScmpArch::native()).expect("native arch is known")
    }

    fn nr(name: &str) -> u32 {
        ScmpSyscall::from_name(name)
            .expect("known syscall")
            .as_raw_syscall() as u32
    }

    fn eval(f: &Filter, name: &str, args: [u64; 6]) -> u32 {
        run(&f.program, native_audit(), nr(name), args)
    }

    #[test]
    fn rule_returns_its_errno_ret_and_others_pass() {
        let f = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
        })))
        .unwrap();
        assert_eq!(eval(&f, "mkdir", [0; 6]), RET_ERRNO | 38);
        assert_eq!(eval(&f, "mkdirat", [0; 6]), RET_ERRNO | 38);
        assert_eq!(eval(&f, "getpid", [0; 6]), RET_ALLOW);
        assert_eq!(f.flags, 0);
        assert!(!f.uses_notify());
        assert_eq!(f.notify_fd().unwrap(), None);
    }

    #[test]
    fn errno_without_errno_ret_is_eperm() {
        let f = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]
        })))
        .unwrap();
        assert_eq!(eval(&f, "mkdir", [0; 6]), RET_ERRNO | libc::EPERM as u32);
    }

    #[test]
    fn default_errno_ret_applies_to_the_default_action() {
        let f = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 13,
            "syscalls": [{"names": ["getpid", "close_range"], "action": "SCMP_ACT_ALLOW"}]
        })))
        .unwrap();
        assert_eq!(eval(&f, "getpid", [0; 6]), RET_ALLOW);
        assert_eq!(eval(&f, "mkdirat", [0; 6]), RET_ERRNO | 13);
    }

    #[test]
    fn unknown_syscalls_are_skipped_and_reported() {
        let f = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["no_such_syscall", "mkdir"], "action": "SCMP_ACT_KILL_PROCESS"}]
        })))
        .unwrap();
        assert_eq!(f.ignored_syscalls(), ["no_such_syscall"]);
        assert_eq!(eval(&f, "mkdir", [0; 6]), RET_KILL_PROCESS);
    }

    #[test]
    fn rules_with_the_default_action_are_skipped() {
        let f = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
                {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}
            ]
        })))
        .unwrap();
        assert_eq!(eval(&f, "mkdir", [0; 6]), RET_ERRNO | libc::EPERM as u32);
    }

    #[test]
    fn kill_is_kill_thread() {
        assert_eq!(
            action(LinuxSeccompAction::ScmpActKill, None, "x").unwrap(),
            ScmpAction::KillThread
        );
        assert_eq!(
            action(LinuxSeccompAction::ScmpActTrace, None, "x").unwrap(),
            ScmpAction::Trace(1)
        );
    }

    fn arg(index: usize, op: &str, value: u64) -> LinuxSeccompArg {
        serde_json::from_value(serde_json::json!({"index": index, "value": value, "op": op}))
            .unwrap()
    }

    #[test]
    fn conditions_on_distinct_arguments_form_one_rule() {
        let sets = condition_sets(
            "socket",
            &[arg(0, "SCMP_CMP_EQ", 1), arg(1, "SCMP_CMP_NE", 2)],
        )
        .unwrap();
        assert_eq!(
            sets,
            vec![vec![
                ScmpArgCompare::new(0, ScmpCompareOp::Equal, 1),
                ScmpArgCompare::new(1, ScmpCompareOp::NotEqual, 2)
            ]]
        );
    }

    #[test]
    fn repeated_argument_splits_every_condition_into_its_own_rule() {
        let sets = condition_sets(
            "socket",
            &[
                arg(0, "SCMP_CMP_EQ", 17),
                arg(0, "SCMP_CMP_EQ", 10),
                arg(1, "SCMP_CMP_EQ", 3),
            ],
        )
        .unwrap();
        assert_eq!(
            sets,
            vec![
                vec![ScmpArgCompare::new(0, ScmpCompareOp::Equal, 17)],
                vec![ScmpArgCompare::new(0, ScmpCompareOp::Equal, 10)],
                vec![ScmpArgCompare::new(1, ScmpCompareOp::Equal, 3)],
            ]
        );
    }

    #[test]
    fn no_conditions_is_one_unconditional_rule() {
        assert_eq!(
            condition_sets("mkdir", &[]).unwrap(),
            vec![Vec::<ScmpArgCompare>::new()]
        );
    }

    #[test]
    fn masked_eq_uses_value_as_mask_and_value_two_as_result() {
        let a: LinuxSeccompArg = serde_json::from_value(serde_json::json!(
            {"index": 0, "value": 0x7e02_0000u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}
        ))
        .unwrap();
        assert_eq!(
            condition(&a),
            ScmpArgCompare::new(0, ScmpCompareOp::MaskedEqual(0x7e02_0000), 0)
        );
    }

    #[test]
    fn argument_conditions_select_the_rule() {
        let f = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97,
                 "args": [{"index": 0, "value": 17, "op": "SCMP_CMP_EQ"},
                          {"index": 0, "value": 10, "op": "SCMP_CMP_EQ"}]},
                {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
                          {"index": 1, "value": 5, "op": "SCMP_CMP_GT"}]},
                {"names": ["clone"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 0, "value": 0x7e02_0000u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}
            ]
        })))
        .unwrap();
        let denied = RET_ERRNO | 97;
        assert_eq!(eval(&f, "socket", [17, 0, 0, 0, 0, 0]), denied);
        assert_eq!(eval(&f, "socket", [10, 0, 0, 0, 0, 0]), denied);
        assert_eq!(eval(&f, "socket", [1, 0, 0, 0, 0, 0]), RET_ALLOW);
        let eperm = RET_ERRNO | libc::EPERM as u32;
        assert_eq!(eval(&f, "personality", [8, 6, 0, 0, 0, 0]), eperm);
        assert_eq!(eval(&f, "personality", [8, 5, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(eval(&f, "personality", [0, 6, 0, 0, 0, 0]), RET_ALLOW);
        // No namespace flag set: denied (the mask matches 0); CLONE_NEWNS: allowed.
        assert_eq!(
            eval(&f, "clone", [libc::SIGCHLD as u64, 0, 0, 0, 0, 0]),
            eperm
        );
        assert_eq!(
            eval(&f, "clone", [libc::CLONE_NEWNS as u64, 0, 0, 0, 0, 0]),
            RET_ALLOW
        );
    }

    #[test]
    fn argument_index_past_five_is_rejected() {
        let e = err(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["socket"], "action": "SCMP_ACT_ERRNO",
                          "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]
        }));
        assert_eq!(
            e,
            "invalid seccomp profile: syscall \"socket\": argument index 6 is out of range (0-5)"
        );
    }

    #[test]
    fn unknown_action_is_rejected_when_parsing() {
        let r: Result<LinuxSeccomp, _> = serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_FOO"}]
        }));
        assert!(r.is_err());
    }

    #[test]
    fn architecture_libseccomp_lacks_is_named() {
        let e = err(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_LOONGARCH64"]
        }));
        assert!(
            e.starts_with("invalid seccomp profile: architecture SCMP_ARCH_LOONGARCH64 "),
            "{e}"
        );
    }

    #[test]
    fn every_oci_arch_name_is_a_libseccomp_arch_name() {
        use oci_spec::runtime::Arch::*;
        for a in [
            ScmpArchNative,
            ScmpArchX86,
            ScmpArchX86_64,
            ScmpArchX32,
            ScmpArchArm,
            ScmpArchAarch64,
            ScmpArchMips,
            ScmpArchMips64,
            ScmpArchMips64n32,
            ScmpArchMipsel,
            ScmpArchMipsel64,
            ScmpArchMipsel64n32,
            ScmpArchPpc,
            ScmpArchPpc64,
            ScmpArchPpc64le,
            ScmpArchS390,
            ScmpArchS390x,
            ScmpArchParisc,
            ScmpArchParisc64,
            ScmpArchRiscv64,
            ScmpArchLoongarch64,
            ScmpArchM68k,
            ScmpArchSh,
            ScmpArchSheb,
        ] {
            let s: ScmpArch = a.to_string().parse().unwrap_or_else(|e| panic!("{a}: {e}"));
            if a != ScmpArchNative {
                let audit = audit_arch(s).expect("audit arch");
                // OCI's values are libseccomp's, which are the kernel's but for x32.
                let want = if a == ScmpArchX32 {
                    AUDIT_ARCH_X86_64
                } else {
                    a as u32
                };
                assert_eq!(audit, want, "{a}");
            }
        }
    }

    #[test]
    fn multi_arch_profile_compiles() {
        let f = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32",
                              "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
            "syscalls": [{"names": ["read", "write", "socketcall", "_llseek", "exit_group"],
                          "action": "SCMP_ACT_ALLOW"}]
        })))
        .unwrap();
        assert!(f.ignored_syscalls().is_empty());
        // i386's socketcall (102) is allowed through the x86 branch.
        assert_eq!(run(&f.program, 0x4000_0003, 102, [0; 6]), RET_ALLOW);
    }

    #[test]
    fn flags_map_to_seccomp_flags() {
        let f = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC"]
        })))
        .unwrap();
        assert_eq!(
            f.flags,
            libc::SECCOMP_FILTER_FLAG_LOG
                | libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
                | libc::SECCOMP_FILTER_FLAG_TSYNC
        );
    }

    #[test]
    fn unsupported_flag_is_named() {
        let e = err(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
        }));
        assert_eq!(
            e,
            "invalid seccomp profile: flag SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV is not supported"
        );
    }

    #[test]
    fn notify_needs_a_listener_and_spares_write() {
        let e = err(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
        }));
        assert_eq!(e, "invalid seccomp profile: syscall \"mkdir\" uses SCMP_ACT_NOTIFY but listenerPath is not set");
        let e = err(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "/run/agent.sock",
            "syscalls": [{"names": ["write"], "action": "SCMP_ACT_NOTIFY"}]
        }));
        assert!(e.contains("\"write\""), "{e}");
        let e = err(
            serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/run/agent.sock"}),
        );
        assert_eq!(
            e,
            "invalid seccomp profile: default action SCMP_ACT_NOTIFY: SCMP_ACT_NOTIFY cannot be the default action"
        );
    }

    #[test]
    fn notify_sets_new_listener_and_is_not_loaded_yet() {
        let f = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "/run/agent.sock",
            "flags": ["SECCOMP_FILTER_FLAG_TSYNC"],
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
        })))
        .unwrap();
        assert!(f.uses_notify());
        assert_eq!(
            f.flags,
            libc::SECCOMP_FILTER_FLAG_TSYNC
                | libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
                | libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH
        );
        assert!(matches!(f.notify_fd(), Err(SeccompError::NotLoaded)));
    }

    #[test]
    fn errno_ret_out_of_range_names_the_syscall() {
        let e = err(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]
        }));
        assert_eq!(
            e,
            "invalid seccomp profile: syscall \"mkdir\": errnoRet 70000 is out of range (0-65535)"
        );
    }

    #[test]
    fn empty_syscall_name_is_rejected() {
        let e = err(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": [""], "action": "SCMP_ACT_ERRNO"}]
        }));
        assert_eq!(e, "invalid seccomp profile: empty syscall name");
    }

    #[test]
    fn first_of_two_unconditional_rules_wins() {
        // libseccomp keeps the first and ignores the second, as under runc.
        let f = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_TRAP"},
                         {"names": ["mkdir"], "action": "SCMP_ACT_ALLOW"}]
        })))
        .unwrap();
        assert_eq!(eval(&f, "mkdir", [0; 6]), 0x0003_0000);
    }

    #[test]
    fn syscalls_newer_than_the_profile_get_enosys() {
        let f = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["getpid", "close_range"], "action": "SCMP_ACT_ALLOW"}]
        })))
        .unwrap();
        let audit = native_audit();
        assert_eq!(
            run(&f.program, audit, nr("close_range") + 1, [0; 6]),
            RET_ERRNO | libc::ENOSYS as u32
        );
        assert_eq!(
            run(&f.program, audit, nr("mkdirat"), [0; 6]),
            RET_ERRNO | libc::EPERM as u32
        );
        assert_eq!(run(&f.program, audit, nr("close_range"), [0; 6]), RET_ALLOW);
    }

    #[test]
    fn only_restrictive_defaults_get_the_enosys_stub() {
        use LinuxSeccompAction::*;
        for (oci, errno, want) in [
            (ScmpActAllow, None, false),
            (ScmpActLog, None, false),
            (ScmpActTrace, None, false),
            (ScmpActErrno, Some(libc::ENOSYS as u32), false),
            (ScmpActErrno, None, true),
            (ScmpActKill, None, true),
            (ScmpActKillProcess, None, true),
            (ScmpActTrap, None, true),
        ] {
            let act = action(oci, errno, "default action").unwrap();
            assert_eq!(wants_enosys_stub(oci, act), want, "{oci} {errno:?}");
        }
    }

    #[test]
    fn enosys_stub_handles_x32_and_s390() {
        let mut limits = BTreeMap::new();
        limits.insert(
            AUDIT_ARCH_X86_64,
            ArchLimit {
                max: Some(300),
                x32_max: Some(X32_SYSCALL_BIT | 200),
                s390: false,
            },
        );
        limits.insert(
            0x8000_0016,
            ArchLimit {
                max: Some(400),
                x32_max: None,
                s390: true,
            },
        );
        let mut prog = enosys_stub(&limits);
        prog.push(libc::sock_filter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: RET_ALLOW,
        });
        let enosys = RET_ERRNO | libc::ENOSYS as u32;
        assert_eq!(run(&prog, AUDIT_ARCH_X86_64, 300, [0; 6]), RET_ALLOW);
        assert_eq!(run(&prog, AUDIT_ARCH_X86_64, 301, [0; 6]), enosys);
        assert_eq!(
            run(&prog, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT | 200, [0; 6]),
            RET_ALLOW
        );
        assert_eq!(
            run(&prog, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT | 201, [0; 6]),
            enosys
        );
        assert_eq!(run(&prog, 0x8000_0016, 0, [0; 6]), enosys);
        assert_eq!(run(&prog, 0x8000_0016, 1, [0; 6]), RET_ALLOW);
        assert_eq!(run(&prog, 0x8000_0016, 401, [0; 6]), enosys);
        assert_eq!(
            run(&prog, 0xc000_00b7, 5000, [0; 6]),
            RET_ALLOW,
            "arches without limits reach the filter"
        );

        // x86_64 without x32: x32 numbers go to the filter (bad arch there).
        let mut limits = BTreeMap::new();
        limits.insert(
            AUDIT_ARCH_X86_64,
            ArchLimit {
                max: Some(300),
                ..Default::default()
            },
        );
        let mut prog = enosys_stub(&limits);
        prog.push(libc::sock_filter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: RET_ALLOW,
        });
        assert_eq!(
            run(&prog, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT | 5, [0; 6]),
            RET_ALLOW
        );
    }

    #[test]
    fn large_allow_list_fits_the_kernel_limit() {
        // Every syscall libseccomp knows for this arch but a few, as a
        // Docker-like allow list.
        let arch = ScmpArch::native();
        let names: Vec<String> = (0..1024)
            .filter_map(|nr| {
                ScmpSyscall::from_raw_syscall(nr)
                    .get_name_by_arch(arch)
                    .ok()
            })
            .filter(|n| !matches!(n.as_str(), "mount" | "umount2" | "unshare" | "setns"))
            .collect();
        assert!(names.len() > 300);
        let f = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]
        })))
        .unwrap();
        assert!(f.program.len() <= 4096);
        assert_eq!(eval(&f, "read", [0; 6]), RET_ALLOW);
        assert_eq!(eval(&f, "unshare", [0; 6]), RET_ERRNO | libc::EPERM as u32);
    }
}
