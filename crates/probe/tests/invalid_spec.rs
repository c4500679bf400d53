//! Specs that skipped validation (built in code, or written by an older node)
//! reach the prober as an `Err` naming the field, never a panic or a probe.

use std::time::Duration;

use uptime_probe::{CheckSpec, Config, DnsSpec, Error, HttpSpec, Prober, TcpSpec};

#[tokio::test]
async fn invalid_specs_are_errors_naming_the_field() {
    let config = Config { nameservers: vec!["127.0.0.1:9".parse().unwrap()], ..Config::default() };
    let prober = Prober::new(config).unwrap();
    for (spec, field) in [
        (CheckSpec::Http(HttpSpec { url: "ftp://x.test/".into(), ..HttpSpec::default() }), "url"),
        (
            CheckSpec::Http(HttpSpec { url: "http://x.test/".into(), method: "g e t".into(), ..HttpSpec::default() }),
            "method",
        ),
        (
            CheckSpec::Http(HttpSpec {
                url: "http://x.test/".into(),
                body_regex: Some("(unclosed".into()),
                ..HttpSpec::default()
            }),
            "body_regex",
        ),
        (
            CheckSpec::Dns(DnsSpec { name: "x.test".into(), server: Some("not-an-ip".into()), ..DnsSpec::default() }),
            "server",
        ),
    ] {
        assert_eq!(spec.validate().unwrap_err().field, field);
        match prober.check(&spec, Duration::from_secs(1)).await {
            Err(Error::Spec(e)) => assert_eq!(e.field, field, "{spec:?}"),
            other => panic!("{spec:?}: {other:?}"),
        }
    }
    // Out-of-range values that cannot mislead the prober still run safely.
    let odd = CheckSpec::Tcp(TcpSpec { host: "127.0.0.1".into(), port: 0, ..TcpSpec::default() });
    assert!(odd.validate().is_err());
    let outcome = prober.check(&odd, Duration::from_millis(500)).await.unwrap();
    assert_ne!(outcome.status, uptime_probe::Status::Up);
}
