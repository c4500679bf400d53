//! One jepsen-lite run: a cluster, the sink, the target fleet; the workload,
//! the flips and the nemesis side by side for the run's length; then heal,
//! settle, and check. [`Results`] is the run's JSON.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use uptime_api::dto::{ChannelView, CreateMonitor, IncidentAction, IncidentView};

use crate::check;
use crate::cluster::Cluster;
use crate::nemesis::{self, FaultRecord};
use crate::net::Partitions;
use crate::schedule::{self, Nemesis};
use crate::sink::Sink;
use crate::targets::{self, Target};
use crate::{History, Input, Op, Output};

#[derive(Clone, Debug)]
pub struct Config {
    pub root: PathBuf,
    pub dir: PathBuf,
    pub nodes: u64,
    pub length: Duration,
    pub seed: u64,
    pub nemeses: Vec<Nemesis>,
    pub targets: usize,
    pub clients: u64,
    pub keys: u64,
    /// Extra environment for the nodes (e.g. a failpoint).
    pub node_env: Vec<(String, String)>,
    /// How partitions are made.
    pub net: Net,
}

/// How a run cuts node pairs apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Net {
    /// nftables rules on the 127.0.0.K pairs (root).
    Nft,
    /// The harness's TCP proxy in front of every peer listener (no root).
    Proxy,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Results {
    pub runs: u64,
    pub seed: u64,
    /// When the run's clock started (Unix ms): fault times are on the same clock.
    pub started_at_ms: u64,
    pub nodes: u64,
    pub seconds: f64,
    pub ops: u64,
    pub acknowledged_writes: u64,
    pub lost_writes: u64,
    pub linearizable: bool,
    pub incidents: u64,
    pub deliveries: u64,
    pub distinct_deliveries: u64,
    pub duplicates_unexplained: u64,
    pub duplicates_after_crash: u64,
    pub missed_alerts: u64,
    pub stale_term_accepted: u64,
    pub stale_rejected: u64,
    pub state_hash_agree: bool,
    /// The most the replicated state time ran ahead of the real time on any
    /// node, in ms (sampled twice a second through every node).
    pub state_time_max_ahead_ms: i64,
    /// Samples in which a node's state time was behind its previous sample.
    pub state_time_backwards: u64,
    /// Panics in any node's log.
    pub node_panics: u64,
    /// Nodes that stopped on their own, outside a fault, and were started
    /// again by the harness as a service manager would.
    #[serde(default)]
    pub supervisor_restarts: u64,
    /// Of those, stops that were not a full disk's (must be 0).
    #[serde(default)]
    pub unexpected_exits: u64,
    pub outages: u64,
    pub outages_without_incident: u64,
    pub minority_flips: u64,
    pub minority_flips_with_incident: u64,
    pub acks: u64,
    pub faults: Vec<FaultRecord>,
    pub findings: Vec<String>,
}

impl Results {
    /// Whether every checker holds.
    pub fn ok(&self) -> bool {
        self.lost_writes == 0
            && self.linearizable
            && self.duplicates_unexplained == 0
            && self.missed_alerts == 0
            && self.stale_term_accepted == 0
            && self.state_hash_agree
            && self.state_time_max_ahead_ms <= STATE_TIME_SLACK_MS
            && self.state_time_backwards == 0
            && self.node_panics == 0
            && self.outages_without_incident == 0
            && self.unexpected_exits == 0
    }

