//! The domain records the replicated state keeps. Every type here is stored
//! through the codec (bincode): plain structs and externally tagged enums only.

use serde::{Deserialize, Serialize};
use uptime_probe::CheckSpec;

use crate::command::Rejection;
use crate::history::LatencyStats;
use crate::quorum::{CheckStatus, MonitorState, QuorumRule, VerdictPolicy};

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
    pub policy: AlertPolicy,
    /// Leader time of the entry that created it.
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

/// When a monitor's verdict changes and who hears of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertPolicy {
    /// Failing results in a row, per node, before it counts toward DOWN.
    pub confirmations: u32,
    /// Ok results in a row, per node, before it counts toward UP.
    pub recovery_confirmations: u32,
    pub quorum: QuorumRule,
    pub notify_on_recovery: bool,
    /// Remind while an incident stays unacknowledged; 0 = never.
    pub renotify_interval_ms: u64,
    /// Channels notified besides the cluster's default channels.
    pub channels: Vec<String>,
    /// A verdict of UNKNOWN (no node reports a check it ran) for this long
    /// opens a "no data" incident; 0 = never.
    pub no_data_after_ms: u64,
    pub no_data_severity: Severity,
    /// A DEGRADED verdict opens an incident (minor) too; DOWN always does.
    pub alert_on_degraded: bool,
    /// The cluster's default channels are notified too (unless the monitor opts out).
    pub default_channels: bool,
}

/// No data for this long opens an incident, unless the monitor says otherwise.
pub const DEFAULT_NO_DATA_MS: u64 = 10 * 60_000;

impl Default for AlertPolicy {
    fn default() -> Self {
        AlertPolicy {
            confirmations: 2,
            recovery_confirmations: 1,
            quorum: QuorumRule::Majority,
            notify_on_recovery: true,
            renotify_interval_ms: 0,
            channels: Vec::new(),
            no_data_after_ms: DEFAULT_NO_DATA_MS,
            no_data_severity: Severity::Minor,
            alert_on_degraded: false,
            default_channels: true,
        }
    }
}

/// What an operator asks for when creating or replacing a monitor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorDraft {
    pub name: String,
    pub check: CheckSpec,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub enabled: bool,
    pub public: bool,
    pub tags: Vec<String>,
    pub policy: AlertPolicy,
}

pub const MIN_INTERVAL_MS: u64 = 1_000;
pub const MAX_INTERVAL_MS: u64 = 86_400_000;
pub const MIN_TIMEOUT_MS: u64 = 100;
const MAX_NAME_LEN: usize = 100;
const MAX_CONFIRMATIONS: u32 = 100;
/// Reminders at most a week apart: far from any overflow, and still a reminder.
pub const MAX_RENOTIFY_MS: u64 = 7 * 86_400_000;
/// Tags and channels per monitor.
const MAX_LIST: usize = 32;
const MAX_LABEL_LEN: usize = 64;

/// A tag or channel name: 1 to 64 bytes, no control characters.
fn label(field: &str, value: &str) -> Result<(), Rejection> {
    if value.trim().is_empty() || value.len() > MAX_LABEL_LEN || value.chars().any(char::is_control) {
        return Err(Rejection::invalid(
            field,
            format!("each must be 1 to {MAX_LABEL_LEN} bytes, no control characters"),
        ));
    }
    Ok(())
}

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
        let p = &self.policy;
        if !(1..=MAX_CONFIRMATIONS).contains(&p.confirmations) {
            return Err(Rejection::invalid("confirmations", format!("must be 1 to {MAX_CONFIRMATIONS}")));
        }
        if !(1..=MAX_CONFIRMATIONS).contains(&p.recovery_confirmations) {
            return Err(Rejection::invalid("recovery_confirmations", format!("must be 1 to {MAX_CONFIRMATIONS}")));
        }
        if let QuorumRule::Count(0) = p.quorum {
            return Err(Rejection::invalid("quorum", "count must be at least 1"));
        }
        if p.renotify_interval_ms != 0 && !(60_000..=MAX_RENOTIFY_MS).contains(&p.renotify_interval_ms) {
            return Err(Rejection::invalid("renotify_interval", "must be 0 (off) or 1m to 7d"));
        }
        if p.no_data_after_ms != 0 && !(60_000..=MAX_RENOTIFY_MS).contains(&p.no_data_after_ms) {
            return Err(Rejection::invalid("no_data_after", "must be 0 (off) or 1m to 7d"));
        }
        if p.channels.len() > MAX_LIST {
            return Err(Rejection::invalid("channels", format!("at most {MAX_LIST}")));
        }
        for c in &p.channels {
            label("channels", c)?;
        }
        if self.tags.len() > MAX_LIST {
            return Err(Rejection::invalid("tags", format!("at most {MAX_LIST}")));
        }
        for t in &self.tags {
            label("tags", t)?;
        }
        self.check.validate().map_err(|e| Rejection::invalid(e.field, e.message))?;
        Ok(())
    }
}

