//! Image references as kubelet and people write them: `busybox`,
//! `docker.io/library/busybox:latest`, `127.0.0.1:5000/test/x@sha256:…`.
//! Short names get Docker's conventions (`docker.io`, `library/`, `latest`).

use oci_client::Reference;

use super::ImageError;

/// Parses and normalizes `s`.
pub fn parse(s: &str) -> Result<Reference, ImageError> {
    if s.is_empty() {
        return Err(ImageError::InvalidReference {
            reference: String::new(),
            message: "empty image reference".into(),
        });
    }
    Reference::try_from(s).map_err(|e| ImageError::InvalidReference {
        reference: s.to_string(),
        message: e.to_string(),
    })
}

/// `registry/repository`, e.g. `docker.io/library/busybox`.
pub fn repo(r: &Reference) -> String {
    format!("{}/{}", r.registry(), r.repository())
}

/// The tag form `registry/repository:tag` when the reference has a tag
/// (`latest` when it has neither tag nor digest).
pub fn tagged(r: &Reference) -> Option<String> {
    match (r.tag(), r.digest()) {
        (Some(t), _) => Some(format!("{}:{t}", repo(r))),
        (None, None) => Some(format!("{}:latest", repo(r))),
        (None, Some(_)) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_follow_docker_conventions() {
        let r = parse("busybox").expect("parse");
        assert_eq!(repo(&r), "docker.io/library/busybox");
        assert_eq!(
            tagged(&r).as_deref(),
            Some("docker.io/library/busybox:latest")
        );
        let r = parse("127.0.0.1:5000/test/busybox:v1").expect("parse");
        assert_eq!(repo(&r), "127.0.0.1:5000/test/busybox");
        assert_eq!(
            tagged(&r).as_deref(),
            Some("127.0.0.1:5000/test/busybox:v1")
        );
        let d = format!("sha256:{}", "a".repeat(64));
        let r = parse(&format!("quay.io/x/y@{d}")).expect("parse");
        assert_eq!(tagged(&r), None);
        assert_eq!(r.digest(), Some(d.as_str()));
        assert!(parse("").is_err());
        assert!(parse("no spaces/allowed here").is_err());
        assert!(parse("repo/Upper").is_err());
    }
}
