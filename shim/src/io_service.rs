//! The shim's own ttrpc service (`carapace.shim.v1.Io`, proto/): log
//! reopening for kubelet's rotation and live attach to a process's stdio,
//! what a CRI daemon needs beyond containerd's Task API.

use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
use containerd_shim_protos::protobuf::EnumOrUnknown;
use containerd_shim_protos::ttrpc;
use containerd_shim_protos::ttrpc::r#async::{ServerStream, TtrpcContext};

use crate::crilog::Stream;
use crate::error::Error;
use crate::proto::io::{attach_output, AttachInput, AttachOutput, ReopenLogRequest};
use crate::proto::io_ttrpc::Io;
use crate::stdio::ProcessIo;
use crate::task::TaskService;

/// The Io service, sharing the Task service's processes.
pub struct IoService {
    task: TaskService,
}

impl IoService {
    /// Serves the processes of `task`.
    pub fn new(task: TaskService) -> Self {
        IoService { task }
    }
}

/// Applies one client message: stdin bytes, a stdin close, a resize.
async fn apply(io: &ProcessIo, m: &AttachInput) -> Result<(), Error> {
    if !m.stdin_data.is_empty() {
        io.write_stdin(&m.stdin_data).await?;
    }
    if m.width > 0 && m.height > 0 {
        io.resize(m.width, m.height)?;
    }
    if m.close_stdin {
        io.close_stdin().await;
    }
    Ok(())
}

#[async_trait]
impl Io for IoService {
    async fn reopen_log(&self, _ctx: &TtrpcContext, req: ReopenLogRequest) -> ttrpc::Result<Empty> {
        self.task
            .io_of(&req.id, &req.exec_id)
            .await?
            .reopen_logs()?;
        Ok(Empty::new())
    }

    async fn attach(
        &self,
        _ctx: &TtrpcContext,
        stream: ServerStream<AttachOutput, AttachInput>,
    ) -> ttrpc::Result<()> {
        let (tx, mut rx) = stream.split();
        let first = rx.recv().await?.ok_or_else(|| {
            Error::InvalidArgument("attach closed before naming a process".into())
        })?;
        if !(first.stdin || first.stdout || first.stderr) {
            return Err(Error::InvalidArgument(
                "attach needs at least one of stdin, stdout, stderr".into(),
            )
            .into());
        }
        let io: Arc<ProcessIo> = self.task.io_of(&first.id, &first.exec_id).await?;
        if first.stdin && !io.has_stdin() {
            return Err(Error::FailedPrecondition(format!(
                "process {:?}/{:?} was created without stdin",
                first.id, first.exec_id
            ))
            .into());
        }
        let wants_output = first.stdout || first.stderr;
        let mut out = if wants_output {
            match io.attach(first.stdout, first.stderr) {
                Some(a) => Some(a),
                // The output already ended: nothing will ever come.
                None => return Ok(()),
            }
        } else {
            None
        };
        apply(&io, &first).await?;
        let mut input_open = true;
        loop {
            tokio::select! {
                chunk = async {
                    match out.as_mut() {
                        Some(a) => a.rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    let Some((stream, data)) = chunk else { break };
                    let msg = AttachOutput {
                        stream: EnumOrUnknown::new(match stream {
                            Stream::Stdout => attach_output::Stream::STDOUT,
                            Stream::Stderr => attach_output::Stream::STDERR,
                        }),
                        data,
                        ..Default::default()
                    };
                    if tx.send(&msg).await.is_err() {
                        break;
                    }
                }
                m = rx.recv(), if input_open => {
                    match m {
                        Ok(Some(m)) => {
                            if first.stdin {
                                apply(&io, &m).await?;
                            } else if m.width > 0 && m.height > 0 {
                                io.resize(m.width, m.height)?;
                            }
                        }
                        // The client finished sending; keep streaming output.
                        Ok(None) | Err(_) => {
                            input_open = false;
                            if !wants_output {
                                break;
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
