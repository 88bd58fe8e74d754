//! TLS for the streaming server, when `[streaming] tls_cert_file` and
//! `tls_key_file` are set: the URLs then say `https://` and every
//! connection must begin with a TLS handshake. Built on rustls with ring,
//! the stack the registry client uses too, so the daemon carries one TLS
//! implementation (and no OpenSSL: see [`crate::tls_crypto`]).
//!
//! A client that speaks plain HTTP to the TLS port is answered, as Go's
//! net/http answers it, with a plain 400 that says so, and never reaches
//! a URL: its token stays unused.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// The first byte of every TLS connection: a handshake record.
const HANDSHAKE_RECORD: u8 = 0x16;

/// What a client speaking plain HTTP to the TLS port is told.
const PLAIN_HTTP_ANSWER: &[u8] =
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// Hang guard for a client that connects and never completes the
/// handshake.
const HANDSHAKE_GUARD: Duration = Duration::from_secs(10);

/// Why the certificate and key could not be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("[streaming] {what} {path}: {source}")]
    Read {
        /// Which setting names the file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key file holds no PEM private key.
    #[error("[streaming] tls_key_file {path}: not a usable PEM private key: {source}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What the PEM reader said.
        source: rustls_pki_types::pem::Error,
    },
    /// The certificate file holds a broken PEM certificate.
    #[error("[streaming] tls_cert_file {path}: not a usable PEM certificate: {source}")]
    Cert {
        /// The file.
        path: PathBuf,
        /// What the PEM reader said.
        source: rustls_pki_types::pem::Error,
    },
    /// The certificate file holds no PEM certificate at all.
    #[error("[streaming] tls_cert_file {0}: no PEM certificate in it")]
    NoCertificate(PathBuf),
    /// The key is not the certificate's.
    #[error("[streaming] tls_key_file {key} is not the key of tls_cert_file {cert}")]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls refused the pair (a key type it cannot sign with, say).
    #[error("[streaming] tls_cert_file {cert} with tls_key_file {key}: {source}")]
    Identity {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        source: rustls::Error,
    },
}

impl From<TlsError> for std::io::Error {
    fn from(e: TlsError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
    }
}

/// Why one connection did not get as far as HTTP over TLS.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The client spoke plain HTTP (it was told so).
    #[error("plain HTTP on the TLS port")]
    PlainHttp,
    /// The client left before sending anything.
    #[error("closed before the handshake")]
    Closed,
    /// The client did not finish the handshake in time.
    #[error("no TLS handshake within {0:?}")]
    Timeout(Duration),
    /// The socket failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The handshake failed.
    #[error("TLS handshake: {0}")]
    Tls(std::io::Error),
}

