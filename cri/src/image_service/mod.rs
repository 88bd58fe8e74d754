//! The CRI ImageService: one file per call, each a thin handler over
//! [`crate::image::Images`].

mod image_fs_info;
mod image_status;
mod list_images;
mod pull_image;
mod remove_image;

use std::sync::Arc;

use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_server::ImageService;
use tonic::{Request, Response, Status};

use crate::container::Containers;
use crate::image::{ImageRecord, Images};
use crate::service::Service;

/// The ImageService of one daemon.
#[derive(Clone)]
pub struct ImageServiceImpl {
    images: Arc<Images>,
    containers: Arc<Containers>,
}

impl ImageServiceImpl {
    /// A service over the daemon's images (and the containers whose layers
    /// removal must keep).
    pub fn new(service: &Service) -> Self {
        ImageServiceImpl {
            images: service.images.clone(),
            containers: service.containers.clone(),
        }
    }
}

/// The CRI view of an image record: uid or username from the config's
/// `User` (`1000`, `1000:1000`, `app`, `app:group`).
pub fn to_cri(rec: &ImageRecord) -> cri::Image {
    let user = rec.runtime_config()["User"].as_str().unwrap_or("");
    let name = user.split(':').next().unwrap_or("");
    let (uid, username) = match name.parse::<i64>() {
        Ok(n) => (Some(cri::Int64Value { value: n }), String::new()),
        Err(_) if name.is_empty() => (Some(cri::Int64Value { value: 0 }), String::new()),
        Err(_) => (None, name.to_string()),
    };
    cri::Image {
        id: rec.id.clone(),
        repo_tags: rec.repo_tags.clone(),
        repo_digests: rec.repo_digests.clone(),
        size: rec.size,
        uid,
        username,
        spec: Some(cri::ImageSpec {
            image: rec.id.clone(),
            ..Default::default()
        }),
        pinned: false,
    }
}

#[tonic::async_trait]
impl ImageService for ImageServiceImpl {
    async fn list_images(
        &self,
        r: Request<cri::ListImagesRequest>,
    ) -> Result<Response<cri::ListImagesResponse>, Status> {
        list_images::handle(&self.images, r.into_inner()).map(Response::new)
    }

    async fn image_status(
        &self,
        r: Request<cri::ImageStatusRequest>,
    ) -> Result<Response<cri::ImageStatusResponse>, Status> {
        image_status::handle(&self.images, r.into_inner()).map(Response::new)
    }

    async fn pull_image(
        &self,
        r: Request<cri::PullImageRequest>,
    ) -> Result<Response<cri::PullImageResponse>, Status> {
        pull_image::handle(&self.images, r.into_inner())
            .await
            .map(Response::new)
    }

    async fn remove_image(
        &self,
        r: Request<cri::RemoveImageRequest>,
    ) -> Result<Response<cri::RemoveImageResponse>, Status> {
        remove_image::handle(&self.images, &self.containers, r.into_inner())
            .await
            .map(Response::new)
    }

    async fn image_fs_info(
        &self,
        r: Request<cri::ImageFsInfoRequest>,
    ) -> Result<Response<cri::ImageFsInfoResponse>, Status> {
        image_fs_info::handle(&self.images, r.into_inner()).map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(user: &str) -> ImageRecord {
        ImageRecord {
            id: "sha256:x".into(),
            repo_tags: vec![],
            repo_digests: vec![],
            manifest_digest: String::new(),
            index_digest: None,
            media_type: String::new(),
            config: serde_json::json!({"config": {"User": user}}),
            layers: vec![],
            size: 1,
            pulled_at: 0,
        }
    }

    #[test]
    fn image_users_become_uid_or_username() {
        assert_eq!(to_cri(&rec("1000:1000")).uid.map(|u| u.value), Some(1000));
        assert_eq!(to_cri(&rec("")).uid.map(|u| u.value), Some(0));
        let app = to_cri(&rec("app:staff"));
        assert_eq!((app.uid, app.username.as_str()), (None, "app"));
    }
}
