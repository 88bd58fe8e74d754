//! `Exec`: checks the request and answers with a single-use URL on the
//! streaming server, where the client runs the command interactively.

use std::sync::Arc;

use k8s_cri::v1 as cri;
use tonic::Status;

use crate::container::Containers;
use crate::streaming::server::StreamingServer;
use crate::streaming::tokens::Pending;

/// Answers Exec with the URL to stream at.
pub fn handle(
    cs: &Arc<Containers>,
    streaming: &StreamingServer,
    req: cri::ExecRequest,
) -> Result<cri::ExecResponse, Status> {
    log_request(&req);
    let rec = cs.get(&req.container_id)?.record();
    rec.ensure_running()?;
    if req.cmd.first().is_none_or(|c| c.is_empty()) {
        return Err(Status::invalid_argument("exec needs a command"));
    }
    check_stdio(req.stdin, req.stdout, req.stderr, req.tty)?;
    let req = cri::ExecRequest {
        container_id: rec.id,
        ..req
    };
    let url = stream_url(streaming, Pending::Exec(req))?;
    Ok(cri::ExecResponse { url })
}

/// Logs an Exec request: the container at info level, the command only at
/// debug, since it may carry secrets (a token in a curl header, a password
/// for a database client).
fn log_request(req: &cri::ExecRequest) {
    tracing::info!(container = %req.container_id, tty = req.tty, "Exec");
    tracing::debug!(container = %req.container_id, cmd = ?req.cmd, "Exec command");
}

/// The stdio rules Exec and Attach share: some stream, and no stderr with
/// a terminal (it has one output).
pub(super) fn check_stdio(
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
) -> Result<(), Status> {
    if !(stdin || stdout || stderr) {
        return Err(Status::invalid_argument(
            "one of stdin, stdout, or stderr must be set",
        ));
    }
    if tty && stderr {
        return Err(Status::invalid_argument(
            "tty and stderr cannot both be true",
        ));
    }
    Ok(())
}

/// A single-use streaming URL for `p`.
pub(super) fn stream_url(streaming: &StreamingServer, p: Pending) -> Result<String, Status> {
    streaming
        .url_for(p)
        .map_err(|e| Status::internal(format!("streaming token: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// What `log_request` writes with the subscriber at `level`.
    fn logged_at(level: tracing::Level, req: &cri::ExecRequest) -> String {
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_ansi(false)
            .with_writer(move || SharedBuf(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || log_request(req));
        let text = out.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&text).into_owned()
    }

    struct SharedBuf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for SharedBuf {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut b) = self.0.lock() {
                b.extend_from_slice(data);
            }
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn exec_command_is_not_logged_at_info() {
        let req = cri::ExecRequest {
            container_id: "c0ffee".into(),
            cmd: vec!["mysql".into(), "--password=s3cret".into()],
            stdout: true,
            ..Default::default()
        };
        let info = logged_at(tracing::Level::INFO, &req);
        assert!(info.contains("c0ffee"), "the container is logged: {info}");
        assert!(
            !info.contains("s3cret"),
            "the command leaked at info: {info}"
        );
        let debug = logged_at(tracing::Level::DEBUG, &req);
        assert!(debug.contains("s3cret"), "debug keeps the command: {debug}");
    }
}
