//! Image references as kubelet and people write them: `busybox`,
//! `docker.io/library/busybox:latest`, `127.0.0.1:5000/test/x@sha256:…`.
//! Short names get Docker's conventions (`docker.io`, `library/`, `latest`).
//!
//! Parsed here by hand, to distribution's reference grammar, rather than
//! with `Reference::try_from`: that compiles one large regular expression
//! (Unicode `\w` in the tag) whose automata held about 20 MiB of the
//! daemon's heap once the first image was pulled — half its memory.

use oci_client::Reference;

use super::ImageError;

/// The longest repository name (distribution's NAME_TOTAL_LENGTH_MAX).
const NAME_MAX: usize = 255;
/// The longest tag.
const TAG_MAX: usize = 128;

/// Parses and normalizes `s`.
pub fn parse(s: &str) -> Result<Reference, ImageError> {
    let invalid = |message: &str| ImageError::InvalidReference {
        reference: s.to_string(),
        message: message.to_string(),
    };
    if s.is_empty() {
        return Err(invalid("empty image reference"));
    }
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (s, None),
    };
    // A `:` after the last `/` starts the tag; one before it is a port.
    let (name, tag) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if !valid_name(name) {
        return Err(invalid("invalid reference format"));
    }
    if let Some(t) = tag {
        if !valid_tag(t) {
            return Err(invalid("invalid reference format"));
        }
    }
    if let Some(d) = digest {
        check_digest(d).map_err(invalid)?;
    }
    let (registry, repository) = split_domain(name);
    if repository.len() > NAME_MAX {
        return Err(invalid(
            "repository name must not be more than 255 characters",
        ));
    }
    Ok(match (tag, digest) {
        (Some(t), Some(d)) => {
            Reference::with_tag_and_digest(registry, repository, t.into(), d.into())
        }
        (None, Some(d)) => Reference::with_digest(registry, repository, d.into()),
        (Some(t), None) => Reference::with_tag(registry, repository, t.into()),
        (None, None) => Reference::with_tag(registry, repository, "latest".into()),
    })
}

/// `[domain/]path-component[/path-component…]`: either the whole is a
/// remote name, or its first component is a domain and the rest one.
fn valid_name(name: &str) -> bool {
    if valid_remote(name) {
        return true;
    }
    match name.split_once('/') {
        Some((domain, remote)) => valid_domain(domain) && valid_remote(remote),
        None => false,
    }
}

/// `path-component ('/' path-component)*`.
fn valid_remote(remote: &str) -> bool {
    remote.split('/').all(valid_component)
}

/// `[a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*`.
fn valid_component(c: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = c.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        match &c[start..i] {
            "." | "_" | "__" => {}
            sep if sep.bytes().all(|b| b == b'-') => {}
            _ => return false,
        }
    }
    true
}

