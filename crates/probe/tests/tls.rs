//! TLS expiry checks and HTTPS against local TLS servers whose certificates
//! the test makes: a valid private chain, an expired leaf and a wrong name.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::{clock_at, http_server, Pki, VALID_UNTIL};
use uptime_probe::{CertInfo, CheckSpec, Config, Detail, ErrorKind, HttpSpec, Outcome, Prober, Status, TlsSpec};

const TIMEOUT: Duration = Duration::from_secs(5);
const DAY: u64 = 86_400;

/// A prober trusting `pki`'s CA, optionally at a fixed time.
fn prober(pki: &Pki, now: Option<u64>) -> Prober {
    let config = Config { webpki_roots: false, nameservers: vec!["127.0.0.1:9".parse().unwrap()], ..Config::default() };
    let mut b = Prober::builder(config).trust(pki.ca.clone());
    if let Some(now) = now {
        b = b.clock(clock_at(now));
    }
    b.build().unwrap()
}

fn tls(addr: SocketAddr, sni: &str) -> TlsSpec {
    TlsSpec { host: addr.ip().to_string(), port: addr.port(), sni: Some(sni.into()), ..TlsSpec::default() }
}

async fn check(p: &Prober, spec: CheckSpec) -> Outcome {
    spec.validate().unwrap();
    p.check(&spec, TIMEOUT).await.unwrap()
}

fn cert(o: &Outcome) -> &CertInfo {
    match &o.detail {
        Detail::Tls(c) => c,
        other => panic!("not a tls detail: {other:?}"),
    }
}

#[tokio::test]
async fn t10_a_valid_chain_is_up_and_reports_the_leaf() {
    let pki = Pki::new();
    let addr = http_server(Some(pki.server(&["svc.uptime.test"], false))).await;
    let o = check(&prober(&pki, None), CheckSpec::Tls(tls(addr, "svc.uptime.test"))).await;
    assert_eq!(o.status, Status::Up, "{o}");
    let c = cert(&o);
    assert!(c.chain_valid, "{c:?}");
    assert!(c.subject.contains("svc.uptime.test"), "{}", c.subject);
    assert!(c.issuer.contains("Uptime Test CA"), "{}", c.issuer);
    assert_eq!(c.not_after, VALID_UNTIL as i64);
    assert!(c.days_left > 365 * 50);
    assert_eq!(c.remote, Some(addr));
    let phases = o.phases.unwrap();
    assert!(phases.connect.is_some() && phases.tls.is_some(), "{phases:?}");
}

#[tokio::test]
async fn t20_days_left_warn_and_critical() {
    let pki = Pki::new();
    let addr = http_server(Some(pki.server(&["svc.uptime.test"], false))).await;
    let spec = CheckSpec::Tls(TlsSpec { warn_days: 30, critical_days: 7, ..tls(addr, "svc.uptime.test") });
    for (days_before, want, days_left) in
        [(60, Status::Up, 60), (20, Status::Degraded, 20), (3, Status::Down, 3), (0, Status::Down, 0)]
    {
        let o = check(&prober(&pki, Some(VALID_UNTIL - days_before * DAY)), spec.clone()).await;
        assert_eq!(o.status, want, "{days_before} days before expiry: {o}");
        assert_eq!(cert(&o).days_left, days_left);
        if want != Status::Up {
            assert_eq!(o.error_kind(), Some(ErrorKind::Certificate));
        }
    }
}

#[tokio::test]
async fn t30_an_expired_leaf_is_read_and_down() {
    let pki = Pki::new();
    let addr = http_server(Some(pki.server(&["old.uptime.test"], true))).await;
    let o = check(&prober(&pki, None), CheckSpec::Tls(tls(addr, "old.uptime.test"))).await;
    assert_eq!((o.status, o.error_kind()), (Status::Down, Some(ErrorKind::Certificate)), "{o}");
    let c = cert(&o);
    assert!(c.days_left < -365, "{c:?}");
    assert!(!c.chain_valid && c.subject.contains("old.uptime.test"), "{c:?}");
    assert!(o.error.unwrap().message.contains("expired"));
}

#[tokio::test]
async fn t40_a_wrong_name_is_read_and_down_unless_the_chain_is_not_judged() {
    let pki = Pki::new();
    let addr = http_server(Some(pki.server(&["right.uptime.test"], false))).await;
    let p = prober(&pki, None);
    let o = check(&p, CheckSpec::Tls(tls(addr, "wrong.uptime.test"))).await;
    assert_eq!((o.status, o.error_kind()), (Status::Down, Some(ErrorKind::Certificate)), "{o}");
    let c = cert(&o);
    assert!(!c.chain_valid && c.subject.contains("right.uptime.test"), "{c:?}");
    assert!(c.chain_error.as_deref().unwrap_or_default().to_lowercase().contains("name"), "{c:?}");

    let lax = TlsSpec { verify_chain: false, ..tls(addr, "wrong.uptime.test") };
    assert_eq!(check(&p, CheckSpec::Tls(lax)).await.status, Status::Up);
}

