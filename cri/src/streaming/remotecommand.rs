//! Kubernetes' remote-command protocol (what `kubectl exec`, `crictl exec`
//! and kubelet's proxy speak), and its SPDY transport: the client opens one
//! stream per channel — `error`, and `stdin`, `stdout`, `stderr`, `resize` as the
//! request asks — tagged by a `streamType` header; the server pumps them
//! to and from the process and, when it ends, writes how it ended on the
//! error stream (protocol v4: a metav1.Status with the exit code; older
//! protocols: a text message only on failure), then closes everything.
//! [`run`] is that process side for either transport; the WebSocket
//! channels reach it through `websocket::remotecommand`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;

use crate::container::exec::{self, ExecSession, ExecStdio};
use crate::container::Containers;

use super::channel::{Input, Output};
use super::spdy::{Session, SpdyStream};

/// The remote-command protocols served, newest first (client order wins
/// when negotiating, as in Kubernetes' httpstream).
pub const PROTOCOLS: [&str; 4] = [
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];

/// How long the client has to open its streams (kubelet's default).
const STREAM_CREATION: Duration = Duration::from_secs(30);

/// Hang guard for output still arriving after the process exited.
const DRAIN_GUARD: Duration = Duration::from_secs(10);

/// The streams the client opened, by `streamType`.
#[derive(Default)]
struct Streams {
    error: Option<SpdyStream>,
    stdin: Option<SpdyStream>,
    stdout: Option<SpdyStream>,
    stderr: Option<SpdyStream>,
    resize: Option<SpdyStream>,
}

impl Streams {
    /// The directions of each stream that are used: the client writes
    /// stdin and resize, the server the rest.
    fn into_stdio(self) -> Stdio {
        let input = |s: Option<SpdyStream>| s.map(|s| Input::Spdy(s.into_parts().1));
        let output = |s: Option<SpdyStream>| s.map(|s| Output::Spdy(s.into_parts().2));
        Stdio {
            error: output(self.error),
            stdin: input(self.stdin),
            stdout: output(self.stdout),
            stderr: output(self.stderr),
            resize: input(self.resize),
        }
    }
}

/// The channels of one remote-command session, whichever transport
/// carries them; None for those the request does not use.
#[derive(Debug, Default)]
pub struct Stdio {
    /// Where how it ended is written.
    pub error: Option<Output>,
    /// The client's stdin.
    pub stdin: Option<Input>,
    /// The process's stdout (with a terminal: all its output).
    pub stdout: Option<Output>,
    /// The process's stderr.
    pub stderr: Option<Output>,
    /// Terminal sizes, JSON `{"Width":W,"Height":H}` back to back.
    pub resize: Option<Input>,
}

/// How the outcome is reported on the error channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusStyle {
    /// v4 and later: a metav1.Status JSON, also for success.
    Status,
    /// Older protocols: a text message, only on failure.
    Text,
}

/// The first protocol in the client's list that is served; None when
/// there is no overlap. A client that offers none gets the oldest
/// (`channel.k8s.io`), as Kubernetes treats it.
pub fn negotiate<'a>(offered: impl IntoIterator<Item = &'a str>) -> Option<&'static str> {
    let offered: Vec<&str> = offered
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    if offered.is_empty() {
        return Some("channel.k8s.io");
    }
    offered
        .iter()
        .find_map(|o| PROTOCOLS.iter().find(|p| *p == o).copied())
}

/// The metav1.Status v4 writes on the error stream for an exit code.
pub fn exit_status_json(code: i32) -> String {
    if code == 0 {
        return r#"{"metadata":{},"status":"Success"}"#.to_string();
    }
    serde_json::json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: exit status {code}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
    .to_string()
}

/// The metav1.Status v4 writes for a failure that is not an exit code.
pub fn error_status_json(message: &str) -> String {
    serde_json::json!({
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "InternalError",
        "code": 500,
    })
    .to_string()
}

/// What a remote-command session drives.
pub enum Job {
    /// A new process in the container (Exec).
    Exec {
        /// The container.
        container_id: String,
        /// The command.
        cmd: Vec<String>,
        /// The stdio asked for.
        io: ExecStdio,
    },
    /// The container's own process (Attach).
    Attach {
        /// The container.
        container_id: String,
        /// The stdio asked for.
        io: ExecStdio,
        /// Whether the container's stdin closes when this client's does.
        stdin_once: bool,
    },
}

impl Job {
    /// The container it runs in.
    pub fn container_id(&self) -> &str {
        match self {
            Job::Exec { container_id, .. } | Job::Attach { container_id, .. } => container_id,
        }
    }

