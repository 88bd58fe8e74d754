//! `ImageStatus`: one image, or an empty answer when there is none (not an
//! error: kubelet pulls then).

use std::collections::HashMap;

use k8s_cri::v1 as cri;
use tonic::Status;

use super::to_cri;
use crate::image::Images;

/// Answers ImageStatus; `verbose` adds the image config and layers as JSON.
pub fn handle(
    images: &Images,
    req: cri::ImageStatusRequest,
) -> Result<cri::ImageStatusResponse, Status> {
    let image = req.image.map(|i| i.image).unwrap_or_default();
    if image.is_empty() {
        return Err(Status::invalid_argument("ImageStatus without an image"));
    }
    let Some(rec) = images.resolve(&image)? else {
        return Ok(cri::ImageStatusResponse::default());
    };
    let mut info = HashMap::new();
    if req.verbose {
        let doc = serde_json::json!({
            "imageSpec": rec.config,
            "manifestDigest": rec.manifest_digest,
            "indexDigest": rec.index_digest,
            "mediaType": rec.media_type,
            "layers": rec.layers,
        });
        info.insert("info".to_string(), doc.to_string());
    }
    Ok(cri::ImageStatusResponse {
        image: Some(to_cri(&rec)),
        info,
    })
}
