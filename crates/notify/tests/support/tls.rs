use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A self-signed certificate for `localhost` and 127.0.0.1, and a server
/// configuration that presents it.
pub struct TestCert {
    pub der: CertificateDer<'static>,
    pub pem: String,
    pub server: Arc<rustls::ServerConfig>,
}

pub fn self_signed() -> TestCert {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("rcgen makes a certificate");
    let der = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .expect("the key matches the certificate");
    TestCert { der, pem: certified.cert.pem(), server: Arc::new(server) }
}
