//! TLS for the S3 port (`advanced.tls: {cert_file, key_file}`): rustls with
//! the ring provider, TLS 1.2 and 1.3, HTTP/1.1. The certificate and key
//! are PEM files, read at start and again on every reload (a renewed
//! certificate applies to new connections without a restart).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The TLS configuration in force; a reload swaps it.
pub type Shared = Arc<arc_swap::ArcSwap<ServerConfig>>;

/// Reads the certificate chain and the private key into a server config.
pub fn load(cert_file: &Path, key_file: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .with_context(|| format!("reading the certificate {}", cert_file.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing the certificate {}", cert_file.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{} holds no PEM certificate", cert_file.display());
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .with_context(|| format!("reading the private key {}", key_file.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| {
            format!(
                "the key {} does not fit the certificate {}",
                key_file.display(),
                cert_file.display()
            )
        })?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
