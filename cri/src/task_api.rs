//! The shim v2 Task API client under either of its service names:
//! `containerd.task.v3.Task` (containerd 2.x shims, and carapace-shim,
//! which serves both) or `containerd.task.v2.Task` (containerd 1.x shims,
//! such as Debian's `containerd-shim-runc-v2` and Kata's), whose messages
//! are the same. Which name a shim serves is learnt when it is started
//! (its `start` output says) and kept per address ([`note`]), and again
//! from its bundle after a daemon restart ([`relearn`]).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;

use containerd_shim_protos::api;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim_async::Client;
use containerd_shim_protos::ttrpc;
use ttrpc::context::Context;

/// The Task service name of the current API (containerd 2.x).
pub const TASK_V3: &str = "containerd.task.v3.Task";
/// The same service as containerd 1.x names it.
pub const TASK_V2: &str = "containerd.task.v2.Task";

/// The file in a shim v2 task's bundle that records the Task API version
/// its shim serves ("2" or "3").
const VERSION_FILE: &str = "task-api";

/// Addresses of live shims that serve only [`TASK_V2`].
static V2_ONLY: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

fn v2_only() -> std::sync::MutexGuard<'static, BTreeSet<String>> {
    V2_ONLY.lock().unwrap_or_else(|p| p.into_inner())
}

/// Records which Task API the shim at `address` serves (version 2 or 3),
/// in memory and in `bundle`.
pub fn note(address: &str, version: u32, bundle: &Path) -> std::io::Result<()> {
    if version == 2 {
        v2_only().insert(address.to_string());
    } else {
        v2_only().remove(address);
    }
    crate::private::write_file(&bundle.join(VERSION_FILE), version.to_string().as_bytes())
}

/// After a daemon restart: the Task API of the shim at `address` from the
/// bundle of a task it runs (nothing recorded: version 3).
pub fn relearn(address: &str, bundle: &Path) {
    if std::fs::read_to_string(bundle.join(VERSION_FILE)).is_ok_and(|v| v.trim() == "2") {
        v2_only().insert(address.to_string());
    }
}

/// Forgets the shim at `address` (it is gone).
pub fn forget(address: &str) {
    v2_only().remove(address);
}

/// A Task API client bound to one shim and the service name it serves.
#[derive(Clone)]
pub struct TaskApi {
    client: Client,
    service: &'static str,
}

impl TaskApi {
    /// A client for the shim at `address` over `client`.
    pub fn new(client: Client, address: &str) -> TaskApi {
        let service = if v2_only().contains(address) {
            TASK_V2
        } else {
            TASK_V3
        };
        TaskApi { client, service }
    }

    async fn call<Req: Message, Resp: Message>(
        &self,
        method: &str,
        ctx: Context,
        req: &Req,
    ) -> ttrpc::Result<Resp> {
        let mut cres = Resp::new();
        ttrpc::async_client_request!(self, ctx, req, self.service, method, cres);
    }
}

/// One Task method per line: `name(Request) -> Response` as `Method`.
macro_rules! task_methods {
    ($($name:ident($req:ty) -> $resp:ty as $method:literal;)*) => {
        impl TaskApi {
            $(
                #[doc = concat!("The Task API's `", $method, "`.")]
                pub async fn $name(&self, ctx: Context, req: &$req) -> ttrpc::Result<$resp> {
                    self.call($method, ctx, req).await
                }
            )*
        }
    };
}

task_methods! {
    connect(api::ConnectRequest) -> api::ConnectResponse as "Connect";
    create(api::CreateTaskRequest) -> api::CreateTaskResponse as "Create";
    checkpoint(api::CheckpointTaskRequest) -> api::Empty as "Checkpoint";
    start(api::StartRequest) -> api::StartResponse as "Start";
    exec(api::ExecProcessRequest) -> api::Empty as "Exec";
    kill(api::KillRequest) -> api::Empty as "Kill";
    wait(api::WaitRequest) -> api::WaitResponse as "Wait";
    state(api::StateRequest) -> api::StateResponse as "State";
    delete(api::DeleteRequest) -> api::DeleteResponse as "Delete";
    resize_pty(api::ResizePtyRequest) -> api::Empty as "ResizePty";
    update(api::UpdateTaskRequest) -> api::Empty as "Update";
    close_io(api::CloseIORequest) -> api::Empty as "CloseIO";
    shutdown(api::ShutdownRequest) -> api::Empty as "Shutdown";
}
