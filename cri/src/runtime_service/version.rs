//! `Version`: who answers on the socket (crictl version, kubelet's first call).

use k8s_cri::v1 as cri;
use tonic::Status;

/// The runtime name kubelet shows (`containerRuntimeVersion: carapace://…`).
pub const RUNTIME_NAME: &str = "carapace";
/// The CRI API version served.
pub const RUNTIME_API_VERSION: &str = "v1";
/// The kubelet-facing `version` field: the CRI API's own version.
const KUBE_API_VERSION: &str = "0.1.0";

/// Answers Version; the request's client version is informational only.
pub fn handle(_req: cri::VersionRequest) -> Result<cri::VersionResponse, Status> {
    Ok(cri::VersionResponse {
        version: KUBE_API_VERSION.into(),
        runtime_name: RUNTIME_NAME.into(),
        runtime_version: env!("CARGO_PKG_VERSION").into(),
        runtime_api_version: RUNTIME_API_VERSION.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_names_carapace_and_cri_v1() {
        let v = handle(cri::VersionRequest::default()).expect("version");
        assert_eq!(v.runtime_name, "carapace");
        assert_eq!(v.runtime_api_version, "v1");
        assert_eq!(v.version, "0.1.0");
        assert_eq!(v.runtime_version, env!("CARGO_PKG_VERSION"));
    }
}
