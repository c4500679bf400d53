//! The state machine's domain tables and their key encoding.
//!
//! Every domain table maps bytes to bytes: keys are big-endian integers (and
//! UTF-8 names) so that key order is numeric order and range scans by prefix
//! work; values go through the codec. Keeping one shape lets snapshots, the
//! state hash and snapshot install treat every table alike ([`TABLES`]).

use redb::{ReadableTable, TableDefinition};

pub type Table = TableDefinition<'static, &'static [u8], &'static [u8]>;

/// Counters and the state clock (`clock_ms`, `next_monitor_id`, …).
pub const COUNTERS: Table = TableDefinition::new("counters");
/// monitor id → Monitor
pub const MONITORS: Table = TableDefinition::new("monitors");
/// name → monitor id
pub const MONITOR_NAMES: Table = TableDefinition::new("monitor_names");
/// key → value (UTF-8)
pub const SETTINGS: Table = TableDefinition::new("settings");
/// (monitor id, node id) → Observation
pub const OBSERVATIONS: Table = TableDefinition::new("observations");
/// monitor id → Verdict
pub const VERDICTS: Table = TableDefinition::new("verdicts");
/// incident id → Incident
pub const INCIDENTS: Table = TableDefinition::new("incidents");
/// monitor id → open incident id (at most one per monitor)
pub const OPEN_INCIDENTS: Table = TableDefinition::new("open_incidents");
/// (monitor id, incident id) → nothing: open declared incidents tied to a
/// monitor, which the verdict's slot does not hold (reminders, deletion)
pub const DECLARED_OPEN: Table = TableDefinition::new("declared_open");
/// window id → MaintenanceWindow
pub const MAINTENANCE: Table = TableDefinition::new("maintenance");
/// (monitor id, level, bucket start) → Bucket
pub const HISTORY: Table = TableDefinition::new("history");
/// notification id → Notification
pub const OUTBOX: Table = TableDefinition::new("outbox");
/// node id → last digest seq applied
pub const DIGEST_SEQS: Table = TableDefinition::new("digest_seqs");

/// idempotency key → Remembered (the first answer to a keyed write)
pub const REQUESTS: Table = TableDefinition::new("requests");
/// (state time, key) → nothing: the order in which keys expire
pub const REQUEST_TIMES: Table = TableDefinition::new("request_times");

/// channel name → Channel
pub const CHANNELS: Table = TableDefinition::new("channels");
/// (notification id, attempt) → Delivery
pub const DELIVERIES: Table = TableDefinition::new("deliveries");
/// notification id → nothing: records not yet sent or dead, which the
/// dispatcher scans instead of the whole outbox
pub const OUTBOX_DUE: Table = TableDefinition::new("outbox_due");

/// Every domain table, in the order snapshots and the state hash list them.
pub const TABLES: [Table; 18] = [
    COUNTERS,
    MONITORS,
    MONITOR_NAMES,
    SETTINGS,
    OBSERVATIONS,
    VERDICTS,
    INCIDENTS,
    OPEN_INCIDENTS,
    MAINTENANCE,
    HISTORY,
    OUTBOX,
    DIGEST_SEQS,
    REQUESTS,
    REQUEST_TIMES,
    DECLARED_OPEN,
    CHANNELS,
    DELIVERIES,
    OUTBOX_DUE,
];

pub fn id_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

pub fn pair_key(a: u64, b: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&a.to_be_bytes());
    k[8..].copy_from_slice(&b.to_be_bytes());
    k
}

pub fn history_key(monitor: u64, level: u8, start_ms: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[..8].copy_from_slice(&monitor.to_be_bytes());
    k[8] = level;
    k[9..].copy_from_slice(&start_ms.to_be_bytes());
    k
}

pub fn read_u64(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = bytes.len().min(8);
    b[..n].copy_from_slice(&bytes[..n]);
    u64::from_be_bytes(b)
}

/// Rows whose key starts with `prefix`, values decoded, in key order.
pub fn scan_prefix<T, R>(table: &R, prefix: &[u8]) -> Result<Vec<(Vec<u8>, T)>, crate::Error>
where
    T: serde::de::DeserializeOwned,
    R: ReadableTable<&'static [u8], &'static [u8]>,
{
    let mut out = Vec::new();
    for row in table.range::<&[u8]>(prefix..).map_err(crate::error::db)? {
        let (k, v) = row.map_err(crate::error::db)?;
        if !k.value().starts_with(prefix) {
            break;
        }
        out.push((k.value().to_vec(), crate::codec::decode(v.value())?));
    }
    Ok(out)
}
