//! Attach to a container under a containerd shim v2, whose stdio the
//! daemon itself copies ([`crate::container::fifo_io`]): output from the
//! container's pump, input into the stdin FIFO the daemon holds open, and
//! terminal sizes through the shim's ResizePty. Same contract as
//! [`super::attach`]: output from now on, stdin closed at the end only
//! for a `stdin_once` container, a departed client ends the session.

use std::sync::Arc;

use carapace_shim::crilog::Stream;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::container::exec::ExecStdio;
use crate::container::{ContainerError, ContainerRecord, Containers};
use crate::shim_client::Shim;

use super::attach::client_gone;
use super::channel::{Input, Output};
use super::remotecommand::sizes;

/// Pumps one attach session until the container's output ends or the
/// client goes away.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    cs: &Arc<Containers>,
    rec: &ContainerRecord,
    io: ExecStdio,
    stdin_once: bool,
    stdin: Option<Input>,
    stdout: Option<Output>,
    stderr: Option<Output>,
    resize: Option<Input>,
) -> Result<(), ContainerError> {
    let pump = cs.fifo_io.get(&rec.id).ok_or_else(|| {
        ContainerError::FailedPrecondition(format!(
            "container {}: its output is not being copied",
            rec.id
        ))
    })?;
    let mut output = pump.subscribe();
    let mut inputs = Vec::new();
    if let Some(mut reader) = stdin.filter(|_| io.stdin) {
        let pump = pump.clone();
        let (address, id) = (rec.shim_address.clone(), rec.id.clone());
        inputs.push(tokio::spawn(async move {
            while let Some(data) = reader.recv().await {
                if pump.write_stdin(&data).await.is_err() {
                    return;
                }
            }
            if stdin_once {
                // The shim holds the FIFO open as well: CloseIO ends it.
                pump.close_stdin().await;
                let closed = match Shim::connect(&address).await {
                    Ok(shim) => shim.close_stdin(&id, "").await,
                    Err(e) => Err(e),
                };
                if let Err(e) = closed {
                    tracing::warn!(container = %id, error = %e, "close stdin");
                }
            }
        }));
    }
    if let Some(s) = resize {
        let mut sizes = sizes(s);
        let (address, id) = (rec.shim_address.clone(), rec.id.clone());
        inputs.push(tokio::spawn(async move {
            let Ok(shim) = Shim::connect(&address).await else {
                return;
            };
            while let Some((width, height)) = sizes.recv().await {
                if let Err(e) = shim.resize_pty(&id, "", width, height).await {
                    tracing::debug!(container = %id, error = %e, "resize terminal");
                }
            }
        }));
    }
    let (mut out, mut err) = (stdout, stderr);
    if out.is_none() && err.is_none() {
        // Input only: the session lasts as long as the client's stdin.
        if let Some(first) = inputs.first_mut() {
            let _ = first.await;
        }
    } else {
        let mut ended = false;
        loop {
            let next = if ended {
                // Every chunk is sent before its stream counts as ended:
                // pass on what is left, then stop.
                match output.try_recv() {
                    Ok(c) => Ok(c),
                    Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                    Err(_) => break,
                }
            } else {
                tokio::select! {
                    next = output.recv() => next,
                    () = pump.ended() => {
                        ended = true;
                        continue;
                    }
                    () = client_gone(out.as_ref(), err.as_ref()) => {
                        tracing::debug!(container = %rec.id, "attach client left");
                        break;
                    }
                }
            };
            let (stream, data) = match next {
                Ok(c) => c,
                Err(RecvError::Lagged(n)) => {
                    tracing::debug!(container = %rec.id, lost = n, "attach session fell behind");
                    continue;
                }
                Err(RecvError::Closed) => break,
            };
            let to = match stream {
                Stream::Stderr => err.as_mut(),
                Stream::Stdout => out.as_mut(),
            };
            if let Some(w) = to {
                if w.send(data).await.is_err() {
                    break;
                }
            }
        }
    }
    for w in [out.as_mut(), err.as_mut()].into_iter().flatten() {
        w.finish();
    }
    for t in inputs {
        t.abort();
    }
    Ok(())
}