/// `host-component ('.' host-component)* (':' port)?`.
fn valid_domain(d: &str) -> bool {
    let (host, port) = match d.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    host.split('.').all(|c| {
        let b = c.as_bytes();
        match (b.first(), b.last()) {
            (Some(f), Some(l)) => {
                f.is_ascii_alphanumeric()
                    && l.is_ascii_alphanumeric()
                    && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
            }
            _ => false,
        }
    })
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}` (ASCII, as Docker's).
fn valid_tag(t: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= TAG_MAX
        && word(b[0])
        && b.iter().all(|&x| word(x) || x == b'.' || x == b'-')
}

/// `algorithm:hex`, with the hex as long as the algorithm's output.
fn check_digest(d: &str) -> Result<(), &'static str> {
    let Some((algorithm, hex)) = d.split_once(':') else {
        return Err("invalid reference format");
    };
    let algorithm_ok = algorithm.split(['-', '_', '+', '.']).all(|part| {
        let b = part.as_bytes();
        !b.is_empty() && b[0].is_ascii_alphabetic() && b.iter().all(u8::is_ascii_alphanumeric)
    });
    if !algorithm_ok || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("invalid reference format");
    }
    let want = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err("unsupported digest algorithm"),
    };
    if hex.len() == want {
        Ok(())
    } else {
        Err("invalid checksum digest length")
    }
}

/// Docker's normalization: a first component that is no host (no `.` or
/// `:`, not `localhost`, lowercase) is part of a Docker Hub name, and an
/// official image's name gains `library/`.
fn split_domain(name: &str) -> (String, String) {
    let (mut domain, mut remainder) = match name.split_once('/') {
        Some((left, right))
            if left.contains(['.', ':'])
                || left == "localhost"
                || left.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (left.to_string(), right.to_string())
        }
        _ => ("docker.io".to_string(), name.to_string()),
    };
    if domain == "index.docker.io" {
        domain = "docker.io".to_string();
    }
    if domain == "docker.io" && !remainder.contains('/') {
        remainder = format!("library/{remainder}");
    }
    (domain, remainder)
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

    /// The hand parser agrees with oci-client's regex on everything but
    /// what Docker itself decides differently (noted below).
    #[test]
    fn parses_as_the_reference_grammar_does() {
        let sha256 = format!("sha256:{}", "f".repeat(64));
        let sha512 = format!("sha512:{}", "f".repeat(128));
        let long_tag = "t".repeat(128);
        let too_long_tag = "t".repeat(129);
        let long_name = format!("a/{}", "b".repeat(260));
        let cases: Vec<String> = [
            "busybox",
            "busybox:1.36",
            "test.com:tag",
            "test.com:5000",
            "test.com/repo:tag",
            "test:5000/repo",
            "test:5000/repo:tag",
            "localhost/repo",
            "localhost:5000/a/b/c:v1",
            "index.docker.io/busybox",
            "index.docker.io/x/busybox",
            "docker.io/library/busybox:latest",
            "lowercase:Uppercase",
            "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
            "b.gcr.io/test.example.com/my-app:test.example.com",
            "xn--n3h.com/myimage:xn--n3h.com",
            "foo_bar.com:8080",
            "foo/foo_bar.com:8080",
            "a/b__c/d-e/f--g/h.i/j_k",
            "registry.k8s.io/e2e-test-images/busybox:1.29-2",
            "127.0.0.1:5000/test/busybox:latest",
            "a__b",
            "a___b",
            "a._b",
            "a..b",
            "-a",
            "a-",
            "a/",
            "/a",
            "a//b",
            ":tag",
            "a:",
            "a:.tag",
            "a:-tag",
            "a:_tag",
            "a@",
            "a@sha256",
            "a@sha256:abc",
            "a@md5:ffffffffffffffffffffffffffffffff",
            "host:port/a",
            "host:/a",
            "-host.com/a",
            "host-.com/a",
            "ho_st.com/a",
            "a b",
            "a/b:c:d",
            "UPPER",
            "a/B",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            format!("busybox@{sha256}"),
            format!("busybox:v1@{sha256}"),
            format!("q.io/x/y@{sha512}"),
            format!("a@sha256:{}", "f".repeat(63)),
            format!("a@sha256:{}", "g".repeat(64)),
            format!("a:{long_tag}"),
            format!("a:{too_long_tag}"),
            long_name,
        ])
        .collect();
        for c in &cases {
            let ours = parse(c).ok().map(|r| {
                (
                    r.registry().to_string(),
                    r.repository().to_string(),
                    r.tag().map(str::to_string),
                    r.digest().map(str::to_string),
                )
            });
            let theirs = Reference::try_from(c.as_str()).ok().map(|r| {
                (
                    r.registry().to_string(),
                    r.repository().to_string(),
                    r.tag().map(str::to_string),
                    r.digest().map(str::to_string),
                )
            });
            assert_eq!(ours, theirs, "{c:?}");
        }
        // Docker's split: an uppercase first component is a host, so
        // "Host/a" is no Docker Hub repository with an uppercase name.
        let r = parse("Host/a").expect("parse");
        assert_eq!((r.registry(), r.repository()), ("Host", "a"));
        // Tags are ASCII, as Docker's (the regex's \w took any letter).
        assert!(parse("a:t\u{e9}").is_err());
    }
}
