//! The four system calls the infra process makes, without libc. Each
//! `unsafe` block is one raw `syscall` instruction whose pointer arguments
//! point at memory this module owns for the duration of the call.

use core::arch::{asm, global_asm};

#[cfg(target_arch = "x86_64")]
mod nr {
    pub const RT_SIGPROCMASK: usize = 14;
    pub const WAIT4: usize = 61;
    pub const RT_SIGTIMEDWAIT: usize = 128;
    pub const EXIT_GROUP: usize = 231;
}

#[cfg(target_arch = "aarch64")]
mod nr {
    pub const EXIT_GROUP: usize = 94;
    pub const RT_SIGPROCMASK: usize = 135;
    pub const RT_SIGTIMEDWAIT: usize = 137;
    pub const WAIT4: usize = 260;
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("carapace-infra supports x86_64 and aarch64");

// The kernel enters `_start` with the stack pointer at argc; align it for
// the C calling convention and call into Rust. It never returns.
#[cfg(target_arch = "x86_64")]
global_asm!(
    ".globl _start",
    "_start:",
    "xor rbp, rbp",
    "and rsp, -16",
    "call {entry}",
    "ud2",
    entry = sym crate::infra_main,
);

#[cfg(target_arch = "aarch64")]
global_asm!(
    ".globl _start",
    "_start:",
    "mov x29, xzr",
    "mov x30, xzr",
    "mov x9, sp",
    "and sp, x9, #-16",
    "bl {entry}",
    "brk #0",
    entry = sym crate::infra_main,
);

/// The kernel's signal set (64 signals, 8 bytes).
pub struct SigSet(u64);

impl SigSet {
    /// Every signal (the kernel ignores SIGKILL and SIGSTOP in a mask).
    pub fn full() -> SigSet {
        SigSet(!0)
    }
}

/// The size of the kernel's sigset_t, passed to the rt_sig* calls.
const SIGSET_SIZE: usize = 8;

#[cfg(target_arch = "x86_64")]
fn syscall4(n: usize, a: usize, b: usize, c: usize, d: usize) -> isize {
    let ret: isize;
    // SAFETY: a raw system call; every caller passes either null or a
    // pointer to memory it owns and keeps alive across the call. rcx and
    // r11 are clobbered by the `syscall` instruction.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") n as isize => ret,
            in("rdi") a, in("rsi") b, in("rdx") c, in("r10") d,
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

#[cfg(target_arch = "aarch64")]
fn syscall4(n: usize, a: usize, b: usize, c: usize, d: usize) -> isize {
    let ret: isize;
    // SAFETY: as on x86_64: pointers passed are null or owned by the caller
    // for the duration of the call.
    unsafe {
        asm!(
            "svc 0",
            in("x8") n,
            inlateout("x0") a as isize => ret,
            in("x1") b, in("x2") c, in("x3") d,
            options(nostack),
        );
    }
    ret
}

/// Blocks every signal in `set` for this (only) thread.
pub fn block(set: &SigSet) -> Result<(), isize> {
    let r = syscall4(
        nr::RT_SIGPROCMASK,
        0, // SIG_BLOCK
        &set.0 as *const u64 as usize,
        0,
        SIGSET_SIZE,
    );
    if r < 0 {
        Err(r)
    } else {
        Ok(())
    }
}

/// Waits for one of the blocked signals in `set` and returns its number.
pub fn wait_signal(set: &SigSet) -> Result<u32, isize> {
    // siginfo_t is 128 bytes; only the number (the return value) is used.
    // Left uninitialised: there is no memset to clear it with, and the
    // kernel only writes it.
    let mut info = core::mem::MaybeUninit::<[u64; 16]>::uninit();
    let r = syscall4(
        nr::RT_SIGTIMEDWAIT,
        &set.0 as *const u64 as usize,
        info.as_mut_ptr() as usize,
        0, // no timeout
        SIGSET_SIZE,
    );
    if r < 0 {
        Err(r)
    } else {
        Ok(r as u32)
    }
}

/// Reaps one exited child without blocking: its PID, 0 if none has
/// exited, negative when there are no children.
pub fn reap_one() -> isize {
    syscall4(nr::WAIT4, usize::MAX, 0, 1 /* WNOHANG */, 0)
}

/// Ends the process with `code`.
pub fn exit(code: i32) -> ! {
    syscall4(nr::EXIT_GROUP, code as usize, 0, 0, 0);
    // exit_group does not return; should it ever, spin rather than run on.
    #[allow(clippy::empty_loop)]
    loop {}
}
