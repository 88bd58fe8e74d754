//! `PullImage`: fetch, store and unpack an image; answer its ID.

use base64::Engine as _;
use k8s_cri::v1 as cri;
use tonic::Status;

use crate::image::pull::Credentials;
use crate::image::Images;

/// The credentials in a CRI `AuthConfig` (`auth` is base64 `user:pass`).
pub fn credentials(a: Option<&cri::AuthConfig>) -> Result<Credentials, Status> {
    let Some(a) = a else {
        return Ok(Credentials::default());
    };
    let mut c = Credentials {
        username: a.username.clone(),
        password: a.password.clone(),
        registry_token: a.registry_token.clone(),
        server_address: a.server_address.clone(),
    };
    if c.username.is_empty() && !a.auth.is_empty() {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(a.auth.trim())
            .map_err(|e| Status::invalid_argument(format!("auth is not base64: {e}")))?;
        let text = String::from_utf8(raw)
            .map_err(|_| Status::invalid_argument("auth is not UTF-8 user:password"))?;
        let (u, p) = text
            .split_once(':')
            .ok_or_else(|| Status::invalid_argument("auth is not user:password"))?;
        c.username = u.to_string();
        c.password = p.to_string();
    }
    if c.registry_token.is_empty() && !a.identity_token.is_empty() {
        // An identity token is an OAuth2 refresh token; registries that
        // hand them out also take them as bearer tokens.
        c.registry_token = a.identity_token.clone();
    }
    Ok(c)
}

/// Pulls the image.
pub async fn handle(
    images: &Images,
    req: cri::PullImageRequest,
) -> Result<cri::PullImageResponse, Status> {
    let image = req.image.map(|i| i.image).unwrap_or_default();
    tracing::info!(image = %image, "PullImage");
    let creds = credentials(req.auth.as_ref())?;
    let rec = images
        .pull(&image, &creds, &crate::image::progress::Progress::none())
        .await?;
    Ok(cri::PullImageResponse { image_ref: rec.id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_fields_are_decoded() {
        let a = cri::AuthConfig {
            auth: base64::engine::general_purpose::STANDARD.encode("u:p:w"),
            ..Default::default()
        };
        let c = credentials(Some(&a)).expect("creds");
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p:w"));
        let bad = cri::AuthConfig {
            auth: "%%%".into(),
            ..Default::default()
        };
        assert!(credentials(Some(&bad)).is_err());
    }
}