    /// The stdio the request asked for.
    pub fn io(&self) -> &ExecStdio {
        match self {
            Job::Exec { io, .. } | Job::Attach { io, .. } => io,
        }
    }
}

/// Serves one remote-command session over SPDY: accepts the streams,
/// then [`run`]s the job on them.
pub async fn serve(mut session: Session, protocol: &'static str, cs: Arc<Containers>, job: Job) {
    let streams = match accept_streams(&mut session, job.io(), protocol).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(container = %job.container_id(), error = %e, "streams");
            session.close();
            return;
        }
    };
    let style = if protocol == PROTOCOLS[0] {
        StatusStyle::Status
    } else {
        StatusStyle::Text
    };
    run(&cs, &job, streams.into_stdio(), style).await;
    session.close();
    let _ = session.wait().await;
}

/// Runs or attaches to the process, pumps its stdio through `stdio`, and
/// writes how it ended on the error channel in `style`. The transport is
/// the caller's to close afterwards.
pub async fn run(cs: &Arc<Containers>, job: &Job, stdio: Stdio, style: StatusStyle) {
    let Stdio {
        mut error,
        stdin,
        stdout,
        stderr,
        resize,
    } = stdio;
    let result = match job {
        Job::Exec {
            container_id,
            cmd,
            io,
        } => match exec::start(cs, container_id, cmd, *io).await {
            Ok(mut proc) => {
                let code = pump(&mut proc, stdin, stdout, stderr, resize).await;
                proc.finish().await;
                code.map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        },
        Job::Attach {
            container_id,
            io,
            stdin_once,
        } => super::attach::run(
            cs,
            container_id,
            *io,
            *stdin_once,
            stdin,
            stdout,
            stderr,
            resize,
        )
        .await
        .map(|()| 0)
        .map_err(|e| e.to_string()),
    };
    if let Some(err) = error.as_mut() {
        if let Some(m) = status_message(&result, style) {
            let _ = err.send(Bytes::from(m)).await;
        }
        err.finish();
    }
    tracing::info!(container = %job.container_id(), result = ?result, "stream session ended");
}

/// What the error channel says for `result` in `style`; None for
/// nothing at all.
fn status_message(result: &Result<i32, String>, style: StatusStyle) -> Option<String> {
    match (result, style) {
        (Ok(code), StatusStyle::Status) => Some(exit_status_json(*code)),
        (Err(m), StatusStyle::Status) => Some(error_status_json(m)),
        (Ok(0), StatusStyle::Text) => None,
        (Ok(code), StatusStyle::Text) => Some(format!(
            "command terminated with non-zero exit code: exit status {code}"
        )),
        (Err(m), StatusStyle::Text) => Some(m.clone()),
    }
}

/// Waits for the streams the request needs (the error stream always).
async fn accept_streams(
    session: &mut Session,
    io: &ExecStdio,
    protocol: &str,
) -> Result<Streams, String> {
    let resize_wanted = io.tty && protocol != "channel.k8s.io" && protocol != "v2.channel.k8s.io";
    let want = |s: &Streams| {
        s.error.is_some()
            && (!io.stdin || s.stdin.is_some())
            && (!io.stdout || s.stdout.is_some())
            && (!io.stderr || io.tty || s.stderr.is_some())
            && (!resize_wanted || s.resize.is_some())
    };
    let mut s = Streams::default();
    let deadline = tokio::time::Instant::now() + STREAM_CREATION;
    while !want(&s) {
        let stream = tokio::time::timeout_at(deadline, session.accept())
            .await
            .map_err(|_| "timed out waiting for the client's streams".to_string())?
            .ok_or_else(|| "client left before opening its streams".to_string())?;
        let kind = stream.headers().get("streamType").unwrap_or("").to_string();
        let slot = match kind.as_str() {
            "error" => &mut s.error,
            "stdin" => &mut s.stdin,
            "stdout" => &mut s.stdout,
            "stderr" => &mut s.stderr,
            "resize" => &mut s.resize,
            other => return Err(format!("unexpected stream type {other:?}")),
        };
        *slot = Some(stream);
    }
    Ok(s)
}

async fn copy_in(mut from: Input, mut to: pipe::Sender) {
    while let Some(data) = from.recv().await {
        if to.write_all(&data).await.is_err() {
            return;
        }
    }
    // End of the client's stdin: dropping `to` closes the process's.
}

async fn copy_out(mut from: pipe::Receiver, mut to: Output) {
    let mut buf = vec![0u8; 32 << 10];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                    break;
                }
            }
        }
    }
    to.finish();
}

/// Terminal sizes as the client sends them: JSON objects, back to back.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Size {
    width: u32,
    height: u32,
}

