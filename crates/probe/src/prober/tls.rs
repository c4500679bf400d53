//! TLS client configuration shared by HTTPS and TLS checks, and the TLS expiry
//! check itself.
//!
//! Handshakes accept any certificate chain ([`AcceptAnyCert`]), still checking
//! that the server holds the key it presents. The chain is verified right after
//! the handshake with rustls' own WebPKI verifier, before a single request byte
//! is sent. Splitting it so lets the TLS check read the leaf of an expired,
//! untrusted or misnamed chain, which a failing handshake would hide, while an
//! HTTPS check with `verify_tls` sends nothing to a server that fails it.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::time::Instant;

use super::connect::{self, fail, Failure};
use super::Inner;
use crate::{CertInfo, Config, Detail, Error, ErrorKind, Outcome, Phase, Phases, TlsSpec};

const SECS_PER_DAY: i64 = 86_400;

/// The client configurations and the verifier checks share.
pub(super) struct Clients {
    /// For HTTPS: offers only `http/1.1` by ALPN, since the checks speak HTTP/1.1.
    pub http: Arc<rustls::ClientConfig>,
    /// For TLS checks: no ALPN, like a generic TLS client.
    pub plain: Arc<rustls::ClientConfig>,
    /// `None` when no roots are trusted at all: every chain is then untrusted.
    verifier: Option<Arc<WebPkiServerVerifier>>,
}

impl Clients {
    pub(super) fn new(config: &Config, extra: Vec<CertificateDer<'static>>) -> Result<Clients, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        if config.webpki_roots {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        for path in &config.extra_ca_files {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| Error::CaFile { path: path.clone(), message: e.to_string() })?;
            if certs.is_empty() {
                return Err(Error::CaFile { path: path.clone(), message: "no certificates in the file".into() });
            }
            for cert in certs {
                roots.add(cert).map_err(|e| Error::CaFile { path: path.clone(), message: e.to_string() })?;
            }
        }
        for cert in extra {
            roots.add(cert).map_err(|e| Error::Tls { message: format!("extra root: {e}") })?;
        }
        let verifier = if roots.is_empty() {
            None
        } else {
            Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| Error::Tls { message: e.to_string() })?,
            )
        };
        let client = |alpn: Vec<Vec<u8>>| -> Result<Arc<rustls::ClientConfig>, Error> {
            let mut c = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(rustls::ALL_VERSIONS)
                .map_err(|e| Error::Tls { message: e.to_string() })?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCert {
                    algorithms: provider.signature_verification_algorithms,
                }))
                .with_no_client_auth();
            c.alpn_protocols = alpn;
            // Every check pays for a full handshake, as a new visitor does, and
            // a resumed session would show no certificate to read.
            c.resumption = Resumption::disabled();
            Ok(Arc::new(c))
        };
        Ok(Clients { http: client(vec![b"http/1.1".to_vec()])?, plain: client(Vec::new())?, verifier })
    }

    /// Verifies `chain` for `server_name` at `now`, as a browser would.
    pub(super) fn verify(
        &self,
        chain: &[CertificateDer<'_>],
        server_name: &str,
        now: SystemTime,
    ) -> Result<(), String> {
        let verifier = self.verifier.as_ref().ok_or("no trusted root certificates are configured")?;
        let (leaf, intermediates) = chain.split_first().ok_or("the server sent no certificate")?;
        let name = ServerName::try_from(server_name).map_err(|e| e.to_string())?;
        let now = UnixTime::since_unix_epoch(now.duration_since(UNIX_EPOCH).unwrap_or_default());
        verifier.verify_server_cert(leaf, intermediates, &name, &[], now).map(drop).map_err(|e| e.to_string())
    }
}

/// Accepts any chain during the handshake but still verifies the handshake
/// signatures, so the peer proved it holds the leaf's key.
#[derive(Debug)]
struct AcceptAnyCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Reads subject, issuer and validity from a DER certificate.
pub(super) fn parse_leaf(der: &[u8], now: SystemTime) -> Result<CertInfo, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| format!("unreadable certificate: {e}"))?;
    let validity = cert.validity();
    let not_after = validity.not_after.timestamp();
    let now = unix_secs(now);
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        not_before: validity.not_before.timestamp(),
        not_after,
        days_left: not_after.saturating_sub(now).div_euclid(SECS_PER_DAY),
        chain_valid: false,
        chain_error: None,
        remote: None,
    })
}

/// Whole seconds since the Unix epoch, rounded down (also before it).
fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            let d = e.duration();
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            -secs.saturating_add(i64::from(d.subsec_nanos() > 0))
        }
    }
}

pub(super) async fn run(p: &Inner, spec: &TlsSpec, start: Instant, deadline: Instant) -> Result<Outcome, Error> {
    let mut phases = Phases::default();
    let result = handshake_and_read(p, spec, deadline, &mut phases).await;
    phases.total = start.elapsed();
    let outcome = match result {
        Err(e) => e.outcome(phases.total)?,
        Ok(info) => judge(spec, info, unix_secs(p.now()), phases.total),
    };
    Ok(outcome.with_phases(phases))
}

