//! DNS checks against a local responder: expected values per record type,
//! NXDOMAIN, an empty answer, a server that never answers.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::Duration;

use hickory_proto::rr::rdata::{A, MX, TXT};
use hickory_proto::rr::{Name, RData};
use support::{dns_server, prober, silent_udp};
use uptime_probe::{CheckSpec, Detail, DnsRecordType, DnsSpec, ErrorKind, Outcome, Status};

const TIMEOUT: Duration = Duration::from_secs(5);

fn spec(server: SocketAddr, name: &str, record_type: DnsRecordType, expect: &[&str]) -> DnsSpec {
    DnsSpec {
        name: name.into(),
        record_type,
        server: Some(server.to_string()),
        expect: expect.iter().map(|s| s.to_string()).collect(),
    }
}

async fn check(s: DnsSpec, timeout: Duration) -> Outcome {
    let s = CheckSpec::Dns(s);
    s.validate().unwrap();
    prober().check(&s, timeout).await.unwrap()
}

async fn server() -> support::DnsServer {
    dns_server(vec![
        ("www.uptime.test", 60, RData::A(A(Ipv4Addr::new(192, 0, 2, 10)))),
        ("www.uptime.test", 60, RData::A(A(Ipv4Addr::new(192, 0, 2, 11)))),
        ("uptime.test", 60, RData::TXT(TXT::new(vec!["v=spf1 ".into(), "-all".into()]))),
        ("uptime.test", 60, RData::MX(MX::new(10, Name::from_ascii("mail.uptime.test.").unwrap()))),
    ])
    .await
}

#[tokio::test]
async fn t10_expected_answers_are_up() {
    let dns = server().await;
    let o = check(spec(dns.addr, "www.uptime.test", DnsRecordType::A, &["192.0.2.11"]), TIMEOUT).await;
    assert_eq!(o.status, Status::Up, "{o}");
    let Detail::Dns(d) = &o.detail else { panic!("{o:?}") };
    assert_eq!(d.answers, ["192.0.2.10", "192.0.2.11"]);

    let o = check(spec(dns.addr, "uptime.test", DnsRecordType::Txt, &["v=spf1 -all"]), TIMEOUT).await;
    assert_eq!(o.status, Status::Up, "{o}");
    let o = check(spec(dns.addr, "uptime.test", DnsRecordType::Mx, &["mail.uptime.test"]), TIMEOUT).await;
    assert_eq!(o.status, Status::Up, "{o}");
    let o = check(spec(dns.addr, "WWW.uptime.test.", DnsRecordType::A, &[]), TIMEOUT).await;
    assert_eq!(o.status, Status::Up, "any answer will do: {o}");
}

#[tokio::test]
async fn t20_a_missing_value_is_down_and_names_what_came_back() {
    let dns = server().await;
    let o = check(spec(dns.addr, "www.uptime.test", DnsRecordType::A, &["192.0.2.99"]), TIMEOUT).await;
    assert_eq!((o.status, o.error_kind()), (Status::Down, Some(ErrorKind::DnsAnswer)), "{o}");
    assert!(o.error.unwrap().message.contains("192.0.2.10"));
}

#[tokio::test]
async fn t30_nxdomain_and_empty_answers_are_down() {
    let dns = server().await;
    let o = check(spec(dns.addr, "nope.uptime.test", DnsRecordType::A, &[]), TIMEOUT).await;
    assert_eq!(o.error_kind(), Some(ErrorKind::DnsAnswer), "{o}");
    let o = check(spec(dns.addr, "www.uptime.test", DnsRecordType::Aaaa, &[]), TIMEOUT).await;
    assert_eq!(o.error_kind(), Some(ErrorKind::DnsAnswer), "{o}");
}

#[tokio::test]
async fn t40_every_check_asks_the_server() {
    let dns = server().await;
    for _ in 0..3 {
        check(spec(dns.addr, "www.uptime.test", DnsRecordType::A, &[]), TIMEOUT).await;
    }
    assert_eq!(dns.queries.load(Ordering::SeqCst), 3, "a DNS check must not be answered from a cache");
}

#[tokio::test]
async fn t50_a_silent_server_times_out_within_the_timeout() {
    let addr = silent_udp().await;
    let timeout = Duration::from_millis(300);
    let started = tokio::time::Instant::now();
    let o = check(spec(addr, "www.uptime.test", DnsRecordType::A, &[]), timeout).await;
    assert_eq!(o.status, Status::Down, "{o}");
    assert!(matches!(o.error_kind(), Some(ErrorKind::Timeout | ErrorKind::Dns)), "{o}");
    assert!(started.elapsed() < timeout + Duration::from_secs(1));
}

/// Names pinned in the hosts file of the node: a DNS check must still ask the
/// server, so a dead server is never UP. (Issue 10 point 1: hickory's hosts
/// lookup answered them in 0.04 ms with the server dead.)
fn names_in_etc_hosts() -> Vec<String> {
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    hosts
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(|l| l.split_whitespace().skip(1).map(str::to_string).collect::<Vec<_>>())
        .filter(|n| CheckSpec::Dns(DnsSpec { name: n.clone(), ..DnsSpec::default() }).validate().is_ok())
        .collect()
}

#[tokio::test]
async fn t60_a_name_in_the_hosts_file_is_asked_of_the_server() {
    let names = names_in_etc_hosts();
    if names.is_empty() {
        println!("skipped: /etc/hosts pins no name a DNS check accepts");
        return;
    }
    let dead = silent_udp().await;
    for name in names {
        for t in [DnsRecordType::A, DnsRecordType::Aaaa] {
            let o = check(spec(dead, &name, t, &[]), Duration::from_millis(300)).await;
            assert_ne!(o.status, Status::Up, "{name} {t} from a dead server: {o}");
        }
    }
}

/// Names hickory answers itself whatever the configuration (RFC 6761:
/// `localhost`, `*.localhost`, `*.invalid`; RFC 7686 `*.onion`; the loopback
/// reverse zones): a check of them would never reach the server, so they
/// are refused at validation, naming the field.
#[test]
fn t65_names_that_cannot_be_asked_of_a_server_are_refused() {
    for name in [
        "localhost",
        "LOCALHOST.",
        "db.localhost",
        "x.invalid",
        "invalid",
        "abc.onion",
        "1.0.0.127.in-addr.arpa",
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa",
    ] {
        let s = CheckSpec::Dns(DnsSpec { name: name.into(), ..DnsSpec::default() });
        let err = s.validate().expect_err(name);
        assert_eq!(err.field, "name", "{name}: {err}");
        assert!(err.message.contains("never sent"), "{name}: {err}");
    }
    for name in ["localhost.example.test", "invalid.example.test", "x.local", "2.0.0.10.in-addr.arpa"] {
        CheckSpec::Dns(DnsSpec { name: name.into(), ..DnsSpec::default() }).validate().expect(name);
    }
}

#[tokio::test]
async fn t66_a_dead_server_is_not_up_for_any_accepted_name() {
    let dead = silent_udp().await;
    let o = check(spec(dead, "x.local", DnsRecordType::A, &[]), Duration::from_millis(300)).await;
    assert_ne!(o.status, Status::Up, "{o}");
}