impl Monitor {
    /// A monitor made from `draft`, as of state time `now`.
    pub fn from_draft(id: u64, draft: &MonitorDraft, now: u64) -> Monitor {
        Monitor {
            id,
            name: draft.name.clone(),
            check: draft.check.clone(),
            interval_ms: draft.interval_ms,
            timeout_ms: draft.timeout_ms,
            enabled: draft.enabled,
            public: draft.public,
            tags: draft.tags.clone(),
            policy: draft.policy.clone(),
            created_at_ms: now,
            updated_at_ms: now,
        }
    }

    pub fn verdict_policy(&self) -> VerdictPolicy {
        VerdictPolicy {
            quorum: self.policy.quorum,
            confirmations: self.policy.confirmations,
            recovery_confirmations: self.policy.recovery_confirmations,
            stale_after_ms: 3 * self.interval_ms,
        }
    }
}

/// One node's latest report on one monitor: what the verdict votes on, and
/// what an operator reads to see which nodes see a target down.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub status: CheckStatus,
    /// Consecutive results with this same status.
    pub run: u32,
    /// Consecutive failing results (degraded or down, in any mix): what
    /// confirms DEGRADED when a target alternates between the two.
    pub failing_run: u32,
    /// State time when the report was applied.
    pub at_ms: u64,
    pub last_error: String,
    /// Mean latency of the report's window, microseconds.
    pub latency_us: u64,
}

/// The monitor's current verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub state: MonitorState,
    /// State time of the last change.
    pub since_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IncidentState {
    Triggered,
    Acknowledged,
    Resolved,
}

impl IncidentState {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentState::Triggered => "triggered",
            IncidentState::Acknowledged => "acknowledged",
            IncidentState::Resolved => "resolved",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Severity {
    Critical,
    Major,
    Minor,
    Info,
}

impl Severity {
    pub fn parse(s: &str) -> Option<Severity> {
        Some(match s {
            "critical" => Severity::Critical,
            "major" => Severity::Major,
            "minor" => Severity::Minor,
            "info" => Severity::Info,
            _ => return None,
        })
    }

    /// 0 is the most severe.
    pub fn rank(self) -> u8 {
        self as u8
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Major => "major",
            Severity::Minor => "minor",
            Severity::Info => "info",
        }
    }
}

/// One line of an incident's timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEvent {
    pub at_ms: u64,
    /// A user name, or `system` for what apply did on its own.
    pub by: String,
    /// opened, acknowledged, resolved, reopened, note, assigned, severity.
    pub kind: String,
    pub text: String,
}

/// Events an incident's timeline keeps: its first (how it opened) and the
/// latest ones. A row stays well under what a snapshot may hold (4 KiB notes:
/// about 2 MiB), and a note costs a bounded rewrite.
pub const MAX_TIMELINE: usize = 500;

/// Why an incident exists: what opened it decides what may close it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IncidentCause {
    /// Declared by a person; only a person resolves it.
    Declared,
    /// A confirmed DOWN verdict; the recovery resolves it.
    Down,
    /// A confirmed DEGRADED verdict, for monitors that alert on it.
    Degraded,
    /// No node reported a check of the monitor for longer than its bound.
    NoData,
}

impl IncidentCause {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentCause::Declared => "declared",
            IncidentCause::Down => "down",
            IncidentCause::Degraded => "degraded",
            IncidentCause::NoData => "no_data",
        }
    }
}

/// An incident. Never deleted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    pub id: u64,
    /// None for a manually declared incident not tied to a monitor.
    pub monitor_id: Option<u64>,
    pub cause: IncidentCause,
    pub title: String,
    pub state: IncidentState,
    pub severity: Severity,
    pub assignee: Option<String>,
    pub opened_at_ms: u64,
    pub acknowledged_at_ms: Option<u64>,
    pub resolved_at_ms: Option<u64>,
    /// When the last open or reminder notification was written.
    pub last_notified_at_ms: u64,
    /// At most [`MAX_TIMELINE`] events: past that, the oldest after the first go.
    pub timeline: Vec<TimelineEvent>,
}

