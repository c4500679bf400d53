use serde::{Deserialize, Serialize};

use crate::model::{Channel, Digest, Incident, MaintenanceWindow, Monitor, MonitorDraft, Schedule, Severity};

/// The application payload of a log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The leader's wall clock when it proposed the entry, in Unix milliseconds.
    /// Apply uses `max(previous, at_ms)`, so a clock step back never moves state time back.
    pub at_ms: u64,
    pub command: Command,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    CreateMonitor(MonitorDraft),
    /// Replaces a monitor's definition; its verdict, history and incidents stay.
    UpdateMonitor {
        id: u64,
        draft: MonitorDraft,
    },
    /// Pause (false) or resume (true).
    SetMonitorEnabled {
        id: u64,
        enabled: bool,
    },
    DeleteMonitor {
        id: u64,
    },
    SetSetting {
        key: String,
        value: String,
    },
    /// Probe digests from one node, batched by the leader.
    Digests {
        node_id: u64,
        digests: Vec<Digest>,
    },
    /// Carries the leader's time when nothing else does: staleness, maintenance
    /// edges, reminders and retention happen on it.
    Tick,
    Incident(IncidentCommand),
    CreateMaintenance {
        name: String,
        monitors: Vec<u64>,
        /// Every monitor; `monitors` must then be empty.
        all_monitors: bool,
        schedule: Schedule,
    },
    DeleteMaintenance {
        id: u64,
    },
    /// Commands from concurrent clients that the leader group-commits as one
    /// entry. Each is applied (or refused) on its own, in order; the answer is
    /// a `Response::Batch` in the same order.
    Batch(Vec<Command>),
    /// `command`, applied once per `key` within [`IDEMPOTENCY_WINDOW_MS`] of
    /// state time: a repeat (a client or a node retrying a write whose outcome
    /// it could not see) gets the first answer, and the same key with another
    /// command is refused. Appended last, so older entries decode unchanged.
    Idempotent {
        key: String,
        command: Box<Command>,
    },
    /// Creates (`create`: refused if the name exists) or replaces a channel.
    PutChannel {
        name: String,
        spec: uptime_notify::ChannelSpec,
        default: bool,
        create: bool,
    },
    /// Refused while a monitor names the channel.
    DeleteChannel {
        name: String,
    },
    /// The leader's dispatcher: the fencing protocol's claims and outcomes.
    Outbox(OutboxCommand),
}

/// The dispatcher's writes (DESIGN.md, "Alert fencing"). Both are batches, so a
/// storm of notifications costs two log round trips per batch, not per record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutboxCommand {
    /// Claims the records for one attempt each under this entry's log id (the
    /// fencing token). A record already sent or dead is left alone; one
    /// claimed by an earlier entry with no outcome gets an `Interrupted`
    /// delivery and the new claim.
    Claim { ids: Vec<u64> },
    /// Records the outcomes of attempts; one whose claim is no longer the
    /// record's current claim is ignored (a deposed leader's late report).
    Settle { results: Vec<Settlement> },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    pub id: u64,
    /// The index of the claim the attempt ran under.
    pub claim_index: u64,
    pub outcome: crate::model::DeliveryOutcome,
    pub status: Option<u16>,
    pub error: String,
    /// After a failure: how long until the next attempt (the dispatcher adds
    /// the jitter; apply clamps it to [`MIN_RETRY_MS`]..=[`MAX_RETRY_MS`]).
    pub retry_after_ms: u64,
    pub took_ms: u64,
}

/// Attempts per notification before it is dead.
pub const MAX_ATTEMPTS: u32 = 8;
pub const MIN_RETRY_MS: u64 = 500;
pub const MAX_RETRY_MS: u64 = 3_600_000;
/// Records per claim or settle entry.
pub const MAX_OUTBOX_BATCH: usize = 4096;
const MAX_DELIVERY_ERROR: usize = 1024;

/// How long apply remembers an idempotency key, in state time.
pub const IDEMPOTENCY_WINDOW_MS: u64 = 10 * 60_000;
const MAX_KEY_LEN: usize = 128;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IncidentCommand {
    Declare { title: String, severity: Severity, monitor_id: Option<u64>, by: String },
    Acknowledge { id: u64, by: String },
    Resolve { id: u64, by: String },
    Reopen { id: u64, by: String },
    Note { id: u64, by: String, text: String },
    Assign { id: u64, by: String, assignee: Option<String> },
    SetSeverity { id: u64, by: String, severity: Severity },
}

