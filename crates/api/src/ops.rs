//! The admin operations, shared by the REST routes and the admin gRPC service:
//! input checks, then the cluster call. Both transports stay thin.

use std::time::Duration;

use uptime_probe::{CheckSpec, HttpSpec, StatusRange};
use uptime_raft_store::history::{uptime_percent, Level, Retention};
use uptime_raft_store::quorum::CheckStatus;
use uptime_raft_store::{
    AlertPolicy, Command, IncidentCommand, IncidentState, MaintenanceWindow, Monitor, MonitorDraft, PeerNode, Response,
    Schedule, Severity,
};

use crate::cluster::Cluster;
use crate::dto::{
    parse_quorum, rfc3339, AddNode, BucketView, ClusterStatus, CreateMonitor, DeclareIncident, HistoryView,
    IncidentAction, IncidentView, MaintenanceView, MonitorView, NodeView, Setting, StateHashView,
};
use crate::error::{ApiError, ErrorCode};

/// Local reads by default; `linearizable` waits until this node reflects every
/// write committed before the call.
pub async fn read_barrier(cluster: &Cluster, linearizable: bool) -> Result<(), ApiError> {
    if linearizable {
        cluster.linearize().await
    } else {
        cluster.read_own_writes().await;
        Ok(())
    }
}

pub async fn add_node(cluster: &Cluster, body: AddNode) -> Result<ClusterStatus, ApiError> {
    if body.id == 0 {
        return Err(ApiError::invalid("id", "node ids start at 1"));
    }
    let port_ok =
        body.peer_addr.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !port_ok {
        return Err(ApiError::invalid("peer_addr", format!("{:?} is not host:port", body.peer_addr)));
    }
    if !(body.api_addr.starts_with("http://") || body.api_addr.starts_with("https://")) {
        return Err(ApiError::invalid("api_addr", format!("{:?} is not an http(s):// URL", body.api_addr)));
    }
    // A learner from an earlier add-node is still catching up (the leader
    // promotes it when it has): answer with its status; a voter is already in.
    if let Some(m) = cluster.local_status().members.iter().find(|m| m.id == body.id) {
        if m.voter {
            return Err(
                ApiError::new(ErrorCode::Conflict, format!("node {} is already a member", body.id)).with_field("id")
            );
        }
        if m.addr != body.peer_addr || m.api_addr != body.api_addr {
            let message = format!(
                "node {} is joining as {} ({}): remove it first to change its addresses",
                m.id, m.addr, m.api_addr
            );
            return Err(ApiError::new(ErrorCode::Conflict, message).with_field("id"));
        }
    }
    cluster.add_node(body.id, PeerNode { peer_addr: body.peer_addr, api_addr: body.api_addr }).await?;
    Ok(cluster.status().await)
}

pub async fn remove_node(cluster: &Cluster, id: u64) -> Result<ClusterStatus, ApiError> {
    if !cluster.local_status().members.iter().any(|m| m.id == id) {
        return Err(ApiError::not_found(format!("node {id} is not a member")));
    }
    cluster.remove_node(id).await?;
    Ok(cluster.status().await)
}

pub async fn state_hash(cluster: &Cluster, linearizable: bool) -> Result<StateHashView, ApiError> {
    read_barrier(cluster, linearizable).await?;
    let h = cluster.reader().state_hash()?;
    Ok(StateHashView { applied_index: h.applied_index, hash: h.hash })
}

pub async fn get_setting(cluster: &Cluster, key: String, linearizable: bool) -> Result<Setting, ApiError> {
    read_barrier(cluster, linearizable).await?;
    match cluster.reader().setting(&key)? {
        Some(value) => Ok(Setting { key, value }),
        None => Err(ApiError::not_found(format!("no setting {key:?}"))),
    }
}

pub async fn put_setting(cluster: &Cluster, key: String, value: String) -> Result<Setting, ApiError> {
    cluster.write(Command::SetSetting { key: key.clone(), value: value.clone() }).await?;
    Ok(Setting { key, value })
}

