//! The CA certificates registry TLS trusts: the system's, loaded once
//! (`/etc/ssl/certs`, or `SSL_CERT_FILE` / `SSL_CERT_DIR` as OpenSSL and
//! Go read them), handed to both registry clients as their only roots.
//!
//! Loaded here rather than left to reqwest's platform verifier because
//! that verifier refuses to exist on a node with no CA certificates at
//! all, and oci-client answers a client it cannot build with one that
//! panics: the daemon died on its first pull on such a node (the VM test
//! lane's guest has none). With no system roots, plain-HTTP registries
//! still work and every TLS registry fails verification, as with OpenSSL
//! ([`ensure_some_root`] keeps reqwest's own client building possible).

use std::sync::OnceLock;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// A self-signed CA certificate whose private key was discarded when it
/// was made: nothing chains to it. oci-client takes an empty root list to
/// mean "use the platform verifier", so a node without CA certificates
/// gets this one root instead, which trusts nothing.
const TRUSTS_NOTHING: &str = "-----BEGIN CERTIFICATE-----
MIICDDCCAbGgAwIBAgIUOC4a2GvGXAHLVAcrdMppuUlxosQwCgYIKoZIzj0EAwIw
WjExMC8GA1UEAwwoY2FyYXBhY2U6IG5vIENBIGNlcnRpZmljYXRlIG9uIHRoaXMg
bm9kZTElMCMGA1UECgwcY2FyYXBhY2UgdHJ1c3RzIG5vdGhpbmcgaGVyZTAgFw0y
NjEyMDcwNDU5MTNaGA8yMTI2MTExMzA0NTkxM1owWjExMC8GA1UEAwwoY2FyYXBh
Y2U6IG5vIENBIGNlcnRpZmljYXRlIG9uIHRoaXMgbm9kZTElMCMGA1UECgwcY2Fy
YXBhY2UgdHJ1c3RzIG5vdGhpbmcgaGVyZTBZMBMGByqGSM49AgEGCCqGSM49AwEH
A0IABL8m+D676040SWhycSkmFqx7CZCEdgtmgFoIC7K+jFe5c5MvpRVBRnpTZ0Hy
l97X/ceTBxH0WKcVEk5/hVaCUhujUzBRMB0GA1UdDgQWBBQvfqCTv1DCvcPniTRv
n6mwALM0tTAfBgNVHSMEGDAWgBQvfqCTv1DCvcPniTRvn6mwALM0tTAPBgNVHRMB
Af8EBTADAQH/MAoGCCqGSM49BAMCA0kAMEYCIQCHjRkEdSpfm16JhSeXx5gI6xt5
XlsXZVU7LrTcGv6wrgIhAI1FsiYcc5PgJUnk8cnrSbTHNBfDhb2ZgLT8KPpcTNEV
-----END CERTIFICATE-----
";

/// The system's CA certificates (DER), loaded on first use; what could not
/// be read is logged, not fatal.
fn system() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        for e in &loaded.errors {
            tracing::warn!(error = %e, "reading the system's CA certificates");
        }
        if loaded.certs.is_empty() {
            tracing::warn!(
                "no CA certificates on this node (install ca-certificates, or set \
                 SSL_CERT_FILE): pulls from registries over TLS will fail verification"
            );
        } else {
            tracing::debug!(count = loaded.certs.len(), "system CA certificates loaded");
        }
        loaded.certs
    })
}

/// Makes sure the system names at least one CA certificate, which reqwest
/// (under oci-client) needs to build any client at all: on a node without
/// any, SSL_CERT_FILE is pointed at `<state>/no-ca-certificates.pem`,
/// holding [`TRUSTS_NOTHING`]. oci-client's client construction builds a
/// default reqwest client whatever its configuration, and that one
/// panicked there. Must run before the daemon starts any thread, as it
/// may set an environment variable; the daemon's children inherit it,
/// which changes nothing for them (the node had no CA certificates).
pub fn ensure_some_root(state: &std::path::Path) -> std::io::Result<()> {
    if !system().is_empty() {
        return Ok(());
    }
    let pem = state.join("no-ca-certificates.pem");
    crate::private::write_file(&pem, TRUSTS_NOTHING.as_bytes())?;
    std::env::set_var("SSL_CERT_FILE", &pem);
    std::env::remove_var("SSL_CERT_DIR");
    Ok(())
}

/// The roots to trust: the system's, or [`TRUSTS_NOTHING`] when it has
/// none.
fn roots() -> Vec<CertificateDer<'static>> {
    let system = system();
    if !system.is_empty() {
        return system.to_vec();
    }
    CertificateDer::from_pem_slice(TRUSTS_NOTHING.as_bytes())
        .map(|c| vec![c])
        .unwrap_or_default()
}

/// The roots for oci-client's `tls_certs_only`.
pub fn for_oci() -> Vec<oci_client::client::Certificate> {
    roots()
        .into_iter()
        .map(|c| oci_client::client::Certificate {
            encoding: oci_client::client::CertificateEncoding::Der,
            data: c.to_vec(),
        })
        .collect()
}

/// The roots for a reqwest client's `tls_certs_only`.
pub fn for_reqwest() -> Vec<reqwest::Certificate> {
    roots()
        .iter()
        .filter_map(|c| reqwest::Certificate::from_der(c).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_of_last_resort_is_a_certificate_both_clients_take() {
        let c = CertificateDer::from_pem_slice(TRUSTS_NOTHING.as_bytes()).expect("PEM");
        assert!(reqwest::Certificate::from_der(&c).is_ok());
        assert!(!roots().is_empty());
        assert_eq!(for_oci().len(), for_reqwest().len());
    }
}