/// What apply answers for an entry. A refused command is an answer, not a storage
/// error: the entry stays in the log and is refused the same way on every node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Done,
    Monitor(Monitor),
    Deleted {
        id: u64,
    },
    Incident(Incident),
    Maintenance(MaintenanceWindow),
    /// Digests applied and skipped as already seen.
    Digests {
        applied: u64,
        duplicates: u64,
    },
    Rejected(Rejection),
    Batch(Vec<Response>),
    /// A channel as stored, secrets included: the API shows it redacted.
    Channel(Channel),
    /// The records this claim took, and the claim's log id (the fencing token).
    Claimed {
        term: u64,
        node_id: u64,
        index: u64,
        ids: Vec<u64>,
    },
    /// Outcomes recorded, and those ignored as no longer current.
    Settled {
        applied: u64,
        stale: u64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectCode {
    Invalid,
    NotFound,
    Conflict,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct Rejection {
    pub code: RejectCode,
    pub message: String,
    /// The input field at fault, when there is one.
    pub field: Option<String>,
}

impl Rejection {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        let message = format!("{field}: {}", message.into());
        Rejection { code: RejectCode::Invalid, message, field: Some(field) }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Rejection { code: RejectCode::NotFound, message: message.into(), field: None }
    }

    pub fn conflict(field: impl Into<String>, message: impl Into<String>) -> Self {
        Rejection { code: RejectCode::Conflict, message: message.into(), field: Some(field.into()) }
    }
}

const MAX_SETTING_BYTES: usize = 64 * 1024;
/// Commands per batch entry at most.
pub const MAX_BATCH: usize = 1024;
/// Encoded bytes of one log entry's command at most: a single command larger
/// than this is refused before it is proposed, and group commit stops adding
/// commands to a batch before it would pass it. Far below the peer message
/// limit, so any entry fits an AppendEntries request on its own.
pub const MAX_ENTRY_BYTES: usize = 8 << 20;
const MAX_TEXT: usize = 4096;
/// Digests in one entry, and results in one digest (one per monitor).
const MAX_DIGESTS: usize = 4096;
const MAX_RESULTS: usize = 1_000_000;
const MAX_WINDOW_MONITORS: usize = 10_000;

fn text(field: &str, value: &str, max: usize) -> Result<(), Rejection> {
    if value.len() > max {
        return Err(Rejection::invalid(field, format!("longer than {max} bytes")));
    }
    Ok(())
}

fn non_empty(field: &str, value: &str, max: usize) -> Result<(), Rejection> {
    if value.trim().is_empty() {
        return Err(Rejection::invalid(field, "must not be empty"));
    }
    text(field, value, max)
}

impl Command {
    /// Refuses a command whose encoding exceeds [`MAX_ENTRY_BYTES`]; returns
    /// its encoded length otherwise (for group commit's byte budget).
    pub fn check_size(&self) -> Result<usize, Rejection> {
        let len = crate::codec::encoded_len(self).map_err(|e| Rejection::invalid("command", e.to_string()))?;
        if len > MAX_ENTRY_BYTES {
            return Err(Rejection::invalid(
                "command",
                format!("{len} bytes once encoded; one write holds at most {MAX_ENTRY_BYTES}"),
            ));
        }
        Ok(len)
    }

    /// Checks that need no state; apply repeats them.
    pub fn validate(&self) -> Result<(), Rejection> {
        match self {
            Command::CreateMonitor(draft) | Command::UpdateMonitor { draft, .. } => draft.validate(),
            Command::SetMonitorEnabled { .. } | Command::DeleteMonitor { .. } | Command::Tick => Ok(()),
            Command::DeleteMaintenance { .. } => Ok(()),
            Command::SetSetting { key, value } => {
                if key.is_empty() || key.len() > 200 {
                    Err(Rejection::invalid("key", "must be 1 to 200 bytes"))
                } else {
                    text("value", value, MAX_SETTING_BYTES)
                }
            }
            Command::Digests { node_id, digests } => {
                if *node_id == 0 {
                    return Err(Rejection::invalid("node_id", "node ids start at 1"));
                }
                if digests.len() > MAX_DIGESTS {
                    return Err(Rejection::invalid("digests", format!("at most {MAX_DIGESTS} per entry")));
                }
                if digests.iter().any(|d| d.results.len() > MAX_RESULTS) {
                    return Err(Rejection::invalid("results", format!("at most {MAX_RESULTS} per digest")));
                }
                if digests.windows(2).any(|w| w[0].seq >= w[1].seq) {
                    return Err(Rejection::invalid("seq", "digests must be in increasing seq order"));
                }
                Ok(())
            }
            Command::Incident(c) => c.validate(),
            Command::Batch(commands) => {
                if commands.is_empty() || commands.len() > MAX_BATCH {
                    return Err(Rejection::invalid("batch", format!("must hold 1 to {MAX_BATCH} commands")));
                }
                if commands.iter().any(|c| matches!(c, Command::Batch(_))) {
                    return Err(Rejection::invalid("batch", "batches do not nest"));
                }
                // Each command is validated on its own when applied, so one bad
                // command does not refuse its neighbours.
                Ok(())
            }
            Command::Idempotent { key, command } => {
                non_empty("idempotency_key", key, MAX_KEY_LEN)?;
                if matches!(
                    **command,
                    Command::Idempotent { .. }
                        | Command::Batch(_)
                        | Command::Digests { .. }
                        | Command::Tick
                        | Command::Outbox(_)
                ) {
                    return Err(Rejection::invalid(
                        "idempotency_key",
                        "applies to a single operator write, not to batches, digests or ticks",
                    ));
                }
                command.validate()
            }
            Command::PutChannel { name, spec, .. } => {
                channel_name(name)?;
                spec.validate().map_err(|e| Rejection::invalid(e.field, e.message))
            }
            Command::DeleteChannel { name } => channel_name(name),
            Command::Outbox(OutboxCommand::Claim { ids }) => {
                if ids.is_empty() || ids.len() > MAX_OUTBOX_BATCH {
                    return Err(Rejection::invalid("ids", format!("must hold 1 to {MAX_OUTBOX_BATCH} records")));
                }
                Ok(())
            }
            Command::Outbox(OutboxCommand::Settle { results }) => {
                if results.is_empty() || results.len() > MAX_OUTBOX_BATCH {
                    return Err(Rejection::invalid("results", format!("must hold 1 to {MAX_OUTBOX_BATCH} outcomes")));
                }
                if results.iter().any(|r| r.error.len() > MAX_DELIVERY_ERROR) {
                    return Err(Rejection::invalid("error", format!("longer than {MAX_DELIVERY_ERROR} bytes")));
                }
                Ok(())
            }
            Command::CreateMaintenance { name, monitors, all_monitors, schedule } => {
                non_empty("name", name, 200)?;
                if monitors.len() > MAX_WINDOW_MONITORS {
                    return Err(Rejection::invalid("monitors", format!("at most {MAX_WINDOW_MONITORS}")));
                }
                match (monitors.is_empty(), all_monitors) {
                    (true, false) => {
                        return Err(Rejection::invalid(
                            "monitors",
                            "name the monitors the window silences, or ask for all monitors explicitly",
                        ))
                    }
                    (false, true) => {
                        return Err(Rejection::invalid("monitors", "either all monitors or a list, not both"))
                    }
                    _ => {}
                }
                schedule.validate()
            }
        }
    }
}

/// A channel name: 1 to 64 bytes of letters, digits, `-`, `_` and `.`, not all
/// digits (so a list `a,b` and the CLI's arguments read it unambiguously).
pub fn channel_name(name: &str) -> Result<(), Rejection> {
    let ok_chars = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if name.is_empty() || name.len() > 64 || !ok_chars {
        return Err(Rejection::invalid("name", "must be 1 to 64 letters, digits, '-', '_' or '.'"));
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Rejection::invalid("name", "must not be all digits"));
    }
    Ok(())
}

