//! `ImageFsInfo`: bytes and inodes the image filesystem uses.

use k8s_cri::v1 as cri;
use tonic::Status;

use crate::image::Images;

/// Answers ImageFsInfo.
pub fn handle(
    images: &Images,
    _req: cri::ImageFsInfoRequest,
) -> Result<cri::ImageFsInfoResponse, Status> {
    let u = images.usage()?;
    let fs = cri::FilesystemUsage {
        timestamp: crate::clock::now_ns(),
        fs_id: Some(cri::FilesystemIdentifier {
            mountpoint: images.dir().to_string_lossy().into_owned(),
        }),
        used_bytes: Some(cri::UInt64Value { value: u.bytes }),
        inodes_used: Some(cri::UInt64Value { value: u.inodes }),
    };
    Ok(cri::ImageFsInfoResponse {
        image_filesystems: vec![fs],
        container_filesystems: Vec::new(),
    })
}
