//! Criterion benches for the probe engine, against servers in this process
//! on 127.0.0.1: one fresh-connection TCP check, one fresh-connection HTTP
//! check, and parsing/validating a spec (what every API write pays).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use uptime_probe::{CheckSpec, Config, Prober, Status};

/// A minimal HTTP/1.1 server answering every request with a small 200 and closing.
async fn http_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n").await;
            });
        }
    });
    addr
}

fn checks(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let addr = rt.block_on(http_server());
    let prober = rt.block_on(async { Prober::new(Config::default()).unwrap() });
    let http = CheckSpec::from_target("http", &format!("http://{addr}/")).unwrap();
    let tcp = CheckSpec::from_target("tcp", &addr.to_string()).unwrap();
    let timeout = Duration::from_secs(5);

    c.bench_function("http_check_fresh_connection", |b| {
        b.iter(|| {
            let o = rt.block_on(prober.check(&http, timeout)).unwrap();
            assert_eq!(o.status, Status::Up);
        })
    });
    c.bench_function("tcp_check_connect", |b| {
        b.iter(|| {
            let o = rt.block_on(prober.check(&tcp, timeout)).unwrap();
            assert_eq!(o.status, Status::Up);
        })
    });
    c.bench_function("spec_from_target_and_validate", |b| {
        b.iter(|| CheckSpec::from_target("http", "https://status.example.test/health?deep=1").unwrap())
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(3));
    targets = checks
}
criterion_main!(benches);