/// The acceptor for the PEM certificate chain `cert` and PEM private key
/// `key` (PKCS#8, or the PKCS#1 and SEC1 forms `openssl genrsa` and
/// `openssl ecparam` write), checked to belong together. TLS 1.2 and 1.3.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let read = |what, path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            what,
            path: path.to_path_buf(),
            source,
        })
    };
    let cert_pem = read("tls_cert_file", cert)?;
    let key_pem = read("tls_key_file", key)?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|source| TlsError::Key {
        path: key.to_path_buf(),
        source,
    })?;
    // The first certificate is the server's own; the rest its chain.
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Cert {
            path: cert.to_path_buf(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_path_buf()));
    }
    let identity_err = |source| match source {
        rustls::Error::InconsistentKeys(_) => TlsError::Mismatch {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        },
        source => TlsError::Identity {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            source,
        },
    };
    let config = rustls::ServerConfig::builder_with_provider(crate::tls_crypto::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(identity_err)?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(identity_err)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Takes `conn` through the TLS handshake; a client that opens with
/// anything but a TLS handshake record is answered with a plain 400 and
/// refused.
pub async fn handshake(
    acceptor: &TlsAcceptor,
    mut conn: TcpStream,
) -> Result<TlsStream<TcpStream>, HandshakeError> {
    let guarded = async {
        let mut first = [0u8; 1];
        if conn.peek(&mut first).await? == 0 {
            return Err(HandshakeError::Closed);
        }
        if first[0] != HANDSHAKE_RECORD {
            conn.write_all(PLAIN_HTTP_ANSWER).await?;
            conn.shutdown().await?;
            return Err(HandshakeError::PlainHttp);
        }
        acceptor.accept(conn).await.map_err(HandshakeError::Tls)
    };
    tokio::time::timeout(HANDSHAKE_GUARD, guarded)
        .await
        .map_err(|_| HandshakeError::Timeout(HANDSHAKE_GUARD))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::asn1::Asn1Time;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::{PKey, Private};
    use openssl::rsa::Rsa;
    use openssl::x509::{X509Name, X509};

    /// A self-signed certificate for `key`, PEM.
    fn self_signed(key: &PKey<Private>) -> Vec<u8> {
        let mut name = X509Name::builder().expect("name");
        name.append_entry_by_text("CN", "127.0.0.1").expect("CN");
        let name = name.build();
        let mut b = X509::builder().expect("builder");
        b.set_version(2).expect("version");
        b.set_subject_name(&name).expect("subject");
        b.set_issuer_name(&name).expect("issuer");
        b.set_pubkey(key).expect("pubkey");
        b.set_not_before(&Asn1Time::days_from_now(0).expect("now"))
            .expect("not before");
        b.set_not_after(&Asn1Time::days_from_now(1).expect("tomorrow"))
            .expect("not after");
        b.sign(key, MessageDigest::sha256()).expect("sign");
        b.build().to_pem().expect("pem")
    }

    fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, data).expect("write");
        p
    }

    #[test]
    fn pkcs8_pkcs1_and_sec1_keys_are_served() {
        let d = tempfile::tempdir().expect("tmp");
        let rsa = PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("pkey");
        let cert = write(d.path(), "rsa.crt", &self_signed(&rsa));
        let pkcs8 = write(
            d.path(),
            "pkcs8.key",
            &rsa.private_key_to_pem_pkcs8().expect("pkcs8"),
        );
        let pkcs1 = write(
            d.path(),
            "pkcs1.key",
            &rsa.rsa().expect("rsa").private_key_to_pem().expect("pkcs1"),
        );
        assert!(acceptor(&cert, &pkcs8).is_ok());
        assert!(acceptor(&cert, &pkcs1).is_ok());
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("curve");
        let ec = EcKey::generate(&group).expect("ec");
        let sec1 = write(d.path(), "ec.key", &ec.private_key_to_pem().expect("sec1"));
        let ec = PKey::from_ec_key(ec).expect("pkey");
        let ec_cert = write(d.path(), "ec.crt", &self_signed(&ec));
        assert!(acceptor(&ec_cert, &sec1).is_ok());
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused() {
        let d = tempfile::tempdir().expect("tmp");
        let one = PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("pkey");
        let other = PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("pkey");
        let cert = write(d.path(), "one.crt", &self_signed(&one));
        let key = write(
            d.path(),
            "other.key",
            &other.private_key_to_pem_pkcs8().expect("pem"),
        );
        let Err(e) = acceptor(&cert, &key) else {
            panic!("mismatched key accepted");
        };
        assert!(matches!(e, TlsError::Mismatch { .. }), "{e}");
    }

    #[test]
    fn unreadable_and_garbage_files_name_the_setting() {
        let d = tempfile::tempdir().expect("tmp");
        let missing = d.path().join("missing.crt");
        let Err(e) = acceptor(&missing, &missing) else {
            panic!("missing accepted");
        };
        assert!(e.to_string().contains("tls_cert_file"), "{e}");
        assert!(e.to_string().contains("missing.crt"), "{e}");
        let junk = write(d.path(), "junk.pem", b"not PEM at all");
        let Err(e) = acceptor(&junk, &junk) else {
            panic!("junk key accepted");
        };
        assert!(matches!(e, TlsError::Key { .. }), "{e}");
        let rsa = PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("pkey");
        let key = write(
            d.path(),
            "k.pem",
            &rsa.private_key_to_pem_pkcs8().expect("pem"),
        );
        let Err(e) = acceptor(&junk, &key) else {
            panic!("junk certificate accepted");
        };
        assert!(matches!(e, TlsError::NoCertificate(_)), "{e}");
    }
}
