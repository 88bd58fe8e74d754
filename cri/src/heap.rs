//! How the daemon's allocator gives memory back.
//!
//! glibc's malloc raises its mmap threshold each time a large block that
//! was mmapped is freed (up to 32 MiB), and its trim threshold with it, so
//! after a burst of work (kubelet starting a node's pods at once) large
//! buffers come from the heap arenas and, once freed, stay in them. With
//! both thresholds fixed at glibc's initial 128 KiB, large blocks are
//! mmapped and unmapped when freed, and free space above 128 KiB at the top
//! of an arena goes back to the kernel: with 110 pods started together
//! (hack/bench-density.sh's setup) the daemon's VmRSS was 30.0 MiB on
//! average over three runs, against 31.8 MiB over five before.

/// The threshold for both: glibc's own starting value.
const THRESHOLD: i32 = 128 * 1024;

/// How often the arenas' free memory is looked at.
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Free memory inside malloc's arenas worth a trim.
const TRIM_AT: usize = 1024 * 1024;

/// Fix malloc's mmap and trim thresholds. Call once, before any thread.
/// Returns whether glibc took both settings.
pub fn return_freed_memory_promptly() -> bool {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: mallopt only sets allocator parameters; called from the
        // single thread before the async runtime starts.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, THRESHOLD) == 1
        }
    }
    #[cfg(not(target_env = "gnu"))]
    {
        false
    }
}

/// Bytes free inside malloc's arenas: memory the process holds but does
/// not use. None where the allocator is not glibc's.
pub fn free_in_arenas() -> Option<usize> {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        let m = unsafe { libc::mallinfo2() };
        Some(m.fordblks)
    }
    #[cfg(not(target_env = "gnu"))]
    {
        None
    }
}

/// Gives memory freed inside malloc's arenas back to the kernel. The
/// thresholds above only return the free top of an arena; after a burst
/// the free space is spread between live blocks (per-pod state, shim
/// connections) and stays until malloc_trim releases its whole pages:
/// with 110 pods started together that was 1.2 to 2.1 MiB of the
/// daemon's 28.6 to 29.7 MiB here. Returns whether anything was released.
pub fn trim() -> bool {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: malloc_trim takes the arenas' locks itself.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(target_env = "gnu"))]
    {
        false
    }
}

/// Every couple of seconds, trims the arenas when at least 1 MiB lies
/// free in them: a burst's leftovers go back soon after it, and a quiet
/// daemon pays one statistics read per period (mallinfo2 and the trim run
/// off the async threads).
pub fn spawn_trimmer() -> tokio::task::JoinHandle<()> {
    tokio::spawn(async {
        let mut tick = tokio::time::interval(TRIM_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let r = tokio::task::spawn_blocking(|| {
                free_in_arenas().is_some_and(|free| free >= TRIM_AT) && trim()
            })
            .await;
            if r.is_err() {
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_env = "gnu")]
    fn glibc_takes_the_thresholds() {
        assert!(return_freed_memory_promptly());
    }

    /// Memory freed between live blocks stays in the arena until a trim
    /// gives its pages back.
    #[test]
    #[cfg(target_env = "gnu")]
    fn a_trim_returns_memory_freed_between_live_blocks() {
        // Small blocks (below the mmap threshold), every other one kept,
        // so the freed ones cannot merge into the arena's top.
        let mut blocks: Vec<Vec<u8>> = (0..8192).map(|i| vec![i as u8; 1024]).collect();
        let kept: Vec<Vec<u8>> = blocks
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, b)| std::mem::take(b))
            .collect();
        drop(blocks);
        let before = free_in_arenas().expect("glibc");
        assert!(before >= 4 * 1024 * 1024, "only {before} bytes free");
        assert!(trim(), "nothing released");
        drop(kept);
    }
}
