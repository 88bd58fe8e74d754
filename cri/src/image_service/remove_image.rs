//! `RemoveImage`: by ID, tag or digest; removing an absent image succeeds.

use k8s_cri::v1 as cri;
use tonic::Status;

use crate::container::Containers;
use crate::image::Images;

/// Removes the image and collects unused blobs and layers.
pub async fn handle(
    images: &Images,
    containers: &Containers,
    req: cri::RemoveImageRequest,
) -> Result<cri::RemoveImageResponse, Status> {
    let image = req.image.map(|i| i.image).unwrap_or_default();
    if image.is_empty() {
        return Err(Status::invalid_argument("RemoveImage without an image"));
    }
    tracing::info!(image = %image, "RemoveImage");
    // An image a container mounts as a volume stays until that container
    // is removed: its record must keep naming what is mounted.
    if let Some(rec) = images.resolve(&image)? {
        if containers.images_mounted_as_volumes().contains(&rec.id) {
            return Err(Status::failed_precondition(format!(
                "image {image} is in use as an image volume by a container; remove the container first"
            )));
        }
    }
    // Layers containers run on stay until those containers are removed.
    images
        .remove(&image, &containers.chain_ids_in_use())
        .await?;
    Ok(cri::RemoveImageResponse {})
}
