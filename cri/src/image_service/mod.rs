//! The CRI ImageService. Image pulls and storage are not built yet: every
//! call answers `Unimplemented`, never a fake success.

use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_server::ImageService;
use tonic::{Request, Response, Status};

use crate::grpc::unimplemented;

/// The ImageService of one daemon.
#[derive(Clone, Default)]
pub struct ImageServiceImpl;

#[tonic::async_trait]
impl ImageService for ImageServiceImpl {
    async fn list_images(
        &self,
        _r: Request<cri::ListImagesRequest>,
    ) -> Result<Response<cri::ListImagesResponse>, Status> {
        unimplemented("ListImages")
    }

    async fn image_status(
        &self,
        _r: Request<cri::ImageStatusRequest>,
    ) -> Result<Response<cri::ImageStatusResponse>, Status> {
        unimplemented("ImageStatus")
    }

    async fn pull_image(
        &self,
        _r: Request<cri::PullImageRequest>,
    ) -> Result<Response<cri::PullImageResponse>, Status> {
        unimplemented("PullImage")
    }

    async fn remove_image(
        &self,
        _r: Request<cri::RemoveImageRequest>,
    ) -> Result<Response<cri::RemoveImageResponse>, Status> {
        unimplemented("RemoveImage")
    }

    async fn image_fs_info(
        &self,
        _r: Request<cri::ImageFsInfoRequest>,
    ) -> Result<Response<cri::ImageFsInfoResponse>, Status> {
        unimplemented("ImageFsInfo")
    }
}
