//! The CRI RuntimeService: one file per call, each a thin handler that
//! validates, translates and calls the domain modules. Calls not built yet
//! answer `Unimplemented`, never a fake success.

mod attach;
mod checkpoint_container;
mod container_events;
mod container_stats;
mod container_status;
mod create_container;
mod exec;
mod exec_sync;
mod list_pod_sandbox;
mod metrics;
mod pod_sandbox_stats;
mod pod_sandbox_status;
mod port_forward;
mod remove_container;
mod remove_pod_sandbox;
mod reopen_container_log;
mod run_pod_sandbox;
mod runtime_config;
mod start_container;
pub mod status;
mod stop_container;
mod stop_pod_sandbox;
mod update_container_resources;
pub mod update_pod_sandbox_resources;
mod update_runtime_config;
mod version;

use std::pin::Pin;
use std::sync::Arc;

use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_server::RuntimeService;
use tonic::{Request, Response, Status};

use crate::container::Containers;
use crate::daemon::Daemon;
use crate::sandbox::Sandboxes;
use crate::service::Service;

/// The RuntimeService of one daemon.
#[derive(Clone)]
pub struct RuntimeServiceImpl {
    daemon: Arc<Daemon>,
    sandboxes: Arc<Sandboxes>,
    containers: Arc<Containers>,
    /// CPU samples and writable-layer usage kept between stats calls.
    stats: Arc<crate::stats::Sampler>,
    /// Where Exec/Attach/PortForward URLs point.
    streaming: Arc<crate::streaming::server::StreamingServer>,
}

impl RuntimeServiceImpl {
    /// A service over the daemon's shared state, pods and containers.
    pub fn new(
        service: &Service,
        streaming: Arc<crate::streaming::server::StreamingServer>,
    ) -> Self {
        RuntimeServiceImpl {
            daemon: service.daemon.clone(),
            sandboxes: service.sandboxes.clone(),
            containers: service.containers.clone(),
            stats: Arc::new(crate::stats::Sampler::new()),
            streaming,
        }
    }
}

/// The stream type of GetContainerEvents.
pub type ContainerEventStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<cri::ContainerEventResponse, Status>> + Send>>;

#[tonic::async_trait]
impl RuntimeService for RuntimeServiceImpl {
    async fn version(
        &self,
        request: Request<cri::VersionRequest>,
    ) -> Result<Response<cri::VersionResponse>, Status> {
        version::handle(request.into_inner()).map(Response::new)
    }

    async fn status(
        &self,
        request: Request<cri::StatusRequest>,
    ) -> Result<Response<cri::StatusResponse>, Status> {
        let req = request.into_inner();
        if req.verbose {
            // The verbose info says whether CRIU can checkpoint: its first
            // probe runs `criu check`, off the async workers.
            let _ = tokio::task::spawn_blocking(crate::checkpoint::criu).await;
        }
        status::handle(&self.daemon, req).map(Response::new)
    }

    async fn runtime_config(
        &self,
        request: Request<cri::RuntimeConfigRequest>,
    ) -> Result<Response<cri::RuntimeConfigResponse>, Status> {
        runtime_config::handle(&self.daemon, request.into_inner()).map(Response::new)
    }

