//! `carapace-infra`: the process that holds a pod sandbox open, in place of
//! a pause image. It runs in an empty read-only root with no capabilities,
//! so it is freestanding (no std, no libc, static): it blocks every signal,
//! then waits for them one at a time — reaping children on SIGCHLD (it is
//! PID 1 of the pod's PID namespace when the pod shares one) and exiting 0
//! on SIGTERM or SIGINT, as the pause container does.
//!
//! Blocked signals are never dropped, so this works as a namespace's PID 1
//! too, where signals with no handler are otherwise ignored.

#![no_std]
#![no_main]

mod sys;

use sys::SigSet;

const SIGINT: u32 = 2;
const SIGTERM: u32 = 15;
const SIGCHLD: u32 = 17;

/// Entry point, called by the `_start` stub in `sys` with an aligned stack.
extern "C" fn infra_main() -> ! {
    let all = SigSet::full();
    if sys::block(&all).is_err() {
        sys::exit(1);
    }
    loop {
        match sys::wait_signal(&all) {
            Ok(SIGCHLD) => while sys::reap_one() > 0 {},
            Ok(SIGTERM) | Ok(SIGINT) => sys::exit(0),
            // Any other signal, or EINTR: keep waiting.
            _ => {}
        }
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    sys::exit(2)
}