pub async fn list_monitors(cluster: &Cluster, linearizable: bool) -> Result<Vec<MonitorView>, ApiError> {
    read_barrier(cluster, linearizable).await?;
    cluster.reader().list_monitors()?.iter().map(|m| view(cluster, m)).collect()
}

pub async fn get_monitor(cluster: &Cluster, id_or_name: &str, linearizable: bool) -> Result<MonitorView, ApiError> {
    read_barrier(cluster, linearizable).await?;
    match cluster.reader().find_monitor(id_or_name)? {
        Some(m) => view(cluster, &m),
        None => Err(ApiError::not_found(format!("no monitor {id_or_name:?}"))),
    }
}

pub async fn delete_monitor(cluster: &Cluster, id_or_name: &str) -> Result<(), ApiError> {
    let monitor = find(cluster, id_or_name).await?;
    cluster.write(Command::DeleteMonitor { id: monitor.id }).await?;
    Ok(())
}

/// A monitor with its current verdict.
pub fn view(cluster: &Cluster, m: &Monitor) -> Result<MonitorView, ApiError> {
    Ok(MonitorView::new(m, &cluster.reader().verdict(m.id)?))
}

fn parse_duration(field: &str, value: Option<&str>, default: Duration) -> Result<u64, ApiError> {
    let d = match value.filter(|s| !s.is_empty()) {
        None => default,
        Some(s) => humantime::parse_duration(s)
            .map_err(|e| ApiError::invalid(field, format!("{s:?} is not a duration (e.g. 30s, 5m): {e}")))?,
    };
    Ok(d.as_millis() as u64)
}

pub async fn create_monitor(cluster: &Cluster, body: CreateMonitor) -> Result<MonitorView, ApiError> {
    let draft = draft(body)?;
    monitor_write(cluster, Command::CreateMonitor(draft)).await
}

/// Replaces a monitor's definition (PUT): the body is the whole monitor, as for
/// create; its verdict, history and incidents stay.
pub async fn update_monitor(cluster: &Cluster, id_or_name: &str, body: CreateMonitor) -> Result<MonitorView, ApiError> {
    let id = find(cluster, id_or_name).await?.id;
    let draft = draft(body)?;
    monitor_write(cluster, Command::UpdateMonitor { id, draft }).await
}

async fn monitor_write(cluster: &Cluster, command: Command) -> Result<MonitorView, ApiError> {
    match cluster.write(command).await? {
        Response::Monitor(m) => {
            // The verdict is read locally: let this node apply the write first.
            cluster.read_own_writes().await;
            view(cluster, &m)
        }
        other => Err(ApiError::internal(format!("unexpected answer from apply: {other:?}"))),
    }
}

/// Checks and converts the API's monitor body.
fn draft(body: CreateMonitor) -> Result<MonitorDraft, ApiError> {
    let spec_err = |e: uptime_probe::SpecError| ApiError::invalid(e.field, e.message);
    let mut check = CheckSpec::from_target(&body.kind, &body.target).map_err(spec_err)?;
    if !body.expect.is_empty() {
        match &mut check {
            CheckSpec::Http(HttpSpec { expect_status, .. }) => {
                *expect_status = body.expect.iter().copied().map(StatusRange::exact).collect();
            }
            _ => return Err(ApiError::invalid("expect", "only http checks take expected status codes")),
        }
        check.validate().map_err(spec_err)?;
    }
    let interval_ms = parse_duration("interval", body.interval.as_deref(), Duration::from_secs(30))?;
    let timeout_ms =
        parse_duration("timeout", body.timeout.as_deref(), Duration::from_millis(interval_ms.min(10_000)))?;
    let defaults = AlertPolicy::default();
    let quorum = match body.quorum.as_deref() {
        None => defaults.quorum,
        Some(q) => parse_quorum(q)
            .ok_or_else(|| ApiError::invalid("quorum", format!("{q:?}: expected majority, any, all or a number")))?,
    };
    let policy = AlertPolicy {
        confirmations: body.confirmations.unwrap_or(defaults.confirmations),
        recovery_confirmations: body.recovery_confirmations.unwrap_or(defaults.recovery_confirmations),
        quorum,
        notify_on_recovery: body.notify_on_recovery.unwrap_or(defaults.notify_on_recovery),
        renotify_interval_ms: parse_duration("renotify", body.renotify.as_deref(), Duration::ZERO)?,
        channels: body.channels,
    };
    Ok(MonitorDraft {
        name: body.name,
        check,
        interval_ms,
        timeout_ms,
        enabled: !body.paused,
        public: body.public,
        tags: body.tags,
        policy,
    })
}

