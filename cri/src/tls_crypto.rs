//! The daemon's one TLS stack: rustls with ring's cryptography, for the
//! registry clients and the streaming server alike.

use std::sync::Arc;

/// The daemon's cryptography: ring's, for the streaming server and, made
/// the process default, for the registry clients (reqwest without a
/// provider of its own). Chosen over OpenSSL, whose initialization and
/// parsed CA store held about 6 MiB of the daemon's resident memory, and
/// over aws-lc-rs, a second C library as large. rustls marks ring's
/// provider deprecated for lacking post-quantum key exchange; the OpenSSL
/// 3.0 it replaces (Debian 12's) has none either.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    if let Some(p) = rustls::crypto::CryptoProvider::get_default() {
        return p.clone();
    }
    // Another thread may have installed it in between: either is ring's.
    let _ = rustls::crypto::ring::default_provider().install_default();
    rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}
