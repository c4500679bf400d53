//! The client workload: concurrent monitor writes (create, update, delete)
//! and linearizable reads through random nodes, on a small set of names so
//! that operations contend. Each operation is recorded with its invocation
//! and completion; an outcome the client cannot know (a timeout, the
//! server's `unknown_outcome`) is recorded as unknown, never as failed, and an
//! answer that says nothing was proposed (no leader, refused before
//! proposing) is left out: it did not happen.
//!
//! A monitor's value is carried in a tag `v<value>`; every written value is
//! unique, so a read names the write it saw.
//!
//! The names rotate, as Jepsen's independent keys do: every [`ROTATE`] the
//! clients move on to a fresh set (`j<generation>-<slot>`), so a name's
//! history stays a few hundred operations long however long the run is (the
//! search for a linearization is exponential in the worst case, and a name
//! written for three minutes under pauses can be past what it settles).
//! Monitors are created paused: they are values, not checks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uptime_api::dto::{CreateMonitor, MonitorView};
use uptime_api::ClientError;

use crate::cluster::Cluster;
use crate::history::{Input, Op, Output};
use crate::schedule::Rng;

/// What one operation's answer means for the history.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    Done(Output),
    Unknown,
    /// Nothing was proposed: leave the operation out.
    NotApplied,
}

fn value_of(m: &MonitorView) -> Option<u64> {
    m.tags.iter().find_map(|t| t.strip_prefix('v')?.parse().ok())
}

/// How a client error reads: not found, exists, unknown, or not applied.
pub fn classify(input: &Input, e: &ClientError) -> Answer {
    match e {
        ClientError::Api { status: 404, .. } => match input {
            Input::Read { .. } => Answer::Done(Output::Value(None)),
            _ => Answer::Done(Output::NotFound),
        },
        ClientError::Api { status: 409, .. } if matches!(input, Input::Create { .. }) => Answer::Done(Output::Exists),
        ClientError::Api { code, .. } if code == "unknown_outcome" => Answer::Unknown,
        // A read that failed had no effect either way.
        _ if input.is_read() => Answer::NotApplied,
        // No leader, a node cut off, refused before proposing: nothing was applied.
        ClientError::Api { status: 503 | 504 | 410 | 400, .. } => Answer::NotApplied,
        // No connection (a killed node refuses): the request never left.
        _ if e.not_sent() => Answer::NotApplied,
        ClientError::Transport { message, .. } if message.starts_with("no answer within") => Answer::Unknown,
        ClientError::Transport { .. } => Answer::Unknown,
        _ => Answer::Unknown,
    }
}

/// How long the clients write one set of names before moving to the next.
pub const ROTATE: Duration = Duration::from_secs(10);

/// The name of `slot` in the set written from `generation * ROTATE` on.
pub fn key(generation: u64, slot: u64) -> String {
    format!("j{generation}-{slot}")
}

/// Every name a run of `length` with `slots` names at a time writes.
pub fn keys(slots: u64, length: Duration) -> Vec<String> {
    let generations = length.as_nanos().div_ceil(ROTATE.as_nanos()).max(1) as u64;
    (0..generations).flat_map(|g| (0..slots).map(move |s| key(g, s))).collect()
}

fn body(key: &str, value: u64, target: &str) -> CreateMonitor {
    CreateMonitor {
        name: key.to_string(),
        kind: "tcp".into(),
        target: target.to_string(),
        interval: Some("60s".into()),
        paused: true,
        tags: vec![format!("v{value}")],
        ..Default::default()
    }
}

/// One operation against node `k`.
pub async fn perform(cluster: &Cluster, k: u64, input: &Input, target: &str) -> Answer {
    let client = match cluster.client(k) {
        Ok(c) => c,
        Err(_) => return Answer::NotApplied,
    };
    let result = match input {
        Input::Create { key, value } => client.create_monitor(&body(key, *value, target)).await.map(|_| Output::Ok),
        Input::Update { key, value } => {
            client.update_monitor(key, &body(key, *value, target)).await.map(|_| Output::Ok)
        }
        Input::Delete { key } => client.delete_monitor(key).await.map(|_| Output::Ok),
        Input::Read { key } => client.get_monitor_consistent(key, true).await.map(|m| Output::Value(value_of(&m))),
    };
    match result {
        Ok(out) => Answer::Done(out),
        Err(e) => classify(input, &e),
    }
}

