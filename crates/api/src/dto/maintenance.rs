//! Maintenance windows.

use super::*;

/// A maintenance window as the API shows and takes it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceView {
    #[serde(default)]
    pub id: u64,
    pub name: String,
    /// Monitor ids or names.
    #[serde(default)]
    pub monitors: Vec<String>,
    /// Every monitor, present and future, instead of a list: never implied.
    #[serde(default)]
    pub all_monitors: bool,
    /// One-off: RFC 3339 start and end.
    #[serde(default)]
    pub start: Option<String>,
    #[serde(default)]
    pub end: Option<String>,
    /// Recurring: an IANA time zone, a local start time "HH:MM", a duration, and
    /// optional weekdays (mon..sun; empty = every day).
    #[serde(default)]
    pub time_zone: Option<String>,
    #[serde(default)]
    pub at: Option<String>,
    #[serde(default)]
    pub duration: Option<String>,
    #[serde(default)]
    pub weekdays: Vec<String>,
    /// Whether it covers the state clock now (output only).
    #[serde(default)]
    pub active: bool,
    /// Things worth a second look that did not stop the write, such as a
    /// one-off window entirely in the past (output only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}
