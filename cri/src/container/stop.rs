//! StopContainer: the stop signal, the grace period, then SIGKILL.

use std::sync::Arc;
use std::time::Duration;

use super::registry::Containers;
use super::{ContainerError, Phase};

/// The number of a signal name (`SIGTERM`, `TERM`, `15`).
pub fn signal_number(name: &str) -> Option<u32> {
    if let Ok(n) = name.parse::<u32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let n = name.trim_start_matches("SIG");
    nix::sys::signal::Signal::iterator()
        .find(|s| s.as_str().trim_start_matches("SIG") == n)
        .map(|s| s as u32)
}

/// Stops the container `id`, waiting up to `timeout_secs` after the stop
/// signal before killing it. Stopping a stopped (or unknown) container
/// succeeds, as kubelet and critest expect.
pub async fn stop(cs: &Arc<Containers>, id: &str, timeout_secs: i64) -> Result<(), ContainerError> {
    let c = match cs.get(id) {
        Ok(c) => c,
        Err(ContainerError::NotFound(_)) if !id.is_empty() => return Ok(()),
        Err(e) => return Err(e),
    };
    let rec = c.record();
    let tasks = &cs.sandboxes.effects.tasks;
    match rec.phase {
        Phase::Running => {}
        Phase::Created => {
            // Never started: kill the waiting process so it exits.
            // A kill that failed would leave the wait below waiting for
            // ever: kubelet retries the stop instead. A task or shim that
            // is gone has ended.
            let exit = match tasks.kill(&rec.shim_address, &rec.id, 9, true).await {
                Ok(()) => tasks.wait(&rec.shim_address, &rec.id).await,
                Err(e) if e.is_not_found() || e.is_gone() => None,
                Err(e) => return Err(e.into()),
            };
            let _op = c.op.lock().await;
            cs.update(&c, |r| {
                if r.phase != Phase::Created {
                    return;
                }
                r.phase = Phase::Exited;
                r.exit_code = exit.map(|e| e.status as i32).unwrap_or(137);
                r.finished_at = crate::clock::now_ns();
                r.reason = super::start::reason(r.exit_code, r.oom_killed).into();
            })?;
            return Ok(());
        }
        _ => return Ok(()),
    }
    let sig = signal_number(&rec.stop_signal).unwrap_or(15);
    if timeout_secs > 0 && sig != 9 {
        match tasks.kill(&rec.shim_address, &rec.id, sig, false).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => tracing::warn!(container = %rec.id, error = %e, "stop signal"),
        }
        let waited = tokio::time::timeout(
            Duration::from_secs(timeout_secs as u64),
            tasks.wait(&rec.shim_address, &rec.id),
        )
        .await;
        if matches!(waited, Ok(Some(_))) {
            return settle(cs, id).await;
        }
    }
    match tasks.kill(&rec.shim_address, &rec.id, 9, true).await {
        Ok(()) => {
            let _ = tasks.wait(&rec.shim_address, &rec.id).await;
        }
        Err(e) if e.is_not_found() => return Ok(()),
        // Gone with its shim: the exit watcher records the unknown exit.
        Err(e) if e.is_gone() => {}
        // Waiting now could wait for ever: kubelet retries the stop.
        Err(e) => return Err(e.into()),
    }
    settle(cs, id).await
}

/// Waits until the exit watcher has recorded the exit (bounded), so a
/// StopContainer that returns is followed by an Exited status.
async fn settle(cs: &Arc<Containers>, id: &str) -> Result<(), ContainerError> {
    let c = cs.get(id)?;
    c.wait_for(Duration::from_secs(5), |r| r.phase != Phase::Running)
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names_and_numbers() {
        assert_eq!(signal_number("SIGTERM"), Some(15));
        assert_eq!(signal_number("TERM"), Some(15));
        assert_eq!(signal_number("SIGKILL"), Some(9));
        assert_eq!(signal_number("2"), Some(2));
        assert_eq!(signal_number("SIGNOPE"), None);
        assert_eq!(signal_number("99"), None);
    }
}
