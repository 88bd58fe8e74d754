//! Attach over a remote-command session: the container's own process's
//! live output to the client's stdout/stderr channels, the client's stdin
//! and terminal sizes to it, through the shim's `carapace.shim.v1.Io`
//! Attach stream. Output is what the process writes from now on (the past
//! is in the CRI log); closing the client's stdin closes the container's
//! only for a `stdin_once` container, as kubelet expects. A client that
//! goes away ends the session at once, even while the container is
//! silent, and with it the shim's attach stream.

use std::sync::Arc;

use bytes::Bytes;
use carapace_shim::proto::io::{attach_output, AttachInput};

use crate::container::exec::ExecStdio;
use crate::container::{ContainerError, Containers};
use crate::shim_client::Shim;

use super::channel::{Input, Output};
use super::remotecommand::sizes;

/// Pumps one attach session until the process's output ends or the client
/// goes away.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    cs: &Arc<Containers>,
    id: &str,
    io: ExecStdio,
    stdin_once: bool,
    stdin: Option<Input>,
    stdout: Option<Output>,
    stderr: Option<Output>,
    resize: Option<Input>,
) -> Result<(), ContainerError> {
    let rec = cs.get(id)?.record();
    rec.ensure_running()?;
    if rec.shim.is_v2() {
        return super::attach_fifo::run(cs, &rec, io, stdin_once, stdin, stdout, stderr, resize)
            .await;
    }
    let shim = Shim::connect(&rec.shim_address)
        .await
        .map_err(|e| ContainerError::from_shim(&rec.id, e))?;
    let stream = shim
        .attach(&rec.id, "", (io.stdin, io.stdout, io.stderr && !io.tty))
        .await
        .map_err(|e| ContainerError::from_shim(&rec.id, e))?;
    let (tx, mut rx) = stream.split();
    let mut inputs = Vec::new();
    if let Some(mut reader) = stdin {
        let tx = tx.clone();
        inputs.push(tokio::spawn(async move {
            while let Some(data) = reader.recv().await {
                let m = AttachInput {
                    stdin_data: data.to_vec(),
                    ..Default::default()
                };
                if tx.send(&m).await.is_err() {
                    return;
                }
            }
            if stdin_once {
                let m = AttachInput {
                    close_stdin: true,
                    ..Default::default()
                };
                let _ = tx.send(&m).await;
            }
        }));
    }
    if let Some(s) = resize {
        let mut sizes = sizes(s);
        let tx = tx.clone();
        inputs.push(tokio::spawn(async move {
            while let Some((width, height)) = sizes.recv().await {
                let m = AttachInput {
                    width,
                    height,
                    ..Default::default()
                };
                if tx.send(&m).await.is_err() {
                    return;
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
        // Output ends with the process (the shim closes the stream), or
        // with the client: one that leaves while the container is silent
        // is noticed by its channels closing, not by a failed write, so
        // the shim's attach stream is not held for nobody.
        loop {
            let next = tokio::select! {
                next = rx.recv() => next,
                () = client_gone(out.as_ref(), err.as_ref()) => {
                    tracing::debug!(container = %rec.id, "attach client left");
                    break;
                }
            };
            let chunk = match next {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(container = %rec.id, error = %e, "attach output ended");
                    break;
                }
            };
            let to = match chunk.stream.enum_value_or_default() {
                attach_output::Stream::STDERR => err.as_mut().or(out.as_mut()),
                attach_output::Stream::STDOUT => out.as_mut(),
            };
            if let Some(w) = to {
                if w.send(Bytes::from(chunk.data)).await.is_err() {
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
    let _ = tx.close_send().await;
    Ok(())
}

/// Resolves once either output channel can no longer reach the client
/// (never, with neither).
pub(super) async fn client_gone(out: Option<&Output>, err: Option<&Output>) {
    async fn closed(o: Option<&Output>) {
        match o {
            Some(o) => o.closed().await,
            None => std::future::pending().await,
        }
    }
    tokio::select! {
        () = closed(out) => {}
        () = closed(err) => {}
    }
}
