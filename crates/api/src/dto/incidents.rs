//! Incidents and the operator actions on them.

use super::*;

/// An incident as the API shows it; `incident list -o json` is an array of these.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentView {
    pub id: u64,
    pub monitor_id: Option<u64>,
    pub title: String,
    /// What opened it: `down`, `degraded` or `no_data` (the verdict, which
    /// resolves it on recovery), or `declared` (a person, who resolves it).
    pub cause: String,
    /// `triggered`, `acknowledged` or `resolved`.
    pub state: String,
    pub severity: String,
    pub assignee: Option<String>,
    pub opened_at: String,
    pub acknowledged_at: Option<String>,
    pub resolved_at: Option<String>,
    pub opened_at_ms: u64,
    pub resolved_at_ms: Option<u64>,
    pub timeline: Vec<TimelineView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineView {
    pub at: String,
    pub by: String,
    pub kind: String,
    pub text: String,
}

impl From<&uptime_raft_store::Incident> for IncidentView {
    fn from(i: &uptime_raft_store::Incident) -> Self {
        IncidentView {
            id: i.id,
            monitor_id: i.monitor_id,
            title: i.title.clone(),
            cause: i.cause.as_str().into(),
            state: i.state.as_str().into(),
            severity: i.severity.as_str().into(),
            assignee: i.assignee.clone(),
            opened_at: rfc3339(i.opened_at_ms),
            acknowledged_at: i.acknowledged_at_ms.map(rfc3339),
            resolved_at: i.resolved_at_ms.map(rfc3339),
            opened_at_ms: i.opened_at_ms,
            resolved_at_ms: i.resolved_at_ms,
            timeline: i
                .timeline
                .iter()
                .map(|e| TimelineView {
                    at: rfc3339(e.at_ms),
                    by: e.by.clone(),
                    kind: e.kind.clone(),
                    text: e.text.clone(),
                })
                .collect(),
        }
    }
}

/// `POST /api/v1/incidents`: declare one by hand.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclareIncident {
    pub title: String,
    /// critical (default), major, minor or info.
    #[serde(default)]
    pub severity: Option<String>,
    /// A monitor id or name, if the incident is about one.
    #[serde(default)]
    pub monitor: Option<String>,
}

/// The body of incident actions; every field optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentAction {
    /// A note's text.
    #[serde(default)]
    pub text: Option<String>,
    /// For assign: a user name, or null to unassign.
    #[serde(default)]
    pub assignee: Option<String>,
    #[serde(default)]
    pub severity: Option<String>,
}
