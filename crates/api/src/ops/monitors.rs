//! Monitors: create, replace, read, delete, pause and resume, the per-node view, history.

use super::*;

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
    let monitor = match find_for_write(cluster, id_or_name).await {
        Ok(m) => m,
        // A retry of a delete that applied: the monitor is gone because of it.
        Err(e) => match cluster.remembered_answer() {
            Some(Response::Deleted { .. }) => return Ok(()),
            _ => return Err(e),
        },
    };
    cluster.write(Command::DeleteMonitor { id: monitor.id }).await?;
    Ok(())
}

/// A monitor with its current verdict.
pub fn view(cluster: &Cluster, m: &Monitor) -> Result<MonitorView, ApiError> {
    Ok(MonitorView::new(m, &cluster.reader().verdict(m.id)?))
}

pub(crate) fn parse_duration(field: &str, value: Option<&str>, default: Duration) -> Result<u64, ApiError> {
    let d = match value.filter(|s| !s.is_empty()) {
        None => default,
        Some(s) => humantime::parse_duration(s)
            .map_err(|e| ApiError::invalid(field, format!("{s:?} is not a duration (e.g. 30s, 5m): {e}")))?,
    };
    Ok(d.as_millis() as u64)
}

pub async fn create_monitor(cluster: &Cluster, body: CreateMonitor) -> Result<MonitorView, ApiError> {
    let draft = draft(body)?;
    possible_quorum(cluster, &draft)?;
    monitor_write(cluster, Command::CreateMonitor(draft)).await
}

/// Replaces a monitor's definition (PUT): the body is the whole monitor, as for
/// create; its verdict, history and incidents stay.
pub async fn update_monitor(cluster: &Cluster, id_or_name: &str, body: CreateMonitor) -> Result<MonitorView, ApiError> {
    let id = match find_for_write(cluster, id_or_name).await {
        Ok(m) => m.id,
        Err(e) => return replayed(cluster).ok_or(e)?,
    };
    let draft = draft(body)?;
    possible_quorum(cluster, &draft)?;
    monitor_write(cluster, Command::UpdateMonitor { id, draft }).await
}

pub(crate) async fn monitor_write(cluster: &Cluster, command: Command) -> Result<MonitorView, ApiError> {
    match cluster.write(command).await? {
        Response::Monitor(m) => {
            // The verdict is read locally: let this node apply the write first.
            cluster.read_own_writes().await;
            view(cluster, &m)
        }
        other => Err(ApiError::internal(format!("unexpected answer from apply: {other:?}"))),
    }
}

/// A quorum of N reporting nodes on a cluster of fewer members could never be
/// reached: the monitor would stay UNKNOWN for good.
fn possible_quorum(cluster: &Cluster, draft: &MonitorDraft) -> Result<(), ApiError> {
    if let QuorumRule::Count(n) = draft.policy.quorum {
        let members = cluster.local_status().members.len();
        if n as usize > members {
            return Err(ApiError::invalid(
                "quorum",
                format!("{n} reporting nodes can never agree: the cluster has {members} members"),
            ));
        }
    }
    Ok(())
}

/// The timeout when none is given: below the interval, so a check that hangs
/// until its timeout still ends before its next slot (at most 10 s).
fn default_timeout(interval_ms: u64) -> Duration {
    Duration::from_millis((interval_ms / 5 * 4).clamp(uptime_raft_store::MIN_TIMEOUT_MS, 10_000))
}

/// Checks and converts the API's monitor body.
pub(crate) fn draft(body: CreateMonitor) -> Result<MonitorDraft, ApiError> {
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
    let timeout_ms = parse_duration("timeout", body.timeout.as_deref(), default_timeout(interval_ms))?;
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
        no_data_after_ms: parse_duration(
            "no_data_after",
            body.no_data_after.as_deref(),
            Duration::from_millis(defaults.no_data_after_ms),
        )?,
        no_data_severity: match body.no_data_severity.as_deref() {
            None => defaults.no_data_severity,
            Some(s) => Severity::parse(s).ok_or_else(|| {
                ApiError::invalid("no_data_severity", format!("{s:?}: expected critical, major, minor or info"))
            })?,
        },
        alert_on_degraded: body.alert_on_degraded.unwrap_or(defaults.alert_on_degraded),
        default_channels: body.default_channels.unwrap_or(defaults.default_channels),
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

pub(crate) async fn find(cluster: &Cluster, id_or_name: &str) -> Result<Monitor, ApiError> {
    cluster.read_own_writes().await;
    cluster.reader().find_monitor(id_or_name)?.ok_or_else(|| ApiError::not_found(format!("no monitor {id_or_name:?}")))
}

/// A keyed write retried after its first attempt applied and then the
/// monitor went away: the first answer, as apply would give it.
fn replayed(cluster: &Cluster) -> Option<Result<MonitorView, ApiError>> {
    match cluster.remembered_answer()? {
        Response::Monitor(m) => Some(view(cluster, &m)),
        Response::Rejected(r) => Some(Err(r.into())),
        _ => None,
    }
}

/// [`find`] for a write: the name is resolved against every write committed
/// before this call (a linearizable read), so a follower that has not applied
/// a monitor's creation yet does not answer "not found" for it. If the monitor
/// is deleted (and perhaps created again) between this and the write's apply,
/// apply answers "not found", which is then a true answer: the name was
/// absent at a point between the two.
pub(crate) async fn find_for_write(cluster: &Cluster, id_or_name: &str) -> Result<Monitor, ApiError> {
    cluster.linearize().await?;
    cluster.reader().find_monitor(id_or_name)?.ok_or_else(|| ApiError::not_found(format!("no monitor {id_or_name:?}")))
}

pub async fn set_paused(cluster: &Cluster, id_or_name: &str, paused: bool) -> Result<MonitorView, ApiError> {
    let m = match find_for_write(cluster, id_or_name).await {
        Ok(m) => m,
        Err(e) => return replayed(cluster).ok_or(e)?,
    };
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
            status: o.status.as_str().into(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn body(interval: &str) -> CreateMonitor {
        CreateMonitor {
            name: "web".into(),
            kind: "tcp".into(),
            target: "127.0.0.1:9".into(),
            interval: Some(interval.into()),
            ..CreateMonitor::default()
        }
    }

    /// Issue 10, point 12: the default timeout was the interval (up to 10 s),
    /// so a hanging target's check ran into its next slot and every other slot
    /// was skipped: DOWN took twice the confirmations.
    #[test]
    fn the_default_timeout_ends_before_the_next_slot() {
        for (interval, want_ms) in
            [("1s", 800), ("5s", 4_000), ("10s", 8_000), ("12s", 9_600), ("30s", 10_000), ("1h", 10_000)]
        {
            let d = draft(body(interval)).unwrap();
            assert_eq!(d.timeout_ms, want_ms, "interval {interval}");
            assert!(d.timeout_ms < d.interval_ms);
        }
    }
}