    pub fn summary(&self) -> String {
        let verdict = if self.ok() { "PASS" } else { "FAIL" };
        let mut kinds: BTreeMap<&str, u64> = BTreeMap::new();
        for f in &self.faults {
            *kinds.entry(f.kind.as_str()).or_default() += 1;
        }
        let mut s = format!(
            "jepsen-lite {verdict}: seed {} · {} nodes · {:.0} s · faults {:?}\n\
             ops {} · acknowledged writes {} · lost {} · linearizable {}\n\
             incidents {} · outages {} (without incident {}) · minority flips {} (with incident {}) · acks {}\n\
             deliveries {} · distinct {} · duplicates unexplained {} · after a crash {} · missed {} · stale term accepted {} · stale refused {}\n\
             state hashes agree {} · state time ahead at most {} ms · backwards {} · node panics {} · restarted by the supervisor {} (unexpected {})\n",
            self.seed,
            self.nodes,
            self.seconds,
            kinds,
            self.ops,
            self.acknowledged_writes,
            self.lost_writes,
            self.linearizable,
            self.incidents,
            self.outages,
            self.outages_without_incident,
            self.minority_flips,
            self.minority_flips_with_incident,
            self.acks,
            self.deliveries,
            self.distinct_deliveries,
            self.duplicates_unexplained,
            self.duplicates_after_crash,
            self.missed_alerts,
            self.stale_term_accepted,
            self.stale_rejected,
            self.state_hash_agree,
            self.state_time_max_ahead_ms,
            self.state_time_backwards,
            self.node_panics,
            self.supervisor_restarts,
            self.unexpected_exits,
        );
        for f in self.findings.iter().take(20) {
            s.push_str(&format!("  {f}\n"));
        }
        s
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Tries `f` on every node in turn until one answers, for up to `limit`.
async fn any_node<T, F, Fut>(cluster: &Cluster, limit: Duration, f: F) -> Result<T, String>
where
    F: Fn(uptime_api::Client) -> Fut,
    Fut: std::future::Future<Output = Result<T, uptime_api::ClientError>>,
{
    let deadline = Instant::now() + limit;
    let mut last = String::from("no node answered");
    loop {
        for k in 1..=cluster.nodes {
            match f(cluster.client(k)?).await {
                Ok(v) => return Ok(v),
                Err(e) => last = format!("node {k}: {e}"),
            }
        }
        if Instant::now() > deadline {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// How far ahead of the real time a node's state time may be seen: the
/// voters' clocks are sampled every 500 ms and carried forward, and a
/// status request takes time; a clock that moved state time would move it
/// by the step (ten minutes or more).
pub const STATE_TIME_SLACK_MS: i64 = 5_000;

/// Where Debian's libfaketime is (`JEPSEN_LIBFAKETIME` overrides).
fn libfaketime() -> Result<String, String> {
    let path = std::env::var("JEPSEN_LIBFAKETIME")
        .unwrap_or_else(|_| "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1".into());
    if Path::new(&path).exists() {
        Ok(path)
    } else {
        Err(format!("the clock nemesis needs libfaketime ({path}: apt-get install libfaketime)"))
    }
}

/// The nodes' setup for the nemeses asked for: libfaketime under every node
/// for `clock` (each reads its offset from `nodeK/faketime`, real time until
/// the nemesis writes one; monotonic time is left alone, as an NTP step
/// would), a tmpfs data directory per node for `disk`.
pub fn setup_for(nemeses: &[Nemesis]) -> Result<crate::cluster::Setup, String> {
    let mut setup = crate::cluster::Setup { extra_toml: NODE_TOML.into(), ..Default::default() };
    if nemeses.contains(&Nemesis::Clock) {
        setup.node_env = vec![
            ("LD_PRELOAD".into(), libfaketime()?),
            ("FAKETIME_TIMESTAMP_FILE".into(), "@NODE@/faketime".into()),
            ("FAKETIME_CACHE_DURATION".into(), "1".into()),
            ("DONT_FAKE_MONOTONIC".into(), "1".into()),
        ];
    }
    if nemeses.contains(&Nemesis::Disk) {
        setup.data_tmpfs = Some("512m".into());
    }
    Ok(setup)
}

/// One sample of a node's state time.
#[derive(Clone, Copy, Debug)]
struct TimeSample {
    node: u64,
    /// The real time when the answer came.
    real_ms: u64,
    state_ms: u64,
}

/// Samples every node's state time, round robin, twice a second, until `length` has passed.
async fn sample_time(cluster: Arc<Cluster>, start: Instant, length: Duration) -> Vec<TimeSample> {
    let mut out = Vec::new();
    let mut k = 0;
    while start.elapsed() < length {
        k = k % cluster.nodes + 1;
        if let Ok(c) = cluster.client(k) {
            if let Ok(s) = c.with_timeout(Duration::from_millis(1_500)).cluster_status().await {
                if s.state_time_ms > 0 {
                    out.push(TimeSample { node: k, real_ms: now_ms(), state_ms: s.state_time_ms });
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500 / cluster.nodes.max(1))).await;
    }
    out
}

/// The most state time ran ahead of real time, the backward steps, and a finding for each.
fn check_time(samples: &[TimeSample], findings: &mut Vec<String>) -> (i64, u64) {
    let mut ahead = i64::MIN;
    let mut backwards = 0;
    let mut last: BTreeMap<u64, u64> = BTreeMap::new();
    for s in samples {
        let a = s.state_ms as i64 - s.real_ms as i64;
        if a > STATE_TIME_SLACK_MS && a > ahead {
            findings.push(format!("node {}: state time {} ms ahead of the real time", s.node, a));
        }
        ahead = ahead.max(a);
        if let Some(prev) = last.insert(s.node, s.state_ms) {
            if s.state_ms < prev {
                backwards += 1;
                findings.push(format!("node {}: state time went back {} ms", s.node, prev - s.state_ms));
            }
        }
    }
    (if samples.is_empty() { 0 } else { ahead }, backwards)
}

/// Panics in the nodes' logs (a node must not panic on anything a fault does).
fn count_panics(cluster: &Cluster, findings: &mut Vec<String>) -> u64 {
    let mut n = 0;
    for k in 1..=cluster.nodes {
        let log = std::fs::read_to_string(cluster.node_dir(k).join("log")).unwrap_or_default();
        for line in log.lines().filter(|l| l.contains("panicked at")) {
            n += 1;
            findings.push(format!("node {k} panicked: {}", line.chars().take(300).collect::<String>()));
        }
    }
    n
}

const NODE_TOML: &str =
    "[probe]\nsource_addrs = [\"127.0.0.@K@\"]\n\n[alerts]\nretry_backoff_ms = 500\nretry_max_backoff_ms = 2000\n";

pub async fn run(cfg: &Config) -> Result<(Results, String), String> {
    for (k, v) in &cfg.node_env {
        std::env::set_var(k, v);
    }
    let setup = setup_for(&cfg.nemeses)?;
    let (cluster, mut parts) = match cfg.net {
        Net::Nft => {
            let parts = Partitions::new().map_err(|e| format!("nftables partitions need root and nft: {e}"))?;
            (Cluster::up(&cfg.root, &cfg.dir, cfg.nodes, &setup)?, parts)
        }
        Net::Proxy => {
            let (cluster, cuts) = Cluster::up_proxied(&cfg.root, &cfg.dir, cfg.nodes, &setup).await?;
            (cluster, Partitions::proxied(cuts))
        }
    };
    let cluster = Arc::new(cluster);
    let sink = Sink::start("127.0.0.200:0").await.map_err(|e| format!("sink: {e}"))?;
    let mut fleet = Vec::new();
    for _ in 0..cfg.targets {
        fleet.push(Target::start().await.map_err(|e| format!("target: {e}"))?);
    }

    // Watched monitors, one per target, alerting the sink.
    any_node(&cluster, Duration::from_secs(30), |c| {
        let url = format!("{}/hook", sink.url);
        async move {
            c.create_channel(&ChannelView {
                name: "sink".into(),
                kind: "webhook".into(),
                url: Some(url),
                ..Default::default()
            })
            .await
        }
    })
    .await?;
    let mut watched = BTreeMap::new();
    for (i, t) in fleet.iter().enumerate() {
        let m = CreateMonitor {
            name: format!("flip{i}"),
            kind: "http".into(),
            target: t.url.clone(),
            interval: Some("1s".into()),
            timeout: Some("1s".into()),
            channels: vec!["sink".into()],
            ..Default::default()
        };
        let view = any_node(&cluster, Duration::from_secs(30), |c| {
            let m = m.clone();
            async move { c.create_monitor(&m).await }
        })
        .await?;
        watched.insert(view.id, i);
    }

    let start = Instant::now();
    let start_ms = now_ms();
    let steps = schedule::draw(cfg.seed, cfg.length, cfg.nodes, &cfg.nemeses);
    let flips = targets::draw(cfg.seed, cfg.length, cfg.targets, cfg.nodes);

    let work = tokio::spawn(crate::workload::run(
        cluster.clone(),
        cfg.seed,
        cfg.clients,
        cfg.keys,
        cfg.length,
        "127.0.0.1:9".into(),
    ));
    let sampler = tokio::spawn(sample_time(cluster.clone(), start, cfg.length));
    let supervising = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let supervisor = tokio::spawn(nemesis::supervise(cluster.clone(), supervising.clone()));
    let flipper = {
        let (flips, fleet) = (flips.clone(), fleet.clone());
        tokio::spawn(async move {
            let mut events: Vec<(Duration, usize, Option<targets::Down>)> = Vec::new();
            for f in &flips {
                events.push((f.at, f.target, Some(f.down.clone())));
                events.push((f.at + f.hold, f.target, None));
            }
            events.sort_by_key(|e| e.0);
            for (at, t, down) in events {
                tokio::time::sleep_until((start + at).into()).await;
                fleet[t].set(down);
            }
        })
    };
    let acker = {
        let cluster = cluster.clone();
        let (length, seed) = (cfg.length, cfg.seed);
        tokio::spawn(async move {
            let mut acks = 0u64;
            let mut rng = schedule::Rng::new(seed ^ 0x6163_6b73);
            while start.elapsed() < length {
                tokio::time::sleep(Duration::from_secs(3)).await;
                let k = rng.between(1, cluster.nodes);
                let Ok(c) = cluster.client(k) else { continue };
                let Ok(open) = c.list_incidents(Some("triggered")).await else { continue };
                if let Some(i) = open.first() {
                    if c.incident_action(&i.id.to_string(), "ack", &IncidentAction::default()).await.is_ok() {
                        acks += 1;
                    }
                }
            }
            acks
        })
    };
    let mut faults = Vec::new();
    for step in &steps {
        tokio::time::sleep_until((start + step.at).into()).await;
        faults.push(nemesis::run(&cluster, &mut parts, step).await);
    }
    let ops = work.await.map_err(|e| e.to_string())?;
    let _ = flipper.await;
    let acks = acker.await.unwrap_or(0);
    let time_samples = sampler.await.unwrap_or_default();
    let _ = parts.heal();
    for f in &fleet {
        f.set(None);
    }
    let seconds = start.elapsed().as_secs_f64();

    // Settle: every watched incident resolved and its notifications final.
    let settle_until = Instant::now() + Duration::from_secs(90);
    let (incidents, outbox) = loop {
        let incidents: Vec<IncidentView> =
            any_node(&cluster, Duration::from_secs(30), |c| async move { c.list_incidents(None).await })
                .await?
                .into_iter()
                .filter(|i| i.monitor_id.is_some_and(|m| watched.contains_key(&m)))
                .collect();
        let outbox = any_node(&cluster, Duration::from_secs(30), |c| async move { c.list_outbox(None).await }).await?;
        let settled = incidents.iter().all(|i| i.state == "resolved")
            && outbox.iter().all(|n| n.state == "sent" || n.state == "dead");
        if settled || Instant::now() > settle_until {
            break (incidents, outbox);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let alert = check::alerts(&sink.deliveries(), &incidents, &outbox, |_| true);

    // Outages seen: every all-node flip has an incident of its monitor open
    // during it; no minority flip has one.
    let by_target: BTreeMap<usize, u64> = watched.iter().map(|(m, t)| (*t, *m)).collect();
    let during = |f: &targets::Flip| {
        let (a, b) = (start_ms + f.at.as_millis() as u64, start_ms + (f.at + f.hold).as_millis() as u64);
        incidents.iter().any(|i| {
            i.monitor_id == Some(by_target[&f.target])
                && i.opened_at_ms <= b + 5_000
                && i.resolved_at_ms.is_none_or(|r| r >= a)
        })
    };
    let outages: Vec<&targets::Flip> = flips.iter().filter(|f| f.down == targets::Down::All).collect();
    let minority: Vec<&targets::Flip> = flips.iter().filter(|f| f.down != targets::Down::All).collect();
    let mut findings = alert.findings.clone();
    let outages_without_incident = outages.iter().filter(|f| !during(f)).count() as u64;
    let minority_with = minority.iter().filter(|f| during(f)).count() as u64;
    for f in outages.iter().filter(|f| !during(f)) {
        findings
            .push(format!("outage without incident: flip{} down for all from {:?} for {:?}", f.target, f.at, f.hold));
    }

    // Linearizability, then again with a final read of every key: a key that
    // only fails with its final read lost an acknowledged write.
    // Bounded: a key the search cannot settle within the budget is
    // inconclusive, reported as not shown linearizable, never as a pass.
    let budget = crate::Budget {
        max_steps_per_key: std::num::NonZeroU64::new(2_000_000).expect("non-zero"),
        time_limit: Some(Duration::from_secs(60)),
    };
    let verdict = crate::check_with(&History::new(ops.clone()), &budget).map_err(|e| e.to_string())?;
    let linearizable = verdict.is_linearizable();
    if !linearizable {
        findings.push(format!("not linearizable: {verdict}"));
    }
    let mut with_final = ops.clone();
    let mut t = start.elapsed().as_nanos() as u64;
    // Every name written: a name past its generation must still hold its last write.
    let work_end = ops.iter().map(|o| o.call).max().unwrap_or(0);
    let names = crate::workload::keys(cfg.keys, Duration::from_nanos(work_end + 1));
    for key in names {
        let input = Input::Read { key: key.clone() };
        let call = t;
        let answer = any_node(&cluster, Duration::from_secs(30), |c| {
            let key = key.clone();
            async move {
                match c.get_monitor_consistent(&key, true).await {
                    Ok(m) => Ok(Some(m)),
                    Err(uptime_api::ClientError::Api { status: 404, .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            }
        })
        .await?;
        t = start.elapsed().as_nanos() as u64;
        let value = answer.and_then(|m| m.tags.iter().find_map(|t| t.strip_prefix('v')?.parse().ok()));
        with_final.push(Op::returned(u64::MAX - key.len() as u64, call, input, t.max(call + 1), Output::Value(value)));
    }
    let lost_writes = match crate::check_with(&History::new(with_final), &budget).map_err(|e| e.to_string())? {
        v if v.is_linearizable() => 0,
        crate::Verdict::NotLinearizable(vs) if linearizable => {
            findings.push(format!("lost writes on {:?}", vs.iter().map(|v| v.key.clone()).collect::<Vec<_>>()));
            vs.len() as u64
        }
        _ => 0,
    };

    let state_hash_agree = hashes_agree(&cluster).await;
    if !state_hash_agree {
        findings.push("state hashes differ after the heal".into());
    }
    supervising.store(true, std::sync::atomic::Ordering::Relaxed);
    let restarts = supervisor.await.unwrap_or_default();
    let mut unexpected_exits = 0;
    for (k, line) in &restarts {
        let expected = line.contains(nemesis::FULL_DISK_STOP);
        if !expected {
            unexpected_exits += 1;
        }
        findings.push(format!(
            "node {k} stopped{} and was restarted: {line}",
            if expected { " after a full disk" } else { " on its own" }
        ));
    }
    let (state_time_max_ahead_ms, state_time_backwards) = check_time(&time_samples, &mut findings);
    let node_panics = count_panics(&cluster, &mut findings);
    let acknowledged_writes = ops.iter().filter(|o| !o.input.is_read() && o.ret().is_some()).count() as u64;
    let svg = crate::plot::svg(&crate::plot::Timeline {
        start_ms,
        seconds,
        ops: &ops,
        faults: &faults,
        deliveries: &sink.deliveries(),
        flips: &flips,
    });
    let results = Results {
        runs: 1,
        seed: cfg.seed,
        started_at_ms: start_ms,
        nodes: cfg.nodes,
        seconds,
        ops: ops.len() as u64,
        acknowledged_writes,
        lost_writes,
        linearizable,
        incidents: alert.incidents,
        deliveries: alert.deliveries,
        distinct_deliveries: alert.distinct_deliveries,
        duplicates_unexplained: alert.duplicates_unexplained,
        duplicates_after_crash: alert.duplicates_after_crash,
        missed_alerts: alert.missed_alerts,
        stale_term_accepted: alert.stale_term_accepted,
        stale_rejected: alert.stale_rejected,
        state_hash_agree,
        state_time_max_ahead_ms,
        state_time_backwards,
        node_panics,
        supervisor_restarts: restarts.len() as u64,
        unexpected_exits,
        outages: outages.len() as u64,
        outages_without_incident,
        minority_flips: minority.len() as u64,
        minority_flips_with_incident: minority_with,
        acks,
        faults,
        findings,
    };
    Ok((results, svg))
}

/// Every node reports the same (applied index, hash) within 30 s.
pub async fn hashes_agree(cluster: &Cluster) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut hashes = std::collections::BTreeSet::new();
        let mut answered = 0;
        for k in 1..=cluster.nodes {
            let Ok(c) = cluster.client(k) else { continue };
            if let Ok(h) = c.state_hash().await {
                answered += 1;
                hashes.insert((h.applied_index, h.hash));
            }
        }
        if answered == cluster.nodes && hashes.len() == 1 {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Writes the results JSON, the history's faults and deliveries as a plot
/// beside it (`FILE.svg`), and the sink's deliveries (`FILE.deliveries.jsonl`).
pub fn write(out: &Path, results: &Results, svg: &str) -> Result<(), String> {
    let json = serde_json::to_string_pretty(results).map_err(|e| e.to_string())?;
    std::fs::write(out, json + "\n").map_err(|e| format!("{}: {e}", out.display()))?;
    let plot = out.with_extension("svg");
    std::fs::write(&plot, svg).map_err(|e| format!("{}: {e}", plot.display()))?;
    let partitions = out.with_extension("partitions.json");
    let json = serde_json::to_string_pretty(&partition_schedule(results)).map_err(|e| e.to_string())?;
    std::fs::write(&partitions, json + "\n").map_err(|e| format!("{}: {e}", partitions.display()))
}

/// One partition as `scripts/jepsen-alertmanager.sh --schedule` replays it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduledCut {
    pub start_s: f64,
    pub hold_s: f64,
    /// Directed cuts `[from, to]` among nodes 1–3 (Alertmanager runs three).
    pub cuts: Vec<[u64; 2]>,
    pub shape: String,
}

/// The run's partitions, as they happened, for Alertmanager's three
/// instances: cuts that name a node above 3 are left out (a 5-node run's
/// split keeps only its part among nodes 1–3), and a partition left with
/// no cut is dropped.
pub fn partition_schedule(results: &Results) -> Vec<ScheduledCut> {
    results
        .faults
        .iter()
        .filter(|f| f.kind == "partition")
        .filter_map(|f| {
            let cuts: Vec<[u64; 2]> = f
                .detail
                .split(',')
                .filter_map(|c| {
                    let (a, b) = c.split_once('>')?;
                    Some([a.trim().parse().ok()?, b.trim().parse().ok()?])
                })
                .filter(|[a, b]| *a <= 3 && *b <= 3)
                .collect();
            (!cuts.is_empty()).then(|| ScheduledCut {
                start_s: f.start_ms.saturating_sub(results.started_at_ms) as f64 / 1000.0,
                hold_s: f.end_ms.saturating_sub(f.start_ms) as f64 / 1000.0,
                cuts,
                shape: format!("jepsen-lite {}", f.detail),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(kind: &str, detail: &str, start_ms: u64, end_ms: u64) -> FaultRecord {
        FaultRecord { kind: kind.into(), detail: detail.into(), start_ms, end_ms, error: None }
    }

    #[test]
    fn the_partitions_replay_for_three_alertmanagers_and_the_rest_is_left_out() {
        let mut results = serde_json::from_value::<Results>(serde_json::json!({
            "runs": 1, "seed": 1, "started_at_ms": 10_000, "nodes": 5, "seconds": 60.0, "ops": 0,
            "acknowledged_writes": 0, "lost_writes": 0, "linearizable": true, "incidents": 0,
            "deliveries": 0, "distinct_deliveries": 0, "duplicates_unexplained": 0,
            "duplicates_after_crash": 0, "missed_alerts": 0, "stale_term_accepted": 0,
            "stale_rejected": 0, "state_hash_agree": true, "state_time_max_ahead_ms": 0,
            "state_time_backwards": 0, "node_panics": 0, "outages": 0, "outages_without_incident": 0,
            "minority_flips": 0, "minority_flips_with_incident": 0, "acks": 0, "faults": [],
            "findings": []
        }))
        .unwrap();
        results.faults = vec![
            fault("kill", "{1}", 11_000, 12_000),
            fault("partition", "1>2,2>1,1>4,4>1", 12_500, 20_000),
            fault("partition", "4>5", 21_000, 22_000),
        ];
        let s = partition_schedule(&results);
        assert_eq!(
            s,
            vec![ScheduledCut {
                start_s: 2.5,
                hold_s: 7.5,
                cuts: vec![[1, 2], [2, 1]],
                shape: "jepsen-lite 1>2,2>1,1>4,4>1".into()
            }]
        );
    }
}
