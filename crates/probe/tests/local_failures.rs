//! Failures of the probing node itself are not the target being down (issue
//! 10 point 5): out of file descriptors, a configured source address the host
//! does not have. Such a check is "could not check" (`Err`, no vote), with a
//! message naming the local cause, never an `Outcome` with `Status::Down`.
//!
//! 192.0.2.1 (TEST-NET-1) is only ever *bound*, never sent to: the bind fails
//! on this host before any packet leaves it.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::{http_server, prober_with, tcp_server};
use uptime_probe::{CheckSpec, Error, HttpSpec, Prober, TcpSpec, TlsSpec};

const TIMEOUT: Duration = Duration::from_secs(2);

fn specs(addr: SocketAddr) -> Vec<CheckSpec> {
    vec![
        CheckSpec::Tcp(TcpSpec { host: addr.ip().to_string(), port: addr.port(), ..TcpSpec::default() }),
        CheckSpec::Http(HttpSpec { url: format!("http://{addr}/status/200"), ..HttpSpec::default() }),
        CheckSpec::Tls(TlsSpec { host: addr.ip().to_string(), port: addr.port(), ..TlsSpec::default() }),
    ]
}

async fn expect_local(p: &Prober, spec: &CheckSpec, cause: &str) {
    match p.check(spec, TIMEOUT).await {
        Err(e @ Error::LocalResource { .. }) => {
            assert!(e.to_string().contains(cause), "{spec:?}: {e}");
        }
        other => panic!("{} check: expected a local failure naming {cause:?}, got {other:?}", spec.kind()),
    }
}

#[tokio::test]
async fn t10_a_source_address_the_host_does_not_have_is_not_down() {
    let addr = http_server(None).await;
    let p = prober_with(Vec::new(), |c| c.source_addrs = vec!["192.0.2.1".parse().unwrap()]);
    for spec in specs(addr) {
        expect_local(&p, &spec, "192.0.2.1").await;
    }
}

/// Set in the child process [`t20_running_out_of_file_descriptors_is_not_down`] starts.
const CHILD: &str = "UPTIME_PROBE_TEST_EMFILE_CHILD";

/// The open-file limit is lowered in a child process (this test binary, run
/// again for this test alone), never in the shared test process.
#[test]
fn t20_running_out_of_file_descriptors_is_not_down() {
    if std::env::var_os(CHILD).is_some() {
        return emfile_child();
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["t20_running_out_of_file_descriptors_is_not_down", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("child done"), "the child did not run the check:\n{stdout}\n{stderr}");
}

fn emfile_child() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let addr = tcp_server(None).await;
        let p = prober_with(Vec::new(), |_| {});
        let spec = &specs(addr)[0];
        assert!(p.check(spec, TIMEOUT).await.is_ok(), "the check works before the limit");
        let old = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        rustix::process::setrlimit(
            rustix::process::Resource::Nofile,
            rustix::process::Rlimit { current: Some(64), maximum: old.maximum },
        )
        .unwrap();
        // Fill every descriptor left under the lowered limit.
        let mut held = Vec::new();
        while let Ok(f) = std::fs::File::open("/dev/null") {
            held.push(f);
            assert!(held.len() < 100_000, "the lowered open-file limit is not enforced");
        }
        for spec in specs(addr) {
            expect_local(&p, &spec, "file descriptors").await;
        }
        drop(held);
        println!("child done");
    });
}

#[test]
fn t30_the_open_file_limit_can_be_raised_to_the_hard_limit() {
    let raised = uptime_probe::raise_open_file_limit().unwrap();
    let now = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    assert_eq!(Some(raised), now.current.or(Some(u64::MAX)));
    assert_eq!(now.current, now.maximum, "{now:?}");
}
