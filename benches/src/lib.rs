//! Benchmarks and the Rust side of the peer comparison scripts.
//!
//! Modules:
//! - `probe_load`: fresh-connection HTTP check loops and a 100k-monitor
//!   scheduler run, measured for `scripts/bench-probe.sh` (binary `probe-bench`).
//!
//! - `tcp_monitors`: the monitors the domain benchmarks create.
//!
//! The criterion benches live under `benches/` (`cargo bench -p uptime-benches`).

pub mod probe_load;

use uptime_probe::CheckSpec;
use uptime_raft_store::{AlertPolicy, Command, MonitorDraft};

/// `CreateMonitor` commands for monitors `ids`, named `{prefix}{id}`: TCP
/// checks of a closed loopback port at `interval_ms`, batched as the API's
/// group commit would batch them.
pub fn tcp_monitors(ids: &[u64], prefix: &str, interval_ms: u64) -> Vec<Command> {
    ids.chunks(uptime_raft_store::MAX_BATCH)
        .map(|chunk| {
            let drafts = chunk.iter().map(|i| {
                Command::CreateMonitor(MonitorDraft {
                    name: format!("{prefix}{i}"),
                    check: CheckSpec::from_target("tcp", "127.0.0.1:9").expect("a valid target"),
                    interval_ms,
                    timeout_ms: 5_000,
                    enabled: true,
                    public: false,
                    tags: vec![],
                    policy: AlertPolicy::default(),
                })
            });
            Command::Batch(drafts.collect())
        })
        .collect()
}