    async fn update_runtime_config(
        &self,
        request: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<cri::UpdateRuntimeConfigResponse>, Status> {
        update_runtime_config::handle(&self.daemon, request.into_inner()).map(Response::new)
    }

    type GetContainerEventsStream = ContainerEventStream;

    async fn get_container_events(
        &self,
        request: Request<cri::GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        Ok(Response::new(container_events::handle(
            &self.containers,
            request.into_inner(),
        )))
    }

    async fn run_pod_sandbox(
        &self,
        request: Request<cri::RunPodSandboxRequest>,
    ) -> Result<Response<cri::RunPodSandboxResponse>, Status> {
        run_pod_sandbox::handle(&self.sandboxes, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn stop_pod_sandbox(
        &self,
        request: Request<cri::StopPodSandboxRequest>,
    ) -> Result<Response<cri::StopPodSandboxResponse>, Status> {
        stop_pod_sandbox::handle(&self.containers, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn remove_pod_sandbox(
        &self,
        request: Request<cri::RemovePodSandboxRequest>,
    ) -> Result<Response<cri::RemovePodSandboxResponse>, Status> {
        remove_pod_sandbox::handle(&self.containers, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn pod_sandbox_status(
        &self,
        request: Request<cri::PodSandboxStatusRequest>,
    ) -> Result<Response<cri::PodSandboxStatusResponse>, Status> {
        pod_sandbox_status::handle(&self.containers, request.into_inner()).map(Response::new)
    }

    async fn list_pod_sandbox(
        &self,
        request: Request<cri::ListPodSandboxRequest>,
    ) -> Result<Response<cri::ListPodSandboxResponse>, Status> {
        list_pod_sandbox::handle(&self.sandboxes, request.into_inner()).map(Response::new)
    }

    async fn create_container(
        &self,
        request: Request<cri::CreateContainerRequest>,
    ) -> Result<Response<cri::CreateContainerResponse>, Status> {
        create_container::handle(&self.containers, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn start_container(
        &self,
        request: Request<cri::StartContainerRequest>,
    ) -> Result<Response<cri::StartContainerResponse>, Status> {
        start_container::handle(&self.containers, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn stop_container(
        &self,
        request: Request<cri::StopContainerRequest>,
    ) -> Result<Response<cri::StopContainerResponse>, Status> {
        stop_container::handle(&self.containers, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn remove_container(
        &self,
        request: Request<cri::RemoveContainerRequest>,
    ) -> Result<Response<cri::RemoveContainerResponse>, Status> {
        remove_container::handle(&self.containers, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_containers(
        &self,
        request: Request<cri::ListContainersRequest>,
    ) -> Result<Response<cri::ListContainersResponse>, Status> {
        container_status::handle_list(&self.containers, request.into_inner()).map(Response::new)
    }

    async fn container_status(
        &self,
        request: Request<cri::ContainerStatusRequest>,
    ) -> Result<Response<cri::ContainerStatusResponse>, Status> {
        container_status::handle_status(&self.containers, request.into_inner()).map(Response::new)
    }

    async fn update_container_resources(
        &self,
        request: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Result<Response<cri::UpdateContainerResourcesResponse>, Status> {
        update_container_resources::handle(&self.containers, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn update_pod_sandbox_resources(
        &self,
        request: Request<cri::UpdatePodSandboxResourcesRequest>,
    ) -> Result<Response<cri::UpdatePodSandboxResourcesResponse>, Status> {
        update_pod_sandbox_resources::handle(&self.containers, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn reopen_container_log(
        &self,
        request: Request<cri::ReopenContainerLogRequest>,
    ) -> Result<Response<cri::ReopenContainerLogResponse>, Status> {
        reopen_container_log::handle(&self.containers, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn exec_sync(
        &self,
        request: Request<cri::ExecSyncRequest>,
    ) -> Result<Response<cri::ExecSyncResponse>, Status> {
        exec_sync::handle(&self.containers, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn exec(
        &self,
        request: Request<cri::ExecRequest>,
    ) -> Result<Response<cri::ExecResponse>, Status> {
        exec::handle(&self.containers, &self.streaming, request.into_inner()).map(Response::new)
    }

    async fn attach(
        &self,
        request: Request<cri::AttachRequest>,
    ) -> Result<Response<cri::AttachResponse>, Status> {
        attach::handle(&self.containers, &self.streaming, request.into_inner()).map(Response::new)
    }

    async fn port_forward(
        &self,
        request: Request<cri::PortForwardRequest>,
    ) -> Result<Response<cri::PortForwardResponse>, Status> {
        port_forward::handle(&self.containers, &self.streaming, request.into_inner())
            .map(Response::new)
    }

    async fn container_stats(
        &self,
        request: Request<cri::ContainerStatsRequest>,
    ) -> Result<Response<cri::ContainerStatsResponse>, Status> {
        container_stats::handle_stats(&self.containers, &self.stats, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_container_stats(
        &self,
        request: Request<cri::ListContainerStatsRequest>,
    ) -> Result<Response<cri::ListContainerStatsResponse>, Status> {
        container_stats::handle_list(&self.containers, &self.stats, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn pod_sandbox_stats(
        &self,
        request: Request<cri::PodSandboxStatsRequest>,
    ) -> Result<Response<cri::PodSandboxStatsResponse>, Status> {
        pod_sandbox_stats::handle_stats(&self.containers, &self.stats, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_pod_sandbox_stats(
        &self,
        request: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Result<Response<cri::ListPodSandboxStatsResponse>, Status> {
        pod_sandbox_stats::handle_list(&self.containers, &self.stats, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn checkpoint_container(
        &self,
        request: Request<cri::CheckpointContainerRequest>,
    ) -> Result<Response<cri::CheckpointContainerResponse>, Status> {
        checkpoint_container::handle(&self.containers, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_metric_descriptors(
        &self,
        request: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Result<Response<cri::ListMetricDescriptorsResponse>, Status> {
        metrics::handle_descriptors(request.into_inner()).map(Response::new)
    }

    async fn list_pod_sandbox_metrics(
        &self,
        request: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<cri::ListPodSandboxMetricsResponse>, Status> {
        metrics::handle_list(&self.containers, request.into_inner())
            .await
            .map(Response::new)
    }
}
