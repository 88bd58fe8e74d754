//! `UpdatePodSandboxResources`: kubelet tells the runtime a pod's new
//! overhead and resources after an in-place resize (KEP 1287).
//!
//! The call is newer than the CRI version the k8s-cri crate was built
//! from, so its two messages are declared here (field numbers as in
//! `runtime.v1`) and the call is served by [`WithPodResources`], which
//! answers this one path of the RuntimeService and hands every other call
//! to the generated server.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use k8s_cri::v1 as cri;
use tonic::codegen::http;
use tonic::Status;

use crate::container::Containers;
use crate::sandbox;

/// The call's full gRPC path.
pub const PATH: &str = "/runtime.v1.RuntimeService/UpdatePodSandboxResources";

/// `runtime.v1.UpdatePodSandboxResourcesRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UpdatePodSandboxResourcesRequest {
    /// The pod.
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
    /// The overhead of the pod's runtime class.
    #[prost(message, optional, tag = "2")]
    pub overhead: Option<cri::LinuxContainerResources>,
    /// The sum of the pod's containers' resources.
    #[prost(message, optional, tag = "3")]
    pub resources: Option<cri::LinuxContainerResources>,
}

/// `runtime.v1.UpdatePodSandboxResourcesResponse` (empty).
#[derive(Clone, PartialEq, prost::Message)]
pub struct UpdatePodSandboxResourcesResponse {}

/// Records (and where the pod cgroup is the daemon's, applies) the pod's
/// new resources.
pub async fn handle(
    cs: &Arc<Containers>,
    req: UpdatePodSandboxResourcesRequest,
) -> Result<UpdatePodSandboxResourcesResponse, Status> {
    tracing::info!(pod = %req.pod_sandbox_id, "UpdatePodSandboxResources");
    if req.overhead.is_none() && req.resources.is_none() {
        return Err(Status::invalid_argument(
            "UpdatePodSandboxResources needs overhead or resources",
        ));
    }
    sandbox::resources::update(
        &cs.sandboxes,
        &req.pod_sandbox_id,
        req.overhead.as_ref(),
        req.resources.as_ref(),
    )
    .await?;
    Ok(UpdatePodSandboxResourcesResponse {})
}

/// The RuntimeService with UpdatePodSandboxResources served as well.
#[derive(Clone)]
pub struct WithPodResources<S> {
    inner: S,
    containers: Arc<Containers>,
}

impl<S> WithPodResources<S> {
    /// `inner` (the generated RuntimeService server) plus this call.
    pub fn new(inner: S, containers: Arc<Containers>) -> Self {
        WithPodResources { inner, containers }
    }
}

impl<S> tonic::server::NamedService for WithPodResources<S> {
    const NAME: &'static str = "runtime.v1.RuntimeService";
}

/// The call as tonic's unary server machinery wants it.
struct Unary(Arc<Containers>);

impl tonic::server::UnaryService<UpdatePodSandboxResourcesRequest> for Unary {
    type Response = UpdatePodSandboxResourcesResponse;
    type Future =
        Pin<Box<dyn Future<Output = Result<tonic::Response<Self::Response>, Status>> + Send>>;

    fn call(&mut self, req: tonic::Request<UpdatePodSandboxResourcesRequest>) -> Self::Future {
        let cs = self.0.clone();
        Box::pin(async move {
            handle(&cs, req.into_inner())
                .await
                .map(tonic::Response::new)
        })
    }
}

type Req = http::Request<tonic::body::Body>;
type Resp = http::Response<tonic::body::Body>;

impl<S> tower::Service<Req> for WithPodResources<S>
where
    S: tower::Service<Req, Response = Resp, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Resp;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Resp, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        if req.uri().path() != PATH {
            return Box::pin(self.inner.call(req));
        }
        let svc = Unary(self.containers.clone());
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(svc, req).await)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn the_request_keeps_the_runtime_v1_field_numbers() {
        let req = UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: "p".into(),
            overhead: None,
            resources: Some(cri::LinuxContainerResources {
                cpu_shares: 2,
                ..Default::default()
            }),
        };
        // Field 1 (string "p"), then field 3 (a message holding field 3,
        // cpu_shares = 2).
        assert_eq!(req.encode_to_vec(), [0x0a, 1, b'p', 0x1a, 2, 0x18, 2]);
    }
}