// --- monitors: pause, per-node view, history ---

async fn find(cluster: &Cluster, id_or_name: &str) -> Result<Monitor, ApiError> {
    cluster.read_own_writes().await;
    cluster.reader().find_monitor(id_or_name)?.ok_or_else(|| ApiError::not_found(format!("no monitor {id_or_name:?}")))
}

pub async fn set_paused(cluster: &Cluster, id_or_name: &str, paused: bool) -> Result<MonitorView, ApiError> {
    let m = find(cluster, id_or_name).await?;
    match cluster.write(Command::SetMonitorEnabled { id: m.id, enabled: !paused }).await? {
        Response::Monitor(m) => {
            // The verdict is read locally: let this node apply the write first.
            cluster.read_own_writes().await;
            view(cluster, &m)
        }
        other => Err(ApiError::internal(format!("unexpected answer from apply: {other:?}"))),
    }
}

pub async fn node_view(cluster: &Cluster, id_or_name: &str) -> Result<Vec<NodeView>, ApiError> {
    let m = find(cluster, id_or_name).await?;
    let now = cluster.reader().clock_ms()?;
    let stale_after = m.verdict_policy().stale_after_ms;
    Ok(cluster
        .reader()
        .observations(m.id)?
        .into_iter()
        .map(|(node_id, o)| NodeView {
            node_id,
            status: match o.status {
                CheckStatus::Up => "up",
                CheckStatus::Down => "down",
                CheckStatus::Degraded => "degraded",
            }
            .into(),
            run: o.run,
            at: rfc3339(o.at_ms),
            at_ms: o.at_ms,
            stale: now.saturating_sub(o.at_ms) > stale_after,
            last_error: o.last_error,
            latency_ms: o.latency_us as f64 / 1000.0,
        })
        .collect())
}

pub async fn history(cluster: &Cluster, id_or_name: &str, range: Option<&str>) -> Result<HistoryView, ApiError> {
    let m = find(cluster, id_or_name).await?;
    let range_ms = parse_duration("range", range, Duration::from_secs(86_400))?;
    let retention = Retention::default();
    let level = Level::ALL.into_iter().find(|l| range_ms <= retention.of(*l)).unwrap_or(Level::Day);
    let to = cluster.reader().clock_ms()?;
    let from = level.bucket_start(to.saturating_sub(range_ms));
    let buckets = cluster.reader().history(m.id, level, from, to + 1)?;
    let ms = |us: u64| us as f64 / 1000.0;
    let (checks, failures) = buckets.iter().fold((0, 0), |(c, f), (_, b)| (c + b.checks, f + b.failures));
    Ok(HistoryView {
        monitor_id: m.id,
        name: m.name,
        level: format!("{level:?}").to_lowercase(),
        from: rfc3339(from),
        to: rfc3339(to),
        uptime_percent: uptime_percent(buckets.iter().map(|(_, b)| b)),
        checks,
        failures,
        buckets: buckets
            .iter()
            .map(|(start, b)| {
                let has = !b.hist.is_empty();
                BucketView {
                    start: rfc3339(*start),
                    start_ms: *start,
                    checks: b.checks,
                    failures: b.failures,
                    latency_min_ms: has.then(|| ms(b.lat_min_us)),
                    latency_max_ms: has.then(|| ms(b.lat_max_us)),
                    latency_avg_ms: b.lat_sum_us.checked_div(b.hist.iter().map(|c| u64::from(*c)).sum()).map(ms),
                    latency_p50_ms: b.quantile_us(0.50).map(ms),
                    latency_p95_ms: b.quantile_us(0.95).map(ms),
                    latency_p99_ms: b.quantile_us(0.99).map(ms),
                }
            })
            .collect(),
    })
}