impl Incident {
    /// Appends `event`, dropping the oldest event after the first when full.
    pub fn record(&mut self, event: TimelineEvent) {
        self.timeline.push(event);
        if self.timeline.len() > MAX_TIMELINE {
            self.timeline.remove(1);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NotificationKind {
    Open,
    Resolve,
    Reminder,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NotificationState {
    Pending,
    /// Claimed by the leader with this log id (term, node, index) for the fencing protocol.
    Claimed {
        term: u64,
        node_id: u64,
        index: u64,
    },
    /// Delivered (the receiver answered with success).
    Sent,
    /// The last attempt failed; the next is due at `next_at_ms` (state time).
    Failed {
        attempts: u32,
        next_at_ms: u64,
    },
    /// Given up: the attempt cap was reached, or it can never be delivered.
    Dead,
}

impl NotificationState {
    pub fn as_str(&self) -> &'static str {
        match self {
            NotificationState::Pending => "pending",
            NotificationState::Claimed { .. } => "claimed",
            NotificationState::Sent => "sent",
            NotificationState::Failed { .. } => "failed",
            NotificationState::Dead => "dead",
        }
    }

    /// Sent or dead: nothing more happens to it.
    pub fn is_final(&self) -> bool {
        matches!(self, NotificationState::Sent | NotificationState::Dead)
    }
}

impl NotificationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Open => "open",
            NotificationKind::Resolve => "resolve",
            NotificationKind::Reminder => "reminder",
        }
    }
}

/// A notification channel as the replicated state keeps it, secrets included:
/// every read path shows [`ChannelSpec::redacted`] instead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    pub name: String,
    pub spec: uptime_notify::ChannelSpec,
    /// Notified for every monitor that does not opt out of default channels.
    pub default: bool,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

/// How one delivery attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryOutcome {
    /// The receiver answered with success.
    Sent,
    /// The receiver refused, failed or could not be reached.
    Failed,
    /// The leader's lease ran out before the send finished: left to a retry.
    Abandoned,
    /// It can never be delivered (its channel is gone): the record is dead at once.
    Undeliverable,
    /// The claim's leader recorded no outcome (it crashed or lost leadership
    /// mid-send); found when the record was claimed again. The receiver may
    /// have it already: the retry carries the same idempotency key.
    Interrupted,
    /// Not sent at all (the lease ended before the send could start): no
    /// attempt is counted against the cap.
    Deferred,
}

impl DeliveryOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryOutcome::Sent => "sent",
            DeliveryOutcome::Failed => "failed",
            DeliveryOutcome::Abandoned => "abandoned",
            DeliveryOutcome::Undeliverable => "undeliverable",
            DeliveryOutcome::Interrupted => "interrupted",
            DeliveryOutcome::Deferred => "deferred",
        }
    }
}

/// One attempt to deliver a notification, under the claim (fencing token) it ran with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// 1 for the first attempt.
    pub attempt: u32,
    /// State time the outcome was recorded.
    pub at_ms: u64,
    pub term: u64,
    pub node_id: u64,
    pub index: u64,
    pub outcome: DeliveryOutcome,
    /// The receiver's HTTP status, when it answered over HTTP.
    pub status: Option<u16>,
    /// Why it failed (secrets scrubbed); empty on success.
    pub error: String,
    /// How long the send took, in milliseconds (0 when not measured).
    pub took_ms: u64,
}

/// A record in the notification outbox; the leader's dispatcher delivers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub id: u64,
    pub incident_id: u64,
    /// The channel, resolved when the record was written. None only in records
    /// written before channels existed: they cannot be delivered.
    pub channel: Option<String>,
    pub kind: NotificationKind,
    pub state: NotificationState,
    pub created_at_ms: u64,
}

/// A maintenance window: while active, its monitors' verdict is MAINTENANCE, no
/// incident opens, nothing is sent for them, and their failures do not count
/// against uptime.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceWindow {
    pub id: u64,
    pub name: String,
    /// Affected monitors, when not `all_monitors`.
    pub monitors: Vec<u64>,
    /// Every monitor, present and future: asked for explicitly, never implied
    /// by an empty list.
    pub all_monitors: bool,
    pub schedule: Schedule,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Schedule {
    /// [start, end) in Unix milliseconds.
    Once { start_ms: u64, end_ms: u64 },
    /// Every day (or on the given weekdays, 0 = Monday), from `start_minute` after
    /// local midnight in `time_zone` (an IANA name) for `duration_ms`.
    Recurring { time_zone: String, weekdays: Vec<u8>, start_minute: u32, duration_ms: u64 },
}

/// A node's digest of one monitor over a window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorResult {
    pub monitor_id: u64,
    pub checks: u64,
    pub failures: u64,
    pub last_status: CheckStatus,
    /// Consecutive results with the status `last_status` at the end of the window.
    pub run: u32,
    /// Consecutive failing results (degraded or down) at the end of the window.
    pub failing_run: u32,
    pub last_error: String,
    pub latency: LatencyStats,
}

/// One digest window from one node, numbered per node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    pub seq: u64,
    /// How many windows were folded into this one because of a backlog.
    pub coalesced: u32,
    pub results: Vec<MonitorResult>,
}
