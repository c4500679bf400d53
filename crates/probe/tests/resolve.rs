//! How targets' names resolve (HTTP, TCP, TLS and ICMP checks share it),
//! against a real DNS responder on loopback whose records the tests change:
//! cache lifetimes are capped so a recovery or a removal shows within the cap,
//! and the first address family that answers is used.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::rr::rdata::A;
use hickory_proto::rr::RData;
use support::{dns_server, prober_with, tcp_server};
use tokio::time::Instant;
use uptime_probe::{CheckSpec, Outcome, Prober, Status, TcpSpec};

const TIMEOUT: Duration = Duration::from_secs(3);
/// A day: what a zone may ask resolvers to cache its answers for.
const DAY: u32 = 86_400;

async fn check(p: &Prober, name: &str, port: u16) -> Outcome {
    let spec = CheckSpec::Tcp(TcpSpec { host: name.into(), port, ..TcpSpec::default() });
    spec.validate().unwrap();
    p.check(&spec, TIMEOUT).await.unwrap()
}

/// Checks until `want` or `within` has passed; the last outcome.
async fn poll_until(p: &Prober, name: &str, target: SocketAddr, want: Status, within: Duration) -> Outcome {
    let deadline = Instant::now() + within;
    loop {
        let o = check(p, name, target.port()).await;
        if o.status == want || Instant::now() >= deadline {
            return o;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn loopback() -> RData {
    RData::A(A(Ipv4Addr::LOCALHOST))
}

/// Issue 10 point 2: a negative answer was cached for its SOA minimum (up to
/// a day), so a restored record stayed DOWN with no query sent.
#[tokio::test]
async fn t10_a_restored_record_is_up_again_within_the_cache_cap() {
    let target = tcp_server(None).await;
    let dns = dns_server(vec![]).await;
    dns.negative_ttl.store(DAY, std::sync::atomic::Ordering::SeqCst);
    let p = prober_with(vec![dns.addr], |c| c.dns_cache_max_ttl = Duration::from_secs(1));
    let o = check(&p, "back.uptime.test", target.port()).await;
    assert_eq!(o.status, Status::Down, "no record yet: {o}");
    dns.insert("back.uptime.test", DAY, loopback());
    let o = poll_until(&p, "back.uptime.test", target, Status::Up, Duration::from_secs(4)).await;
    assert_eq!(o.status, Status::Up, "restored record, cap 1 s: {o}");
}

/// A deleted record stopped being used only after its TTL (a day here).
#[tokio::test]
async fn t20_a_deleted_record_stops_being_up_within_the_cache_cap() {
    let target = tcp_server(None).await;
    let dns = dns_server(vec![("gone.uptime.test", DAY, loopback())]).await;
    let p = prober_with(vec![dns.addr], |c| c.dns_cache_max_ttl = Duration::from_secs(1));
    let o = check(&p, "gone.uptime.test", target.port()).await;
    assert_eq!(o.status, Status::Up, "{o}");
    dns.remove("gone.uptime.test");
    let o = poll_until(&p, "gone.uptime.test", target, Status::Down, Duration::from_secs(4)).await;
    assert_eq!(o.status, Status::Down, "deleted record, cap 1 s: {o}");
}

#[test]
fn t30_the_cache_cap_is_validated() {
    for cap in [Duration::ZERO, Duration::from_secs(3601)] {
        let c = uptime_probe::Config { dns_cache_max_ttl: cap, ..uptime_probe::Config::default() };
        match c.validate() {
            Err(uptime_probe::Error::Config { field, .. }) => assert_eq!(field, "dns_cache_max_ttl"),
            other => panic!("{cap:?}: {other:?}"),
        }
    }
}

/// Issue 10 point 7: a resolver that drops AAAA queries failed the DNS phase
/// although A had answered. Both are asked at once; the first family that
/// answers is used.
#[tokio::test]
async fn t40_a_resolver_that_drops_aaaa_queries_does_not_fail_the_lookup() {
    let target = tcp_server(None).await;
    let dns = dns_server(vec![("v4only.uptime.test", 60, loopback())]).await;
    dns.drop_aaaa.store(true, std::sync::atomic::Ordering::SeqCst);
    let p = prober_with(vec![dns.addr], |_| {});
    let o = check(&p, "v4only.uptime.test", target.port()).await;
    assert_eq!(o.status, Status::Up, "{o}");
    let dns_phase = o.phases.and_then(|ph| ph.dns).unwrap();
    assert!(dns_phase < TIMEOUT / 2, "the lookup did not wait for the AAAA answer: {dns_phase:?}");
}

/// A name with only an AAAA record (or only an A) still resolves: an empty
/// answer of one family does not end the lookup while the other may answer.
#[tokio::test]
async fn t50_one_empty_family_waits_for_the_other() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        println!("skipped: this machine has no IPv6 loopback");
        return;
    }
    let listener = tokio::net::TcpListener::bind("[::1]:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { while listener.accept().await.is_ok() {} });
    let dns = dns_server(vec![(
        "v6only.uptime.test",
        60,
        RData::AAAA(hickory_proto::rr::rdata::AAAA(std::net::Ipv6Addr::LOCALHOST)),
    )])
    .await;
    let p = prober_with(vec![dns.addr], |_| {});
    let o = check(&p, "v6only.uptime.test", port).await;
    assert_eq!(o.status, Status::Up, "{o}");
}