// --- incidents ---

pub async fn list_incidents(cluster: &Cluster, state: Option<&str>) -> Result<Vec<IncidentView>, ApiError> {
    cluster.read_own_writes().await;
    let filter = |i: &uptime_raft_store::Incident| match state {
        None | Some("all") => Ok(true),
        Some("open") => Ok(i.state != IncidentState::Resolved),
        Some(s @ ("triggered" | "acknowledged" | "resolved")) => Ok(i.state.as_str() == s),
        Some(other) => Err(ApiError::invalid(
            "state",
            format!("{other:?}: expected open, triggered, acknowledged, resolved or all"),
        )),
    };
    let mut out = Vec::new();
    for i in cluster.reader().list_incidents()? {
        if filter(&i)? {
            out.push(IncidentView::from(&i));
        }
    }
    Ok(out)
}

fn incident_id(id: &str) -> Result<u64, ApiError> {
    id.parse().map_err(|_| ApiError::invalid("id", format!("{id:?} is not an incident id")))
}

pub async fn get_incident(cluster: &Cluster, id: &str) -> Result<IncidentView, ApiError> {
    cluster.read_own_writes().await;
    let id = incident_id(id)?;
    match cluster.reader().get_incident(id)? {
        Some(i) => Ok(IncidentView::from(&i)),
        None => Err(ApiError::not_found(format!("no incident {id}"))),
    }
}

fn severity(s: Option<&str>) -> Result<Severity, ApiError> {
    match s {
        None => Ok(Severity::Critical),
        Some(s) => Severity::parse(s)
            .ok_or_else(|| ApiError::invalid("severity", format!("{s:?}: expected critical, major, minor or info"))),
    }
}

async fn incident_write(cluster: &Cluster, c: IncidentCommand) -> Result<IncidentView, ApiError> {
    match cluster.write(Command::Incident(c)).await? {
        Response::Incident(i) => Ok(IncidentView::from(&i)),
        other => Err(ApiError::internal(format!("unexpected answer from apply: {other:?}"))),
    }
}

pub async fn declare_incident(cluster: &Cluster, body: DeclareIncident, by: String) -> Result<IncidentView, ApiError> {
    let monitor_id = match body.monitor.as_deref() {
        Some(m) => Some(find(cluster, m).await?.id),
        None => None,
    };
    let severity = severity(body.severity.as_deref())?;
    incident_write(cluster, IncidentCommand::Declare { title: body.title, severity, monitor_id, by }).await
}

/// `action` is ack, resolve, reopen, notes, assign or severity.
pub async fn incident_action(
    cluster: &Cluster,
    id: &str,
    action: &str,
    body: IncidentAction,
    by: String,
) -> Result<IncidentView, ApiError> {
    let id = incident_id(id)?;
    let c = match action {
        "ack" => IncidentCommand::Acknowledge { id, by },
        "resolve" => IncidentCommand::Resolve { id, by },
        "reopen" => IncidentCommand::Reopen { id, by },
        "notes" => IncidentCommand::Note { id, by, text: body.text.unwrap_or_default() },
        "assign" => IncidentCommand::Assign { id, by, assignee: body.assignee },
        "severity" => IncidentCommand::SetSeverity { id, by, severity: severity(body.severity.as_deref())? },
        other => return Err(ApiError::not_found(format!("no incident action {other:?}"))),
    };
    incident_write(cluster, c).await
}

// --- maintenance ---

