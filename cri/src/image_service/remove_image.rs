//! `RemoveImage`: by ID, tag or digest; removing an absent image succeeds.

use std::collections::HashSet;

use k8s_cri::v1 as cri;
use tonic::Status;

use crate::image::Images;

/// Removes the image and collects unused blobs and layers.
pub async fn handle(
    images: &Images,
    req: cri::RemoveImageRequest,
) -> Result<cri::RemoveImageResponse, Status> {
    let image = req.image.map(|i| i.image).unwrap_or_default();
    if image.is_empty() {
        return Err(Status::invalid_argument("RemoveImage without an image"));
    }
    tracing::info!(image = %image, "RemoveImage");
    // Containers' layers are kept once containers exist (container issue).
    images.remove(&image, &HashSet::new()).await?;
    Ok(cri::RemoveImageResponse {})
}
