//! A check never outlives its timeout, and a timeout names the phase that ran
//! out: DNS, connect, TLS handshake, first byte, or the whole check.

mod support;

use std::time::Duration;

use support::{full_backlog, prober, prober_with, silent_tcp, silent_udp};
use tokio::time::Instant;
use uptime_probe::{CheckSpec, ErrorKind, HttpSpec, Outcome, Phase, Prober, Status, TcpSpec, TlsSpec};

/// Slack for a loaded CI machine; still far below the 5 s the uncapped phases would take.
const MARGIN: Duration = Duration::from_secs(1);

async fn timed(p: &Prober, spec: CheckSpec, timeout: Duration) -> (Outcome, Duration) {
    spec.validate().unwrap();
    let started = Instant::now();
    let o = p.check(&spec, timeout).await.unwrap();
    (o, started.elapsed())
}

fn assert_timeout(o: &Outcome, phase: Phase) {
    assert_eq!(o.status, Status::Down, "{o}");
    let e = o.error.as_ref().unwrap();
    assert_eq!((e.kind, e.phase), (ErrorKind::Timeout, Some(phase)), "{o}");
}

#[tokio::test]
async fn t10_a_silent_resolver_is_a_dns_timeout() {
    let dns = silent_udp().await;
    let p = prober_with(vec![dns], |c| c.dns_timeout = Duration::from_millis(200));
    let spec = CheckSpec::Http(HttpSpec { url: "http://slow-dns.uptime.test/".into(), ..HttpSpec::default() });
    let (o, took) = timed(&p, spec, Duration::from_secs(5)).await;
    assert_timeout(&o, Phase::Dns);
    assert!(took < Duration::from_millis(200) + MARGIN, "the DNS cap, not the total, ended it: {took:?}");
}

#[tokio::test]
async fn t20_a_full_accept_queue_is_a_connect_timeout() {
    let (addr, _fillers, _listener) = full_backlog().await;
    let p = prober_with(Vec::new(), |c| c.connect_timeout = Duration::from_millis(300));
    let spec = CheckSpec::Tcp(TcpSpec { host: addr.ip().to_string(), port: addr.port(), ..TcpSpec::default() });
    let (o, took) = timed(&p, spec, Duration::from_secs(5)).await;
    if o.status == Status::Up {
        println!("skipped: this kernel completed a connect to a full accept queue");
        return;
    }
    assert_timeout(&o, Phase::Connect);
    assert!(took < Duration::from_millis(300) + MARGIN, "{took:?}");
}

#[tokio::test]
async fn t30_a_server_that_never_answers_the_hello_is_a_tls_timeout() {
    let addr = silent_tcp().await;
    let p = prober_with(Vec::new(), |c| c.tls_timeout = Duration::from_millis(250));
    let spec = CheckSpec::Tls(TlsSpec { host: addr.ip().to_string(), port: addr.port(), ..TlsSpec::default() });
    let (o, took) = timed(&p, spec, Duration::from_secs(5)).await;
    assert_timeout(&o, Phase::Tls);
    assert!(took < Duration::from_millis(250) + MARGIN, "{took:?}");

    let https = CheckSpec::Http(HttpSpec { url: format!("https://{addr}/"), ..HttpSpec::default() });
    let (o, _) = timed(&p, https, Duration::from_secs(5)).await;
    assert_timeout(&o, Phase::Tls);
}

#[tokio::test]
async fn t40_the_total_timeout_caps_every_phase() {
    // Each phase alone may take 5 s; the check may take 300 ms in all.
    let addr = silent_tcp().await;
    let timeout = Duration::from_millis(300);
    for spec in [
        CheckSpec::Http(HttpSpec { url: format!("http://{addr}/"), ..HttpSpec::default() }),
        CheckSpec::Http(HttpSpec { url: format!("https://{addr}/"), ..HttpSpec::default() }),
        CheckSpec::Tls(TlsSpec { host: addr.ip().to_string(), port: addr.port(), ..TlsSpec::default() }),
        CheckSpec::Tcp(TcpSpec {
            host: addr.ip().to_string(),
            port: addr.port(),
            expect_banner: Some("hi".into()),
            ..TcpSpec::default()
        }),
    ] {
        let (o, took) = timed(&prober(), spec.clone(), timeout).await;
        assert_eq!(o.error_kind(), Some(ErrorKind::Timeout), "{spec:?}: {o}");
        assert!(took >= timeout && took < timeout + MARGIN, "{spec:?} took {took:?}");
        assert!(o.latency <= took);
    }
}
