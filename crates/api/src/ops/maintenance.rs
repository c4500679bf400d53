//! Maintenance windows.

use super::*;

pub(crate) const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

pub(crate) fn maintenance_view(cluster: &Cluster, w: &MaintenanceWindow, now: u64) -> MaintenanceView {
    let names = w
        .monitors
        .iter()
        .map(|id| cluster.reader().get_monitor(*id).ok().flatten().map(|m| m.name).unwrap_or_else(|| id.to_string()))
        .collect();
    let mut v = MaintenanceView {
        id: w.id,
        name: w.name.clone(),
        monitors: names,
        all_monitors: w.all_monitors,
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

pub(crate) fn parse_time(field: &str, s: &str) -> Result<u64, ApiError> {
    let t = humantime::parse_rfc3339_weak(s)
        .map_err(|e| ApiError::invalid(field, format!("{s:?} is not an RFC 3339 time: {e}")))?;
    let ms = t.duration_since(std::time::UNIX_EPOCH).map_err(|_| ApiError::invalid(field, "before 1970"))?.as_millis();
    Ok(ms as u64)
}

pub async fn create_maintenance(cluster: &Cluster, body: MaintenanceView) -> Result<MaintenanceView, ApiError> {
    let mut monitors = Vec::new();
    for m in &body.monitors {
        monitors.push(find_for_write(cluster, m).await?.id);
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
    let warnings = match schedule {
        Schedule::Once { end_ms, .. } if end_ms <= cluster.reader().clock_ms()? => {
            vec![format!("the window ended before it was created ({}): it will never be active", rfc3339(end_ms))]
        }
        _ => Vec::new(),
    };
    let cmd = Command::CreateMaintenance { name: body.name, monitors, all_monitors: body.all_monitors, schedule };
    match cluster.write(cmd).await? {
        Response::Maintenance(w) => {
            let now = cluster.reader().clock_ms()?;
            Ok(MaintenanceView { warnings, ..maintenance_view(cluster, &w, now) })
        }
        other => Err(ApiError::internal(format!("unexpected answer from apply: {other:?}"))),
    }
}

pub async fn delete_maintenance(cluster: &Cluster, id: &str) -> Result<(), ApiError> {
    let id: u64 = id.parse().map_err(|_| ApiError::invalid("id", format!("{id:?} is not a window id")))?;
    cluster.write(Command::DeleteMaintenance { id }).await?;
    Ok(())
}
