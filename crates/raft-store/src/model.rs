use serde::{Deserialize, Serialize};
use uptime_probe::CheckSpec;

use crate::command::Rejection;

/// A monitor as the replicated state keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Monitor {
    /// Assigned by apply from a counter in the state, so every node assigns the same.
    pub id: u64,
    /// Unique across monitors; never all digits, so "id or name" lookups are unambiguous.
    pub name: String,
    pub check: CheckSpec,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// False while paused.
    pub enabled: bool,
    /// Shown on the public status page.
    pub public: bool,
    pub tags: Vec<String>,
    /// Leader time of the entry that created it.
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

/// What an operator asks for when creating a monitor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorDraft {
    pub name: String,
    pub check: CheckSpec,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub enabled: bool,
    pub public: bool,
    pub tags: Vec<String>,
}

pub const MIN_INTERVAL_MS: u64 = 1_000;
pub const MAX_INTERVAL_MS: u64 = 86_400_000;
pub const MIN_TIMEOUT_MS: u64 = 100;
const MAX_NAME_LEN: usize = 100;

impl MonitorDraft {
    /// The same rules run before proposal (for a clear error) and again in apply
    /// (so an entry that slipped past is refused identically on every node).
    pub fn validate(&self) -> Result<(), Rejection> {
        let name = self.name.as_str();
        if name.trim().is_empty() {
            return Err(Rejection::invalid("name", "must not be empty"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(Rejection::invalid("name", format!("longer than {MAX_NAME_LEN} bytes")));
        }
        if name.chars().all(|c| c.is_ascii_digit()) {
            return Err(Rejection::invalid("name", "must not be all digits (it would read as an id)"));
        }
        if name.chars().any(char::is_control) {
            return Err(Rejection::invalid("name", "must not contain control characters"));
        }
        if !(MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&self.interval_ms) {
            return Err(Rejection::invalid("interval", "must be between 1s and 24h"));
        }
        if self.timeout_ms < MIN_TIMEOUT_MS || self.timeout_ms > self.interval_ms {
            return Err(Rejection::invalid("timeout", "must be at least 100ms and at most the interval"));
        }
        self.check.validate().map_err(|e| Rejection::invalid(e.field, e.message))?;
        Ok(())
    }
}
