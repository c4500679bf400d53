//! What the per-endpoint cap counts a check against, and the queue of runs
//! waiting for it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tokio::time::Instant;

use super::MonitorId;
use crate::spec::{join_host_port, split_host_port};
use crate::CheckSpec;

/// The endpoint a check is capped by, as people read it (it names the endpoint
/// in reports).
///
/// Connection checks (HTTP, TCP, TLS, ICMP) count against the `(host, port)`
/// they connect to: many monitors on one server share its cap.
///
/// DNS checks count against the *question* they ask one resolver — the name,
/// and the resolver actually asked: the spec's `server`, else `nameservers`
/// (the prober's configured ones), else the system's. Not the resolver alone:
/// a recursive resolver answers for every zone, and a dead zone hangs only
/// the names in it, so one cap for the resolver would let one dead zone starve
/// every DNS check of the node (it did: a node ran 8 at once). What a
/// resolver is asked in total is bounded by the node-wide cap.
pub(crate) fn key(spec: &CheckSpec, nameservers: Option<&[SocketAddr]>) -> String {
    match spec {
        CheckSpec::Dns(dns) => {
            let resolver = match (dns.server.as_deref(), nameservers) {
                // A server that does not parse (a spec that never validated) is
                // named as written; the prober refuses it anyway.
                (Some(server), _) => match split_host_port(server, Some(53)) {
                    Ok((host, port)) => join_host_port(&host, port),
                    Err(_) => server.to_string(),
                },
                (None, Some(list)) if !list.is_empty() => {
                    list.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
                }
                (None, Some(_)) => "the system resolver".to_string(),
                (None, None) => "the node's resolver".to_string(),
            };
            format!("{} via {resolver}", dns.name.trim_end_matches('.').to_ascii_lowercase())
        }
        other => {
            let (host, port) = other.endpoint();
            if port == 0 {
                host
            } else {
                join_host_port(&host, port)
            }
        }
    }
}

/// One endpoint's share of the node: checks running against it and runs
/// queued for it, in order.
#[derive(Default)]
pub(super) struct Endpoint {
    pub in_flight: usize,
    pub waiting: VecDeque<Waiting>,
    /// Checks to it that got an answer (any outcome but a timeout), counted by
    /// the runs themselves. A queued run that ran out of time compares it with
    /// the count when it queued: an endpoint that kept answering is alive and
    /// the node's own cap held the run up; one that did not is timing out.
    pub answered: Arc<AtomicU64>,
}

/// A run waiting for its endpoint's cap.
#[derive(Clone, Copy, Debug)]
pub(super) struct Waiting {
    /// Matches the monitor's `RunState::Queued`, so a monitor removed (or
    /// moved to another endpoint) and re-added is not taken for its old run.
    pub seq: u64,
    pub id: MonitorId,
    pub due: Instant,
    /// The wait counts against the run's timeout from here.
    pub queued_at: Instant,
    /// [`Endpoint::answered`] when it queued.
    pub answered: u64,
    /// Checks to the endpoint in flight when it queued (its cap), for reports.
    pub in_flight: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DnsSpec;

    #[test]
    fn checks_are_keyed_by_what_they_ask() {
        let t = |k, target| key(&CheckSpec::from_target(k, target).unwrap(), None);
        let dns = |name: &str, server: Option<&str>, ns: Option<&[SocketAddr]>| {
            key(
                &CheckSpec::Dns(DnsSpec { name: name.into(), server: server.map(Into::into), ..DnsSpec::default() }),
                ns,
            )
        };
        let ns: Vec<SocketAddr> = vec!["127.0.0.53:53".parse().unwrap(), "[::1]:5353".parse().unwrap()];
        for (got, want) in [
            (t("http", "http://Example.test/x"), "example.test:80"),
            (t("http", "https://example.test:8443/"), "example.test:8443"),
            (t("tcp", "[::1]:22"), "[::1]:22"),
            (t("icmp", "10.0.0.1"), "10.0.0.1"),
            (dns("A.example.test.", Some("127.0.0.1"), None), "a.example.test via 127.0.0.1:53"),
            (dns("a.example.test", Some("[::1]:5353"), Some(&ns)), "a.example.test via [::1]:5353"),
            (dns("a.example.test", None, Some(&ns)), "a.example.test via 127.0.0.53:53,[::1]:5353"),
            (dns("a.example.test", None, Some(&[])), "a.example.test via the system resolver"),
            (dns("a.example.test", None, None), "a.example.test via the node's resolver"),
        ] {
            assert_eq!(got, want);
        }
        // Two names through one resolver are two endpoints.
        assert_ne!(dns("a.test", None, Some(&ns)), dns("b.test", None, Some(&ns)));
    }
}
