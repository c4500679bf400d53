//! TCP checks: a listener with and without a banner, an echo, a closed port,
//! a server that never speaks.

mod support;

use std::time::Duration;

use support::{closed_port, prober, tcp_server};
use tokio::time::Instant;
use uptime_probe::{CheckSpec, Detail, ErrorKind, Outcome, Phase, Status, TcpDetail, TcpSpec};

const TIMEOUT: Duration = Duration::from_secs(5);

fn spec(addr: std::net::SocketAddr) -> TcpSpec {
    TcpSpec { host: addr.ip().to_string(), port: addr.port(), ..TcpSpec::default() }
}

async fn check(s: TcpSpec, timeout: Duration) -> Outcome {
    let s = CheckSpec::Tcp(s);
    s.validate().unwrap();
    prober().check(&s, timeout).await.unwrap()
}

fn detail(o: &Outcome) -> &TcpDetail {
    match &o.detail {
        Detail::Tcp(d) => d,
        other => panic!("not a tcp detail: {other:?}"),
    }
}

#[tokio::test]
async fn t10_a_listener_without_banner_is_up_on_connect() {
    let addr = tcp_server(None).await;
    let o = check(spec(addr), TIMEOUT).await;
    assert_eq!(o.status, Status::Up, "{o}");
    assert_eq!(detail(&o).remote, Some(addr));
    assert!(o.phases.unwrap().connect.is_some());
}

#[tokio::test]
async fn t20_banners_are_matched() {
    let addr = tcp_server(Some("SSH-2.0-OpenSSH_9.2\r\n")).await;
    let o = check(TcpSpec { expect_banner: Some("SSH-2.0".into()), ..spec(addr) }, TIMEOUT).await;
    assert_eq!(o.status, Status::Up, "{o}");
    assert_eq!(detail(&o).banner.as_deref(), Some("SSH-2.0-OpenSSH_9.2\r\n"));

    let o = check(TcpSpec { expect_banner: Some("220 smtp".into()), ..spec(addr) }, Duration::from_millis(300)).await;
    assert_eq!(o.status, Status::Down, "{o}");
    assert!(matches!(o.error_kind(), Some(ErrorKind::Timeout | ErrorKind::Banner)), "{o}");
}

#[tokio::test]
async fn t30_bytes_sent_come_back_from_an_echo_server() {
    let addr = tcp_server(None).await;
    let o = check(TcpSpec { send: Some("PING\r\n".into()), expect_banner: Some("PING".into()), ..spec(addr) }, TIMEOUT)
        .await;
    assert_eq!(o.status, Status::Up, "{o}");
    assert!(o.phases.unwrap().first_byte.is_some());
}

#[tokio::test]
async fn t40_a_closed_port_is_refused() {
    let addr = closed_port().await;
    let o = check(spec(addr), TIMEOUT).await;
    let e = o.error.as_ref().unwrap();
    assert_eq!((o.status, e.kind, e.phase), (Status::Down, ErrorKind::Refused, Some(Phase::Connect)), "{o}");
}

#[tokio::test]
async fn t50_a_silent_server_times_out_waiting_for_the_banner() {
    let addr = tcp_server(None).await;
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let o = check(TcpSpec { expect_banner: Some("hello".into()), ..spec(addr) }, timeout).await;
    let e = o.error.as_ref().unwrap();
    assert_eq!((e.kind, e.phase), (ErrorKind::Timeout, Some(Phase::Body)), "{o}");
    assert!(started.elapsed() < timeout + Duration::from_secs(1));
}