#[tokio::test]
async fn t50_an_untrusted_issuer_is_down() {
    let pki = Pki::new();
    let addr = http_server(Some(pki.server(&["svc.uptime.test"], false))).await;
    let stranger = prober(&Pki::new(), None);
    let o = check(&stranger, CheckSpec::Tls(tls(addr, "svc.uptime.test"))).await;
    assert_eq!(o.error_kind(), Some(ErrorKind::Certificate), "{o}");
    assert!(cert(&o).subject.contains("svc.uptime.test"));
}

#[tokio::test]
async fn t60_https_verifies_unless_told_not_to() {
    let pki = Pki::new();
    let good = http_server(Some(pki.server(&["127.0.0.1"], false))).await;
    let misnamed = http_server(Some(pki.server(&["elsewhere.uptime.test"], false))).await;
    let p = prober(&pki, None);
    let https = |addr: SocketAddr| HttpSpec { url: format!("https://{addr}/status/200"), ..HttpSpec::default() };

    let o = check(&p, CheckSpec::Http(https(good))).await;
    assert_eq!(o.status, Status::Up, "{o}");
    assert!(o.phases.unwrap().tls.is_some());

    let o = check(&p, CheckSpec::Http(https(misnamed))).await;
    assert_eq!(o.error_kind(), Some(ErrorKind::Certificate), "{o}");

    let unverified = HttpSpec { verify_tls: false, ..https(misnamed) };
    assert_eq!(check(&p, CheckSpec::Http(unverified)).await.status, Status::Up);
}

#[tokio::test]
async fn t70_a_server_that_is_not_tls_fails_the_handshake() {
    let pki = Pki::new();
    let addr = support::tcp_server(Some("SSH-2.0-OpenSSH_9.2\r\n")).await;
    let o = check(&prober(&pki, None), CheckSpec::Tls(tls(addr, "svc.uptime.test"))).await;
    assert_eq!(o.error_kind(), Some(ErrorKind::Tls), "{o}");
}

/// Unix time of the test leaves' `not_before`: 2000-01-01T00:00:00Z.
const VALID_FROM: u64 = 946_684_800;

/// Issue 10 point 4: a certificate not yet valid was UP when the chain was not
/// judged, and the days shown near expiry were off by one. A table over an
/// injected clock, against a real TLS server.
#[tokio::test]
async fn t80_validity_edges_judged_at_the_second() {
    let pki = Pki::new();
    let addr = http_server(Some(pki.server(&["svc.uptime.test"], false))).await;
    let strict = TlsSpec { warn_days: 14, critical_days: 7, ..tls(addr, "svc.uptime.test") };
    let lax = TlsSpec { verify_chain: false, ..strict.clone() };
    let before_expiry = |secs: u64| VALID_UNTIL - secs;
    let after_expiry = |secs: u64| VALID_UNTIL + secs;
    for (spec, now, want, days_left, says) in [
        (&lax, VALID_FROM - 30 * DAY, Status::Down, None, "not valid before"),
        (&strict, VALID_FROM - 30 * DAY, Status::Down, None, "not valid before"),
        (&lax, VALID_FROM - 1, Status::Down, None, "not valid before"),
        (&lax, VALID_FROM, Status::Up, None, ""),
        (&lax, before_expiry(14 * DAY), Status::Up, Some(14), ""),
        (&lax, before_expiry(14 * DAY - 1), Status::Degraded, Some(13), "expires in 13 day(s)"),
        (&lax, before_expiry(7 * DAY), Status::Degraded, Some(7), "expires in 7 day(s)"),
        (&lax, before_expiry(7 * DAY - 1), Status::Down, Some(6), "expires in 6 day(s)"),
        (&lax, before_expiry(1), Status::Down, Some(0), "expires in 0 day(s)"),
        // `notAfter` itself is still valid (RFC 5280 §4.1.2.5: "through").
        (&lax, VALID_UNTIL, Status::Down, Some(0), "expires in 0 day(s)"),
        (&lax, after_expiry(1), Status::Down, Some(-1), "expired less than a day ago"),
        (&lax, after_expiry(DAY - 1), Status::Down, Some(-1), "expired less than a day ago"),
        (&lax, after_expiry(DAY), Status::Down, Some(-1), "expired 1 day(s) ago"),
        (&lax, after_expiry(3 * DAY + 5), Status::Down, Some(-4), "expired 3 day(s) ago"),
    ] {
        let o = check(&prober(&pki, Some(now)), CheckSpec::Tls(spec.clone())).await;
        assert_eq!(o.status, want, "at {now} (verify_chain={}): {o}", spec.verify_chain);
        if let Some(d) = days_left {
            assert_eq!(cert(&o).days_left, d, "at {now}: {o}");
        }
        let message = o.error.as_ref().map(|e| e.message.clone()).unwrap_or_default();
        assert!(message.contains(says), "at {now}: {message:?} should say {says:?}");
        if want != Status::Up {
            assert_eq!(o.error_kind(), Some(ErrorKind::Certificate), "{o}");
        }
    }
}
