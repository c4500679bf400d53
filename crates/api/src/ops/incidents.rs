//! Incidents: list, read, declare, and the operator actions on them.

use super::*;

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

pub(crate) fn incident_id(id: &str) -> Result<u64, ApiError> {
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

pub(crate) fn severity(s: Option<&str>) -> Result<Severity, ApiError> {
    match s {
        None => Ok(Severity::Critical),
        Some(s) => Severity::parse(s)
            .ok_or_else(|| ApiError::invalid("severity", format!("{s:?}: expected critical, major, minor or info"))),
    }
}

pub(crate) async fn incident_write(cluster: &Cluster, c: IncidentCommand) -> Result<IncidentView, ApiError> {
    match cluster.write(Command::Incident(c)).await? {
        Response::Incident(i) => Ok(IncidentView::from(&i)),
        other => Err(ApiError::internal(format!("unexpected answer from apply: {other:?}"))),
    }
}

pub async fn declare_incident(cluster: &Cluster, body: DeclareIncident, by: String) -> Result<IncidentView, ApiError> {
    let monitor_id = match body.monitor.as_deref() {
        Some(m) => Some(find_for_write(cluster, m).await?.id),
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
