//! What the store's integration tests share: a fresh state machine that
//! applies one command per entry, and small entries and drafts.
#![allow(dead_code)] // each test file uses its own part

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload, LogId};
use uptime_probe::CheckSpec;
use uptime_raft_store::history::LatencyStats;
use uptime_raft_store::quorum::CheckStatus;
use uptime_raft_store::typ::Entry;
use uptime_raft_store::{
    AlertPolicy, Command, Digest, MonitorDraft, MonitorResult, Request, Response, StateMachineStore,
};

/// A state machine in a temporary directory, fed one entry at a time.
pub struct Store {
    _dir: tempfile::TempDir,
    pub sm: StateMachineStore,
    index: u64,
}

impl Store {
    pub fn new() -> Store {
        let dir = tempfile::tempdir().unwrap();
        let sm = StateMachineStore::open(dir.path()).unwrap();
        Store { _dir: dir, sm, index: 0 }
    }

    /// Applies `command` stamped `at_ms` as the next entry; a storage error
    /// (which would stop every node) fails the test.
    pub async fn run(&mut self, at_ms: u64, command: Command) -> Response {
        self.run_as(1, 1, at_ms, command).await
    }

    /// [`Store::run`] as an entry of leader `node_id` in `term`.
    pub async fn run_as(&mut self, term: u64, node_id: u64, at_ms: u64, command: Command) -> Response {
        self.index += 1;
        let entry = Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, node_id), self.index),
            payload: EntryPayload::Normal(Request { at_ms, command }),
        };
        self.sm.apply(vec![entry]).await.expect("apply must not fail on any command").pop().unwrap()
    }
}

/// Entry `index` setting `k<index>` to 100 bytes.
pub fn entry(index: u64) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Request {
            at_ms: 1_000 * index,
            command: Command::SetSetting { key: format!("k{index}"), value: "v".repeat(100) },
        }),
    }
}

/// A TCP monitor every 10 s with `policy`.
pub fn draft(name: &str, policy: AlertPolicy) -> MonitorDraft {
    MonitorDraft {
        name: name.into(),
        check: CheckSpec::from_target("tcp", "127.0.0.1:9").unwrap(),
        interval_ms: 10_000,
        timeout_ms: 5_000,
        enabled: true,
        public: false,
        tags: vec![],
        policy,
    }
}

/// One node's result for monitor `id`: one check with `status` after a run
/// (and failing run) of `run`, "connection refused" when it failed, 12 ms.
pub fn result(id: u64, status: CheckStatus, run: u32) -> MonitorResult {
    let mut latency = LatencyStats::default();
    latency.record(12_000);
    let failed = u64::from(status != CheckStatus::Up);
    MonitorResult {
        monitor_id: id,
        checks: 1,
        failures: failed,
        last_status: status,
        run,
        failing_run: run,
        last_error: if failed == 1 { "connection refused".into() } else { String::new() },
        latency,
    }
}

/// Digest `seq` from node `node_id`, holding `results`.
pub fn digest(node_id: u64, seq: u64, results: Vec<MonitorResult>) -> Command {
    Command::Digests { node_id, digests: vec![Digest { seq, coalesced: 0, results }] }
}

/// A default webhook channel named `name` (to a closed local port: the store
/// never sends).
pub fn default_channel(name: &str) -> Command {
    channel(name, true)
}

pub fn channel(name: &str, default: bool) -> Command {
    Command::PutChannel {
        name: name.into(),
        spec: uptime_notify::ChannelSpec {
            kind: uptime_notify::ChannelKind::Webhook {
                url: "http://127.0.0.1:9/hook".into(),
                headers: vec![],
                secret: None,
            },
            subject: None,
            body: None,
        },
        default,
        create: true,
    }
}