impl IncidentCommand {
    fn validate(&self) -> Result<(), Rejection> {
        match self {
            IncidentCommand::Declare { title, by, .. } => {
                non_empty("title", title, 500)?;
                non_empty("by", by, 200)
            }
            IncidentCommand::Acknowledge { by, .. }
            | IncidentCommand::Resolve { by, .. }
            | IncidentCommand::Reopen { by, .. }
            | IncidentCommand::SetSeverity { by, .. } => non_empty("by", by, 200),
            IncidentCommand::Note { by, text: t, .. } => {
                non_empty("by", by, 200)?;
                non_empty("text", t, MAX_TEXT)
            }
            IncidentCommand::Assign { by, assignee, .. } => {
                non_empty("by", by, 200)?;
                match assignee {
                    Some(a) => non_empty("assignee", a, 200),
                    None => Ok(()),
                }
            }
        }
    }
}

impl Schedule {
    pub fn validate(&self) -> Result<(), Rejection> {
        match self {
            Schedule::Once { start_ms, end_ms } => {
                if end_ms <= start_ms {
                    return Err(Rejection::invalid("end", "must be after the start"));
                }
                Ok(())
            }
            Schedule::Recurring { time_zone, weekdays, start_minute, duration_ms } => {
                if time_zone.parse::<chrono_tz::Tz>().is_err() {
                    return Err(Rejection::invalid("time_zone", format!("{time_zone:?} is not an IANA time zone")));
                }
                if weekdays.len() > 7 || weekdays.iter().any(|d| *d > 6) {
                    return Err(Rejection::invalid("weekdays", "days are 0 (Monday) to 6 (Sunday)"));
                }
                if *start_minute >= 24 * 60 {
                    return Err(Rejection::invalid("start", "must be a time of day"));
                }
                if *duration_ms == 0 {
                    return Err(Rejection::invalid("duration", "must be more than 0"));
                }
                // A window that reaches its own next start is always active:
                // it would silence its monitors for good.
                let gap = Schedule::shortest_gap_ms(weekdays);
                if *duration_ms >= gap {
                    return Err(Rejection::invalid(
                        "duration",
                        format!(
                            "{} reaches the window's next start ({} later), so it would never end; \
                             make it shorter, or use fewer days or a one-off window",
                            humantime::format_duration(std::time::Duration::from_millis(*duration_ms)),
                            humantime::format_duration(std::time::Duration::from_millis(gap)),
                        ),
                    ));
                }
                Ok(())
            }
        }
    }