const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn maintenance_view(cluster: &Cluster, w: &MaintenanceWindow, now: u64) -> MaintenanceView {
    let names = w
        .monitors
        .iter()
        .map(|id| cluster.reader().get_monitor(*id).ok().flatten().map(|m| m.name).unwrap_or_else(|| id.to_string()))
        .collect();
    let mut v = MaintenanceView {
        id: w.id,
        name: w.name.clone(),
        monitors: names,
        active: w.schedule.contains(now),
        ..Default::default()
    };
    match &w.schedule {
        Schedule::Once { start_ms, end_ms } => {
            v.start = Some(rfc3339(*start_ms));
            v.end = Some(rfc3339(*end_ms));
        }
        Schedule::Recurring { time_zone, weekdays, start_minute, duration_ms } => {
            v.time_zone = Some(time_zone.clone());
            v.at = Some(format!("{:02}:{:02}", start_minute / 60, start_minute % 60));
            v.duration = Some(humantime::format_duration(Duration::from_millis(*duration_ms)).to_string());
            v.weekdays = weekdays.iter().map(|d| WEEKDAYS[usize::from(*d).min(6)].to_string()).collect();
        }
    }
    v
}

pub async fn list_maintenance(cluster: &Cluster) -> Result<Vec<MaintenanceView>, ApiError> {
    cluster.read_own_writes().await;
    let now = cluster.reader().clock_ms()?;
    Ok(cluster.reader().list_maintenance()?.iter().map(|w| maintenance_view(cluster, w, now)).collect())
}

fn parse_time(field: &str, s: &str) -> Result<u64, ApiError> {
    let t = humantime::parse_rfc3339_weak(s)
        .map_err(|e| ApiError::invalid(field, format!("{s:?} is not an RFC 3339 time: {e}")))?;
    let ms = t.duration_since(std::time::UNIX_EPOCH).map_err(|_| ApiError::invalid(field, "before 1970"))?.as_millis();
    Ok(ms as u64)
}

pub async fn create_maintenance(cluster: &Cluster, body: MaintenanceView) -> Result<MaintenanceView, ApiError> {
    let mut monitors = Vec::new();
    for m in &body.monitors {
        monitors.push(find(cluster, m).await?.id);
    }
    let schedule = match (&body.start, &body.end, &body.time_zone) {
        (Some(start), Some(end), None) => {
            Schedule::Once { start_ms: parse_time("start", start)?, end_ms: parse_time("end", end)? }
        }
        (None, None, Some(tz)) => {
            let at = body
                .at
                .as_deref()
                .ok_or_else(|| ApiError::invalid("at", "a recurring window needs a start time HH:MM"))?;
            let (h, m) = at
                .split_once(':')
                .and_then(|(h, m)| Some((h.parse::<u32>().ok()?, m.parse::<u32>().ok()?)))
                .filter(|(h, m)| *h < 24 && *m < 60)
                .ok_or_else(|| ApiError::invalid("at", format!("{at:?} is not a time of day HH:MM")))?;
            let duration = body.duration.as_deref().ok_or_else(|| ApiError::invalid("duration", "required"))?;
            let duration_ms = parse_duration("duration", Some(duration), Duration::ZERO)?;
            let mut weekdays = Vec::new();
            for d in &body.weekdays {
                let i = WEEKDAYS
                    .iter()
                    .position(|w| d.eq_ignore_ascii_case(w))
                    .ok_or_else(|| ApiError::invalid("weekdays", format!("{d:?}: expected mon..sun")))?;
                weekdays.push(i as u8);
            }
            Schedule::Recurring { time_zone: tz.clone(), weekdays, start_minute: h * 60 + m, duration_ms }
        }
        _ => {
            return Err(ApiError::invalid(
                "schedule",
                "give start and end (one-off), or time_zone, at and duration (recurring)",
            ))
        }
    };
    let cmd = Command::CreateMaintenance { name: body.name, monitors, schedule };
    match cluster.write(cmd).await? {
        Response::Maintenance(w) => {
            let now = cluster.reader().clock_ms()?;
            Ok(maintenance_view(cluster, &w, now))
        }
        other => Err(ApiError::internal(format!("unexpected answer from apply: {other:?}"))),
    }
}

pub async fn delete_maintenance(cluster: &Cluster, id: &str) -> Result<(), ApiError> {
    let id: u64 = id.parse().map_err(|_| ApiError::invalid("id", format!("{id:?} is not a window id")))?;
    cluster.write(Command::DeleteMaintenance { id }).await?;
    Ok(())
}