/// Runs `clients` concurrent clients for `length`, each issuing operations
/// on `keys` names at a time (rotated every [`ROTATE`]) through random
/// nodes; returns the history.
pub async fn run(
    cluster: Arc<Cluster>,
    seed: u64,
    clients: u64,
    keys: u64,
    length: Duration,
    target: String,
) -> Vec<Op> {
    let start = Instant::now();
    let ops = Arc::new(Mutex::new(Vec::new()));
    let values = Arc::new(AtomicU64::new(1));
    let ids = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (cluster, ops, values, ids, target) =
            (cluster.clone(), ops.clone(), values.clone(), ids.clone(), target.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(seed ^ (c + 1).wrapping_mul(0x9E37_79B9));
            let mut client = ids.fetch_add(1, Ordering::Relaxed);
            while start.elapsed() < length {
                let generation = (start.elapsed().as_nanos() / ROTATE.as_nanos()) as u64;
                let key = key(generation, rng.below(keys));
                let input = match rng.below(10) {
                    0..=1 => Input::Create { key, value: values.fetch_add(1, Ordering::Relaxed) },
                    2..=3 => Input::Update { key, value: values.fetch_add(1, Ordering::Relaxed) },
                    4 => Input::Delete { key },
                    _ => Input::Read { key },
                };
                let node = rng.between(1, cluster.nodes);
                let call = start.elapsed().as_nanos() as u64;
                let answer = perform(&cluster, node, &input, &target).await;
                let ret = start.elapsed().as_nanos() as u64;
                let op = match answer {
                    Answer::Done(output) => Op::returned(client, call, input, ret.max(call), output),
                    Answer::Unknown => {
                        let op = Op::unknown(client, call, input);
                        // A client whose operation is in doubt is not reused.
                        client = ids.fetch_add(1, Ordering::Relaxed);
                        op
                    }
                    Answer::NotApplied => continue,
                };
                ops.lock().unwrap().push(op);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut out = std::mem::take(&mut *ops.lock().unwrap());
    out.sort_by_key(|o| o.call);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: &str) -> ClientError {
        ClientError::Api { status, code: code.into(), message: String::new(), field: None }
    }

    #[test]
    fn the_names_rotate_and_every_one_written_is_listed() {
        let all = keys(3, Duration::from_secs(25));
        assert_eq!(all.len(), 9, "{all:?}");
        assert_eq!(all[0], "j0-0");
        assert_eq!(all[8], "j2-2");
        assert_eq!(keys(2, Duration::from_secs(20)).len(), 4);
    }

    #[test]
    fn answers_that_did_not_happen_are_left_out_and_doubtful_ones_are_unknown() {
        let create = Input::Create { key: "j1".into(), value: 1 };
        let read = Input::Read { key: "j1".into() };
        let delete = Input::Delete { key: "j1".into() };
        assert_eq!(classify(&create, &api(409, "conflict")), Answer::Done(Output::Exists));
        assert_eq!(classify(&delete, &api(404, "not_found")), Answer::Done(Output::NotFound));
        assert_eq!(classify(&read, &api(404, "not_found")), Answer::Done(Output::Value(None)));
        assert_eq!(classify(&create, &api(503, "unknown_outcome")), Answer::Unknown);
        assert_eq!(classify(&create, &api(503, "unavailable")), Answer::NotApplied);
        assert_eq!(classify(&read, &api(503, "unavailable")), Answer::NotApplied);
        let timeout = ClientError::Transport { endpoint: "x".into(), message: "no answer within 5s".into() };
        assert_eq!(classify(&create, &timeout), Answer::Unknown);
        assert_eq!(classify(&read, &timeout), Answer::NotApplied);
        let reset = ClientError::Transport { endpoint: "x".into(), message: "connection reset".into() };
        assert_eq!(classify(&create, &reset), Answer::Unknown);
        // A killed node refuses the connection: the write was never sent.
        let refused = ClientError::Transport {
            endpoint: "x".into(),
            message: "cannot connect: client error (Connect): tcp connect error: Connection refused (os error 111)"
                .into(),
        };
        assert!(refused.not_sent());
        assert_eq!(classify(&create, &refused), Answer::NotApplied);
    }
}
