//! `ListImages`: every image, or those the filter's reference names.

use k8s_cri::v1 as cri;
use tonic::Status;

use super::to_cri;
use crate::image::Images;

/// Lists images.
pub fn handle(
    images: &Images,
    req: cri::ListImagesRequest,
) -> Result<cri::ListImagesResponse, Status> {
    let want = req
        .filter
        .and_then(|f| f.image)
        .map(|i| i.image)
        .filter(|s| !s.is_empty());
    let recs = match want {
        Some(s) => images.resolve(&s)?.into_iter().collect(),
        None => images.list()?,
    };
    Ok(cri::ListImagesResponse {
        images: recs.iter().map(to_cri).collect(),
    })
}