async fn handshake_and_read(
    p: &Inner,
    spec: &TlsSpec,
    deadline: Instant,
    phases: &mut Phases,
) -> Result<CertInfo, Failure> {
    let (addrs, dns) = connect::resolve(p, &spec.host, deadline).await?;
    phases.dns = dns;
    let (tcp, remote, took) = connect::connect(p, &addrs, spec.port, deadline).await?;
    phases.connect = Some(took);
    let name = spec.server_name();
    let (tls, took) = connect::handshake(p.tls.plain.clone(), tcp, name, deadline).await?;
    phases.tls = Some(took);
    let (_, conn) = tls.get_ref();
    let chain = conn.peer_certificates().unwrap_or_default();
    let leaf =
        chain.first().ok_or_else(|| fail(ErrorKind::Certificate, Phase::Tls, "the server sent no certificate"))?;
    let now = p.now();
    let mut info = parse_leaf(leaf, now).map_err(|e| fail(ErrorKind::Certificate, Phase::Tls, e))?;
    info.remote = Some(remote);
    match p.tls.verify(chain, name, now) {
        Ok(()) => info.chain_valid = true,
        Err(e) => info.chain_error = Some(e),
    }
    Ok(info)
}

/// Validity first (not yet valid, then expired: the most useful messages),
/// then the chain, then the days left. `now` is Unix seconds; the validity
/// period includes both `notBefore` and `notAfter` (RFC 5280 §4.1.2.5), and is
/// judged whether or not the chain is, since a certificate outside it is
/// refused by every client.
fn judge(spec: &TlsSpec, info: CertInfo, now: i64, latency: Duration) -> Outcome {
    let secs_left = info.days_left.saturating_mul(SECS_PER_DAY);
    let cert = |what: String| format!("{what} (subject {}, issuer {})", info.subject, info.issuer);
    let outcome = if now < info.not_before {
        Outcome::down(
            ErrorKind::Certificate,
            Some(Phase::Tls),
            cert(format!(
                "certificate not valid before {} (in {})",
                humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(info.not_before.max(0) as u64)),
                humantime::format_duration(Duration::from_secs(info.not_before.saturating_sub(now).unsigned_abs())),
            )),
            latency,
        )
    } else if info.days_left < 0 {
        // Whole days since `notAfter`, counted like `days_left`: a certificate
        // that expired a second ago expired today, not a day ago.
        let ago = match now.saturating_sub(info.not_after).div_euclid(SECS_PER_DAY) {
            0 => "less than a day ago".to_string(),
            days => format!("{days} day(s) ago"),
        };
        Outcome::down(ErrorKind::Certificate, Some(Phase::Tls), cert(format!("certificate expired {ago}")), latency)
    } else if spec.verify_chain && !info.chain_valid {
        let why = info.chain_error.clone().unwrap_or_default();
        Outcome::down(
            ErrorKind::Certificate,
            Some(Phase::Tls),
            cert(format!("certificate chain invalid: {why}")),
            latency,
        )
    } else if secs_left < i64::from(spec.critical_days) * SECS_PER_DAY {
        Outcome::down(
            ErrorKind::Certificate,
            Some(Phase::Tls),
            cert(format!("certificate expires in {} day(s), critical at {}", info.days_left, spec.critical_days)),
            latency,
        )
    } else if secs_left < i64::from(spec.warn_days) * SECS_PER_DAY {
        Outcome::degraded(
            ErrorKind::Certificate,
            Some(Phase::Tls),
            cert(format!("certificate expires in {} day(s), warning at {}", info.days_left, spec.warn_days)),
            latency,
        )
    } else {
        Outcome::up(latency)
    };
    outcome.with_detail(Detail::Tls(info))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Status;

    const NOW: i64 = 1_000_000_000;

    fn info(days_left: i64, chain_valid: bool) -> CertInfo {
        CertInfo {
            days_left,
            not_before: 0,
            not_after: NOW + days_left * SECS_PER_DAY,
            chain_valid,
            chain_error: (!chain_valid).then(|| "bad".into()),
            ..CertInfo::default()
        }
    }

    #[test]
    fn expiry_and_chain_decide_the_status() {
        let spec = TlsSpec { host: "x.test".into(), warn_days: 14, critical_days: 7, ..TlsSpec::default() };
        let lax = TlsSpec { verify_chain: false, ..spec.clone() };
        for (spec, info, want) in [
            (&spec, info(90, true), Status::Up),
            (&spec, info(14, true), Status::Up),
            (&spec, info(13, true), Status::Degraded),
            (&spec, info(7, true), Status::Degraded),
            (&spec, info(6, true), Status::Down),
            (&spec, info(-1, true), Status::Down),
            (&spec, info(90, false), Status::Down),
            (&lax, info(90, false), Status::Up),
            (&lax, info(-3, false), Status::Down),
        ] {
            let o = judge(spec, info.clone(), NOW, Duration::ZERO);
            assert_eq!(o.status, want, "{info:?} verify_chain={}: {o}", spec.verify_chain);
            assert_eq!(o.error.is_some(), want != Status::Up);
        }
    }
}