/// The terminal sizes a client sends on its resize stream, as they
/// complete; the channel ends with the stream.
pub(super) fn sizes(mut reader: Input) -> tokio::sync::mpsc::Receiver<(u32, u32)> {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        let mut buf = Vec::new();
        while let Some(data) = reader.recv().await {
            buf.extend_from_slice(&data);
            for size in take_sizes(&mut buf) {
                if tx.send(size).await.is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// Splits the complete JSON sizes off the front of `buf`.
fn take_sizes(buf: &mut Vec<u8>) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let mut it = serde_json::Deserializer::from_slice(buf).into_iter::<Size>();
    let mut used = 0;
    while let Some(Ok(s)) = it.next() {
        used = it.byte_offset();
        out.push((s.width, s.height));
    }
    buf.drain(..used);
    out
}

async fn pump(
    proc: &mut ExecSession,
    stdin: Option<Input>,
    stdout: Option<Output>,
    stderr: Option<Output>,
    resize: Option<Input>,
) -> Result<i32, crate::container::ContainerError> {
    let mut tasks = Vec::new();
    if let (Some(s), Some(tx)) = (stdin, proc.stdin.take()) {
        let closer = proc.stdin_closer();
        tokio::spawn(async move {
            copy_in(s, tx).await;
            closer.close().await;
        });
    }
    for (s, rx) in [(stdout, proc.stdout.take()), (stderr, proc.stderr.take())] {
        match (s, rx) {
            (Some(s), Some(rx)) => tasks.push(tokio::spawn(copy_out(rx, s))),
            (Some(mut s), None) => s.finish(),
            _ => {}
        }
    }
    let resizer = resize.map(|s| {
        let mut sizes = sizes(s);
        let r = proc.resizer();
        tokio::spawn(async move {
            while let Some((w, h)) = sizes.recv().await {
                if let Err(e) = r.resize(w, h).await {
                    tracing::debug!(error = %e, "resize exec terminal");
                }
            }
        })
    });
    let code = proc.wait().await;
    if let Some(r) = resizer {
        r.abort();
    }
    let drain = async {
        for t in tasks {
            let _ = t.await;
        }
    };
    if tokio::time::timeout(DRAIN_GUARD, drain).await.is_err() {
        tracing::warn!("exec output still open after exit; closing the streams");
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clients_order_wins_among_served_protocols() {
        assert_eq!(
            negotiate(["v4.channel.k8s.io", "v3.channel.k8s.io"]),
            Some("v4.channel.k8s.io")
        );
        assert_eq!(
            negotiate(["v5.channel.k8s.io", "v2.channel.k8s.io"]),
            Some("v2.channel.k8s.io")
        );
        assert_eq!(
            negotiate(["v3.channel.k8s.io, v4.channel.k8s.io"]),
            Some("v3.channel.k8s.io")
        );
        assert_eq!(negotiate(["portforward.k8s.io"]), None);
        assert_eq!(negotiate([]), Some("channel.k8s.io"));
    }

    #[test]
    fn exit_codes_become_kubernetes_statuses() {
        let ok: serde_json::Value = serde_json::from_str(&exit_status_json(0)).expect("json");
        assert_eq!(ok["status"], "Success");
        let bad: serde_json::Value = serde_json::from_str(&exit_status_json(3)).expect("json");
        assert_eq!(bad["status"], "Failure");
        assert_eq!(bad["reason"], "NonZeroExitCode");
        assert_eq!(bad["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(bad["details"]["causes"][0]["message"], "3");
    }

    #[test]
    fn old_protocols_report_failures_only_and_as_text() {
        let ok = status_message(&Ok(0), StatusStyle::Status).expect("a Status");
        assert!(ok.contains("Success"), "{ok}");
        assert_eq!(status_message(&Ok(0), StatusStyle::Text), None);
        assert_eq!(
            status_message(&Ok(2), StatusStyle::Text).as_deref(),
            Some("command terminated with non-zero exit code: exit status 2")
        );
        assert_eq!(
            status_message(&Err("no such container".into()), StatusStyle::Text).as_deref(),
            Some("no such container")
        );
        let err = status_message(&Err("boom".into()), StatusStyle::Status).expect("a Status");
        let v: serde_json::Value = serde_json::from_str(&err).expect("json");
        assert_eq!(v["reason"], "InternalError");
        assert_eq!(v["message"], "boom");
    }

    #[test]
    fn sizes_are_split_off_as_they_complete() {
        let mut buf = br#"{"Width":80,"Height":24}{"Width":100,"He"#.to_vec();
        assert_eq!(take_sizes(&mut buf), vec![(80, 24)]);
        buf.extend_from_slice(br#"ight":30}"#);
        assert_eq!(take_sizes(&mut buf), vec![(100, 30)]);
        assert!(buf.is_empty());
    }
}
