#![allow(dead_code)] // the shared harness has more than these tests use

//! Alert delivery end to end: real `uptime-node` processes, a real target
//! flipped down and up, and a recording, fencing webhook sink (`sink.rs`).
//! What a receiver sees is asserted: how many requests, with which
//! idempotency keys and fencing tokens, and what the API says about them.

#[path = "../cluster/harness.rs"]
mod harness;
mod sink;
#[path = "../cluster/target.rs"]
mod target;

use std::collections::BTreeSet;

use futures::StreamExt;
use std::time::Duration;

use harness::{monitor, wait_until, TestCluster};
use sink::{Received, Sink};
use target::Target;
use uptime_api::dto::{ChannelView, NotificationView};
use uptime_api::Client;

const SECRET: &str = "hmac-secret-4f1c9e";
const HEADER_SECRET: &str = "Bearer header-secret-77aa";
/// Retries fast enough for a test: 500 ms, doubling, at most 1 s.
const ALERTS: &str = "[alerts]\nretry_backoff_ms = 500\nretry_max_backoff_ms = 1000\n";

struct Setup {
    cluster: TestCluster,
    target: Target,
    sink: Sink,
    c: Client,
}

async fn setup(env_file: Option<&std::path::Path>) -> Setup {
    let mut cluster = TestCluster::start_with_tables(3, "", ALERTS).await;
    if let Some(f) = env_file {
        let value = f.display().to_string();
        cluster.restart_all_with_env(&[("UPTIMETEST_DISPATCH_HOLD_AFTER_CLAIM", value.as_str())]).await;
    }
    let target = Target::start().await;
    let sink = Sink::start().await;
    let c = cluster.client(1);
    let mut headers = std::collections::BTreeMap::new();
    headers.insert("Authorization".to_string(), HEADER_SECRET.to_string());
    headers.insert("X-Team".to_string(), "infra".to_string());
    c.create_channel(&ChannelView {
        name: "hook".into(),
        kind: "webhook".into(),
        url: Some(sink.url.clone()),
        secret: Some(SECRET.into()),
        headers,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut m = monitor("web");
    m.target = target.url.clone();
    m.interval = Some("1s".into());
    m.timeout = Some("1s".into());
    m.channels = vec!["hook".into()];
    c.create_monitor(&m).await.unwrap();
    wait_state(&c, "web", "up").await;
    Setup { cluster, target, sink, c }
}

async fn wait_state(c: &Client, name: &str, state: &str) {
    wait_until(&format!("{name} {state}"), Duration::from_secs(30), || {
        let c = c.clone();
        async move { c.get_monitor(name).await.ok().filter(|m| m.state == state) }
    })
    .await;
}

fn kinds(rs: &[Received]) -> Vec<String> {
    rs.iter().map(|r| r.json()["kind"].as_str().unwrap_or("?").to_string()).collect()
}

/// The incident's notifications once every one is sent or dead.
async fn settled(c: &Client, incident: u64) -> Vec<NotificationView> {
    wait_until("the incident's notifications to settle", Duration::from_secs(30), || {
        let c = c.clone();
        async move {
            let ns = c.incident_deliveries(&incident.to_string()).await.ok()?;
            ns.iter().all(|n| n.state == "sent" || n.state == "dead").then_some(ns)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a10_one_incident_delivers_one_open_and_one_resolve_signed_keyed_and_fenced() {
    let s = setup(None).await;
    assert!(s.sink.received().is_empty(), "nothing is sent before an incident");

    s.target.set_up(false);
    s.sink.wait_for("the open alert", Duration::from_secs(30), |r| !r.is_empty()).await;
    s.target.set_up(true);
    s.sink.wait_for("the resolve alert", Duration::from_secs(30), |r| r.len() >= 2).await;
    let incident = s.c.list_incidents(None).await.unwrap()[0].id;
    let ns = settled(&s.c, incident).await;

    let got = s.sink.received();
    assert_eq!(kinds(&got), ["open", "resolve"], "{got:#?}");
    for (r, n) in got.iter().zip(&ns) {
        assert_eq!(r.path, "/hook");
        // The idempotency key is the notification id; the token names the claim.
        assert_eq!(r.header("idempotency-key"), Some(n.id.to_string().as_str()));
        assert_eq!(r.header("x-uptime-fencing-token"), Some(n.deliveries[0].fencing_token.as_str()));
        assert_eq!(r.header("x-team"), Some("infra"));
        assert_eq!(r.header("authorization"), Some(HEADER_SECRET));
        let body = r.json();
        assert_eq!(body["incident_id"], incident);
        assert_eq!(body["monitor"]["name"], "web");
        assert_eq!(body["monitor"]["target"], s.target.url.as_str());
        // A receiver verifies the signature with the shared secret.
        let ts = r.header("x-uptime-timestamp").expect("a timestamp header");
        let sig = r.header("x-uptime-signature").expect("a signature header");
        assert!(uptime_notify::verify_signature(SECRET, ts, r.body.as_bytes(), sig), "{r:#?}");
        assert!(!uptime_notify::verify_signature("wrong", ts, r.body.as_bytes(), sig));
    }
    assert!(got[0].json()["verdict"].as_str().is_some());
    // Each record was sent once, on its first attempt.
    let outcomes: Vec<(String, u32, String)> =
        ns.iter().map(|n| (n.kind.clone(), n.attempts, n.deliveries[0].outcome.clone())).collect();
    assert_eq!(outcomes, [("open".into(), 1, "sent".into()), ("resolve".into(), 1, "sent".into())]);

    // Secrets never leave the API, nor reach a log.
    let shown = format!("{:?}{:?}", s.c.get_channel("hook").await.unwrap(), s.c.list_channels().await.unwrap());
    for secret in [SECRET, HEADER_SECRET] {
        assert!(!shown.contains(secret), "{secret} shown: {shown}");
        for id in 1..=3 {
            assert!(!s.cluster.log(id).contains(secret), "{secret} in node {id}'s log");
        }
    }
    assert!(shown.contains("<redacted>"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a20_a_failing_receiver_gets_retries_with_backoff_and_a_dead_record_is_listed() {
    let s = setup(None).await;
    // Fails twice, then succeeds: delivered once, on the third attempt.
    s.sink.fail_next(2);
    s.target.set_up(false);
    s.sink.wait_for("three attempts", Duration::from_secs(30), |r| r.len() >= 3).await;
    let incident = s.c.list_incidents(None).await.unwrap()[0].id;
    let ns = settled(&s.c, incident).await;
    let got = s.sink.received();
    let statuses: Vec<u16> = got.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 500, 200], "delivered once, after two failures: {got:#?}");
    let keys: BTreeSet<_> = got.iter().map(|r| r.header("idempotency-key").unwrap().to_string()).collect();
    assert_eq!(keys.len(), 1, "every attempt carries the same key: {got:#?}");
    // The delivery log: failures, then the success. A leader change under a
    // loaded machine may add an `interrupted` attempt (a claim whose outcome
    // its leader never recorded), always under an older claim than the next.
    let d = &ns[0].deliveries;
    let outcomes: Vec<&str> = d.iter().map(|d| d.outcome.as_str()).collect();
    assert_eq!(outcomes.last(), Some(&"sent"), "{ns:#?}");
    assert_eq!(outcomes.iter().filter(|o| **o == "sent").count(), 1, "{ns:#?}");
    assert!(outcomes.iter().all(|o| matches!(*o, "failed" | "interrupted" | "sent")), "{ns:#?}");
    assert!(outcomes.iter().filter(|o| **o == "failed").count() >= 1, "{ns:#?}");
    assert_eq!(d[0].status, Some(500));
    let token = |i: usize| -> Vec<u64> { d[i].fencing_token.split('-').map(|p| p.parse().unwrap()).collect() };
    for i in 1..d.len() {
        assert!(token(i)[2] > token(i - 1)[2], "each attempt runs under a later claim: {ns:#?}");
    }
    let at = |i: usize| humantime::parse_rfc3339(&d[i].at).unwrap();
    assert!(at(1).duration_since(at(0)).unwrap() >= Duration::from_millis(300), "no backoff: {ns:#?}");

    // Always fails: the resolve notification dies at the attempt cap and is listed.
    s.sink.always_fail(true);
    s.target.set_up(true);
    let dead = wait_until("a dead notification", Duration::from_secs(60), || {
        let c = s.c.clone();
        async move { c.list_outbox(Some("dead")).await.ok().filter(|l| !l.is_empty()) }
    })
    .await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].kind, "resolve");
    // Eight attempts that count (a `deferred` one never started); each failed
    // with the receiver's 500, or was interrupted by a leader change.
    let counted: Vec<_> = dead[0].deliveries.iter().filter(|d| d.outcome != "deferred").collect();
    assert_eq!(counted.len(), uptime_raft_store::MAX_ATTEMPTS as usize, "{dead:#?}");
    assert!(counted.iter().all(|d| (d.outcome == "failed" && d.status == Some(500)) || d.outcome == "interrupted"));
    assert!(counted.iter().filter(|d| d.outcome == "failed").count() >= 1);
    let inc = s.c.get_incident(&incident.to_string()).await.unwrap();
    assert!(inc.timeline.iter().any(|e| e.kind == "notification" && e.text.contains("given up")), "{inc:#?}");
    let page = s.c.metrics().await.unwrap();
    assert!(page.contains("uptime_notifications{state=\"dead\"} 1\n"), "{page}");
    assert!(page.contains("uptime_notification_deliveries_total{outcome=\"sent\"} 1\n"), "{page}");
    // The CLI lists it too.
    let out = uptimectl(&s.cluster, &["outbox", "list", "--state", "dead"]);
    assert!(out.contains("dead") && out.contains("resolve"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a30_a_leader_killed_between_claim_and_send_is_replaced_and_the_alert_sent_once_with_the_same_key() {
    let hold = tempfile::NamedTempFile::new().unwrap();
    let mut s = setup(Some(hold.path())).await;
    let leader = s.cluster.leader(1, None).await;
    s.target.set_up(false);
    // The leader claims the open notification, then holds (the failpoint).
    let claimed = wait_until("the open notification claimed", Duration::from_secs(30), || {
        let c = s.c.clone();
        async move { c.list_outbox(Some("claimed")).await.ok().filter(|l| !l.is_empty()) }
    })
    .await;
    std::fs::remove_file(hold.path()).unwrap(); // the next leader does not hold
    s.cluster.kill(leader);
    let other = if leader == 1 { 2 } else { 1 };
    let c = s.cluster.client(other);
    s.sink.wait_for("the open alert from the new leader", Duration::from_secs(30), |r| !r.is_empty()).await;
    let ns = settled(&c, claimed[0].incident_id).await;
    let got = s.sink.received();
    assert_eq!(got.len(), 1, "sent exactly once: {got:#?}");
    assert_eq!(got[0].header("idempotency-key"), Some(claimed[0].id.to_string().as_str()));
    let (term, node) = got[0].leader().unwrap();
    assert_ne!(node, leader, "sent by the new leader");
    let outcomes: Vec<(&str, String)> =
        ns[0].deliveries.iter().map(|d| (d.outcome.as_str(), d.fencing_token.clone())).collect();
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    // The held claim shows as interrupted, under the old leader's token.
    assert_eq!(outcomes[0].0, "interrupted");
    let old: Vec<u64> = outcomes[0].1.split('-').map(|p| p.parse().unwrap()).collect();
    assert_eq!(old[1], leader, "{outcomes:?}");
    assert!(old[0] < term, "the new leader's term is later: {outcomes:?}");
    assert_eq!(outcomes[1], ("sent", got[0].header("x-uptime-fencing-token").unwrap().to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a40_a_paused_leader_mid_send_is_deposed_and_the_fencing_sink_accepts_nothing_from_it() {
    let s = setup(None).await;
    let old = s.cluster.leader(1, None).await;
    let old_term = s.c.cluster_status().await.unwrap().term;
    // The old leader's send is slow on the wire: held at the sink, unjudged.
    s.sink.hold_term(old_term);
    s.target.set_up(false);
    s.sink.wait_until("the old leader's send on the wire", Duration::from_secs(30), |s| s.held() == 1).await;
    s.cluster.signal(old, "STOP");
    let other = if old == 1 { 2 } else { 1 };
    let c = s.cluster.client(other);
    let new = s.cluster.leader(other, Some(old)).await;
    // The new leader takes the claim over and delivers it.
    s.sink.wait_for("the new leader's delivery", Duration::from_secs(30), |r| r.iter().any(|r| r.status == 200)).await;
    s.cluster.signal(old, "CONT");
    // The old leader's request finally arrives: the sink refuses it as stale.
    s.sink.release();
    s.sink.wait_for("the old leader's request judged", Duration::from_secs(30), |r| r.len() >= 2).await;
    let got = s.sink.received();
    let accepted: Vec<&Received> = got.iter().filter(|r| r.status == 200).collect();
    assert_eq!(accepted.len(), 1, "{got:#?}");
    assert_eq!(accepted[0].leader().map(|l| l.1), Some(new));
    assert!(accepted.iter().all(|r| r.leader().map(|l| l.1) != Some(old)), "{got:#?}");
    assert_eq!(s.sink.stale_rejected(), 1);
    let keys: BTreeSet<_> = got.iter().map(|r| r.header("idempotency-key").unwrap()).collect();
    assert_eq!(keys.len(), 1, "the same notification, the same key: {got:#?}");
    // The old leader, back, follows and records nothing over the new leader's outcome.
    let incident = c.list_incidents(None).await.unwrap()[0].id;
    let ns = settled(&c, incident).await;
    assert_eq!(ns[0].state, "sent");
    assert_eq!(ns[0].deliveries.last().unwrap().outcome, "sent");
    s.cluster.wait_healthy(3).await;
}

/// A TCP target for many monitors: accepts while up; once closed, its port
/// refuses connections.
struct TcpTarget {
    addr: String,
    stop: tokio_util::sync::CancellationToken,
}

impl TcpTarget {
    async fn start() -> TcpTarget {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = tokio_util::sync::CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = s.cancelled() => return, // drops the listener: the port refuses
                    accepted = listener.accept() => drop(accepted),
                }
            }
        });
        TcpTarget { addr, stop }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a50_a_thousand_monitors_down_together_all_deliver_none_twice() {
    const N: usize = 1_000;
    // Every monitor checks the same host:port: lift the per-endpoint cap (8 by
    // default), or most checks would wait their turn and report "not checked".
    let cluster = TestCluster::start_custom(3, "", "max_in_flight_per_endpoint = 1024", ALERTS).await;
    let sink = Sink::start().await;
    let target = TcpTarget::start().await;
    let c = cluster.client(1);
    c.create_channel(&ChannelView {
        name: "hook".into(),
        kind: "webhook".into(),
        url: Some(sink.url.clone()),
        default: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let creates = (0..N).map(|i| {
        let c = c.clone();
        let mut m = monitor(&format!("m{i}"));
        m.kind = "tcp".into();
        m.target = target.addr.clone();
        m.interval = Some("5s".into());
        m.timeout = Some("2s".into());
        async move { c.create_monitor(&m).await }
    });
    let created = futures::stream::iter(creates).buffer_unordered(32).collect::<Vec<_>>().await;
    assert!(created.iter().all(Result::is_ok), "{:?}", created.iter().find(|r| r.is_err()));
    wait_until("all monitors up", Duration::from_secs(60), || {
        let c = c.clone();
        async move { c.list_monitors(false).await.ok().filter(|l| l.len() == N && l.iter().all(|m| m.state == "up")) }
    })
    .await;
    target.stop.cancel();
    sink.wait_for("1000 deliveries", Duration::from_secs(180), |r| r.len() >= N).await;
    wait_until("every notification sent", Duration::from_secs(30), || {
        let c = c.clone();
        async move { c.list_outbox(Some("due")).await.ok().filter(|l| l.is_empty()) }
    })
    .await;
    let got = sink.received();
    let keys: BTreeSet<&str> = got.iter().map(|r| r.header("idempotency-key").unwrap()).collect();
    let page = c.metrics().await.unwrap();
    let outcomes: Vec<&str> = page.lines().filter(|l| l.starts_with("uptime_notification_deliveries_total{")).collect();
    assert_eq!(got.len(), N, "one delivery each, none twice; attempts recorded: {outcomes:?}");
    assert_eq!(keys.len(), N);
    let incidents: BTreeSet<u64> = got.iter().map(|r| r.json()["incident_id"].as_u64().unwrap()).collect();
    assert_eq!(incidents.len(), N, "one per incident");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a60_a_node_cut_off_from_its_quorum_says_so_once_and_again_when_back_and_the_leader_pings_the_deadman() {
    let sink = Sink::start().await;
    let base = sink.url.trim_end_matches("/hook").to_string();
    let tables = format!(
        "{ALERTS}\n[alerts.lost_quorum]\nurl = \"{base}/lost\"\nafter_ms = 1000\nrepeat_ms = 1000\n\n\
         [alerts.deadman]\nurl = \"{base}/deadman\"\ninterval_ms = 1000\n"
    );
    let mut cluster = TestCluster::start_with_tables(3, "", &tables).await;
    let leader = cluster.leader(1, None).await;
    // The leader pings the dead man's switch; followers do not.
    sink.wait_for("a dead man's switch ping", Duration::from_secs(20), |r| r.iter().any(|r| r.path == "/deadman"))
        .await;
    let pings: Vec<Received> = sink.received().into_iter().filter(|r| r.path == "/deadman").collect();
    assert!(pings.iter().all(|r| r.json()["leader"] == leader && r.json()["kind"] == "heartbeat"), "{pings:#?}");
    assert!(pings.iter().all(|r| r.header("x-uptime-fencing-token") == Some("unfenced")));

    // Two of three down: the survivor is out of contact with a quorum.
    let survivor = if leader == 1 { 2 } else { 1 };
    let others: Vec<u64> = (1..=3).filter(|id| *id != survivor).collect();
    for id in &others {
        cluster.kill(*id);
    }
    let lost = |r: &Received| r.path == "/lost" && r.json()["kind"] == "lost_quorum";
    sink.wait_for("the survivor's lost-quorum notice", Duration::from_secs(30), |r| r.iter().any(lost)).await;
    for id in &others {
        cluster.spawn(*id);
    }
    cluster.wait_healthy(3).await;
    let restored = |r: &Received| r.path == "/lost" && r.json()["kind"] == "quorum_restored";
    sink.wait_for("the survivor's notice that contact is back", Duration::from_secs(30), |r| r.iter().any(restored))
        .await;
    let notices: Vec<Received> = sink.received().into_iter().filter(|r| r.path == "/lost").collect();
    let from_survivor = |r: &&Received| r.json()["node_id"] == survivor;
    assert_eq!(notices.iter().filter(|r| lost(r)).filter(from_survivor).count(), 1, "{notices:#?}");
    assert_eq!(notices.iter().filter(|r| restored(r)).filter(from_survivor).count(), 1, "{notices:#?}");
    assert!(notices.iter().all(|r| r.json()["node_id"] == survivor), "only the cut-off node spoke: {notices:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a70_bad_channels_and_policies_are_refused_by_field_and_channel_test_reports_the_outcome() {
    let cluster = TestCluster::start_with_tables(3, "", ALERTS).await;
    let sink = Sink::start().await;
    let c = cluster.client(1);
    let field_of = |e: uptime_api::ClientError| match e {
        uptime_api::ClientError::Api { status: 400, field, .. } => field,
        other => panic!("expected a 400, got {other:?}"),
    };
    let hook = |url: &str| ChannelView {
        name: "hook".into(),
        kind: "webhook".into(),
        url: Some(url.into()),
        ..Default::default()
    };
    let cases: Vec<(ChannelView, &str)> = vec![
        (hook("ftp://example.com/x"), "url"),
        (hook("not a url"), "url"),
        (
            ChannelView {
                name: "mail".into(),
                kind: "smtp".into(),
                from: Some("a@b.c".into()),
                to: vec!["d@e.f".into()],
                ..Default::default()
            },
            "host",
        ),
        (
            ChannelView {
                name: "s".into(),
                kind: "slack".into(),
                url: Some("https://hooks.slack.com/x".into()),
                secret: Some("x".into()),
                ..Default::default()
            },
            "secret",
        ),
        (ChannelView { body: Some("{{ nope }}".into()), ..hook(&sink.url) }, "body"),
        (ChannelView { subject: Some("{% if %}".into()), ..hook(&sink.url) }, "subject"),
        (ChannelView { kind: "carrier-pigeon".into(), ..hook(&sink.url) }, "kind"),
        (ChannelView { name: "has space".into(), ..hook(&sink.url) }, "name"),
    ];
    for (body, field) in cases {
        let e = c.create_channel(&body).await.expect_err(&format!("{body:?} was accepted"));
        assert_eq!(field_of(e).as_deref(), Some(field), "{body:?}");
    }
    assert!(c.list_channels().await.unwrap().is_empty(), "a refused channel changed the state");
    let mut m = monitor("web");
    m.channels = vec!["nope".into()];
    assert_eq!(field_of(c.create_monitor(&m).await.unwrap_err()).as_deref(), Some("channels"));
    assert!(c.list_monitors(false).await.unwrap().is_empty());

    // channel test: one real send of a synthetic alert, and its outcome.
    let out = uptimectl(&cluster, &["channel", "add", "webhook", "hook", "--url", &sink.url]);
    assert!(out.contains("hook"), "{out}");
    let out = uptimectl(&cluster, &["channel", "test", "hook"]);
    assert!(out.contains("delivered"), "{out}");
    let got = sink.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json()["kind"], "test");
    sink.always_fail(true);
    let failed = uptimectl_fails(&cluster, &["channel", "test", "hook"]);
    assert!(failed.contains("500") && failed.lines().count() == 1, "{failed}");

    // A used channel cannot be deleted; the refusal names the monitor.
    m.channels = vec!["hook".into()];
    c.create_monitor(&m).await.unwrap();
    let refused = uptimectl_fails(&cluster, &["channel", "rm", "hook"]);
    assert!(refused.contains("web"), "{refused}");
    assert!(c.get_channel("hook").await.is_ok());
}

/// Runs `uptimectl` against node 1.
fn run_uptimectl(cluster: &TestCluster, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_uptimectl"))
        .args(args)
        .env("UPTIMECTL_ENDPOINT", cluster.client(1).endpoint())
        .env("UPTIMECTL_TOKEN", harness::TOKEN)
        .output()
        .unwrap()
}

/// `uptimectl ARGS` must succeed; its stdout.
fn uptimectl(cluster: &TestCluster, args: &[&str]) -> String {
    let out = run_uptimectl(cluster, args);
    assert!(out.status.success(), "uptimectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `uptimectl ARGS` must fail; its stderr.
fn uptimectl_fails(cluster: &TestCluster, args: &[&str]) -> String {
    let out = run_uptimectl(cluster, args);
    assert!(!out.status.success(), "uptimectl {args:?} succeeded: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}