    /// The shortest time from one start of a recurring window to the next:
    /// a day when every day is listed (or none), else the smallest gap between
    /// consecutive listed weekdays, the week wrapping around.
    fn shortest_gap_ms(weekdays: &[u8]) -> u64 {
        const DAY: u64 = 86_400_000;
        let mut days: Vec<u8> = weekdays.to_vec();
        days.sort_unstable();
        days.dedup();
        if days.len() <= 1 {
            return if days.is_empty() { DAY } else { 7 * DAY };
        }
        let wrap = u64::from(days[0]) + 7 - u64::from(days[days.len() - 1]);
        let gaps = days.windows(2).map(|w| u64::from(w[1] - w[0]));
        gaps.chain([wrap]).min().unwrap_or(7) * DAY
    }

    /// Whether `at_ms` falls inside the window. Pure: the time zone rules are
    /// compiled into the binary (chrono-tz), not read from the host.
    pub fn contains(&self, at_ms: u64) -> bool {
        match self {
            Schedule::Once { start_ms, end_ms } => (*start_ms..*end_ms).contains(&at_ms),
            Schedule::Recurring { time_zone, weekdays, start_minute, duration_ms } => {
                use chrono::{Datelike, TimeZone};
                let Ok(tz) = time_zone.parse::<chrono_tz::Tz>() else { return false };
                let Ok(at) = i64::try_from(at_ms) else { return false };
                let Some(now) = tz.timestamp_millis_opt(at).single() else { return false };
                // An occurrence that covers `at_ms` started on one of the last few local days.
                let days_back = duration_ms.div_ceil(86_400_000) as i64;
                (0..=days_back).any(|back| {
                    let Some(day) = now.date_naive().checked_sub_signed(chrono::Duration::days(back)) else {
                        return false;
                    };
                    if !weekdays.is_empty() && !weekdays.contains(&(day.weekday().num_days_from_monday() as u8)) {
                        return false;
                    }
                    let Some(local) = day.and_hms_opt(start_minute / 60, start_minute % 60, 0) else { return false };
                    // In a DST gap the start does not exist; take the first instant after it.
                    let start = match tz.from_local_datetime(&local) {
                        chrono::LocalResult::Single(t) => t,
                        chrono::LocalResult::Ambiguous(first, _) => first,
                        chrono::LocalResult::None => {
                            match tz.from_local_datetime(&(local + chrono::Duration::hours(1))) {
                                chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => t,
                                chrono::LocalResult::None => return false,
                            }
                        }
                    };
                    let Ok(start_ms) = u64::try_from(start.timestamp_millis()) else { return false };
                    (start_ms..start_ms.saturating_add(*duration_ms)).contains(&at_ms)
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(rfc3339: &str) -> u64 {
        chrono::DateTime::parse_from_rfc3339(rfc3339).unwrap().timestamp_millis() as u64
    }

    #[test]
    fn recurring_windows_follow_the_time_zone_through_dst() {
        // Every day 02:30-03:30 Europe/Berlin.
        let s = Schedule::Recurring {
            time_zone: "Europe/Berlin".into(),
            weekdays: vec![],
            start_minute: 150,
            duration_ms: 3_600_000,
        };
        s.validate().unwrap();
        // Winter (UTC+1): 02:30 local = 01:30Z.
        assert!(s.contains(ms("2026-01-10T01:30:00Z")));
        assert!(s.contains(ms("2026-01-10T02:29:59Z")));
        assert!(!s.contains(ms("2026-01-10T02:30:00Z")));
        assert!(!s.contains(ms("2026-01-10T01:29:59Z")));
        // Summer (UTC+2): 02:30 local = 00:30Z.
        assert!(s.contains(ms("2026-07-10T00:30:00Z")));
        assert!(!s.contains(ms("2026-07-10T01:30:00Z")));
        // 2026-03-29: 02:30 does not exist (clocks jump 02:00 -> 03:00); the window
        // starts at the first instant after the gap, 03:30 local = 01:30Z.
        assert!(s.contains(ms("2026-03-29T01:30:00Z")));
        assert!(!s.contains(ms("2026-03-29T00:45:00Z")));
    }

    #[test]
    fn weekdays_and_windows_across_midnight() {
        // Saturdays 23:00 UTC for 2 h: covers Sunday 00:30 too.
        let s = Schedule::Recurring {
            time_zone: "UTC".into(),
            weekdays: vec![5],
            start_minute: 23 * 60,
            duration_ms: 7_200_000,
        };
        assert!(s.contains(ms("2026-11-21T23:30:00Z"))); // Saturday
        assert!(s.contains(ms("2026-11-22T00:30:00Z"))); // Sunday, inside Saturday's window
        assert!(!s.contains(ms("2026-11-22T23:30:00Z"))); // Sunday's own 23:00 is not listed
        let once = Schedule::Once { start_ms: 10, end_ms: 20 };
        assert!(once.contains(10) && once.contains(19) && !once.contains(20));
    }

    #[test]
    fn bad_schedules_name_the_field() {
        for (s, field) in [
            (Schedule::Once { start_ms: 5, end_ms: 5 }, "end"),
            (
                Schedule::Recurring {
                    time_zone: "Mars/Olympus".into(),
                    weekdays: vec![],
                    start_minute: 0,
                    duration_ms: 1,
                },
                "time_zone",
            ),
            (
                Schedule::Recurring { time_zone: "UTC".into(), weekdays: vec![7], start_minute: 0, duration_ms: 1 },
                "weekdays",
            ),
            (
                Schedule::Recurring { time_zone: "UTC".into(), weekdays: vec![], start_minute: 1440, duration_ms: 1 },
                "start",
            ),
            (
                Schedule::Recurring { time_zone: "UTC".into(), weekdays: vec![], start_minute: 0, duration_ms: 0 },
                "duration",
            ),
        ] {
            assert_eq!(s.validate().unwrap_err().field.as_deref(), Some(field));
        }
    }
}
