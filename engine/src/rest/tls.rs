//! TLS for the REST server (rustls with the ring provider): the acceptor from PEM files named
//! by `rest.ssl.certificate` and `rest.ssl.key`.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::error::RestError;

/// The acceptor of the server's certificate chain and key.
///
/// # Errors
///
/// [`RestError::File`] naming the option whose file cannot be read or holds no usable PEM
/// certificate or key, or whose key does not fit the certificate.
pub(crate) fn acceptor(cert: &str, key: &str) -> Result<TlsAcceptor, RestError> {
    let bad = |option: &'static str, path: &str, reason: String| RestError::File {
        option,
        path: path.to_string(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad("rest.ssl.certificate", cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad("rest.ssl.certificate", cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(bad(
            "rest.ssl.certificate",
            cert,
            "no PEM certificate in the file".into(),
        ));
    }
    let private =
        PrivateKeyDer::from_pem_file(key).map_err(|e| bad("rest.ssl.key", key, e.to_string()))?;
    // ring (no C toolchain beyond cc needed); it lacks post-quantum key exchange, which
    // rustls marks by deprecating this constructor. aws-lc-rs would need cmake to build.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("rest.ssl.key", key, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| bad("rest.ssl.key", key, e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
