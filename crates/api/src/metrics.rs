//! `GET /metrics`: Prometheus text (exposition format 0.0.4). The node's Raft
//! progress and the replicated state it has applied, plus whatever the node
//! adds through [`LocalMetrics`] (its digest queue).

use std::collections::BTreeMap;
use std::fmt::Write;

use uptime_raft_store::IncidentState;

use crate::cluster::Cluster;
use crate::dto::MonitorView;
use crate::error::ApiError;

/// Node-local figures the API layer does not own, rendered into `/metrics`.
pub trait LocalMetrics: Send + Sync + 'static {
    fn write(&self, out: &mut MetricsWriter);
}

/// Builds a Prometheus text page; each metric's HELP and TYPE lines come once,
/// before its first series.
#[derive(Default)]
pub struct MetricsWriter {
    out: String,
    last: String,
}

impl MetricsWriter {
    pub fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: u64) {
        self.series("counter", name, help, labels, value);
    }

    pub fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: u64) {
        self.series("gauge", name, help, labels, value);
    }

    fn series(&mut self, kind: &str, name: &str, help: &str, labels: &[(&str, &str)], value: u64) {
        if self.last != name {
            let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            name.clone_into(&mut self.last);
        }
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let v = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
                let _ = write!(self.out, "{k}=\"{v}\"");
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// The whole page for this node.
pub fn render(cluster: &Cluster, local: Option<&dyn LocalMetrics>) -> Result<String, ApiError> {
    let mut w = MetricsWriter::default();
    let status = cluster.local_status();
    w.gauge("uptime_raft_term", "Current Raft term.", &[], status.term);
    w.gauge("uptime_raft_is_leader", "1 on the leader.", &[], u64::from(cluster.is_leader()));
    w.gauge("uptime_raft_last_log_index", "Last index in this node's log.", &[], status.last_log_index);
    w.gauge("uptime_raft_last_applied_index", "Last index applied to this node's state.", &[], status.last_applied);
    w.gauge(
        "uptime_raft_snapshot_index",
        "Last index covered by the latest snapshot.",
        &[],
        status.snapshot_index.unwrap_or(0),
    );
    let voters = status.members.iter().filter(|m| m.voter).count() as u64;
    let members_help = "Cluster members by role.";
    w.gauge("uptime_cluster_members", members_help, &[("role", "voter")], voters);
    w.gauge("uptime_cluster_members", members_help, &[("role", "learner")], status.members.len() as u64 - voters);

    let reader = cluster.reader();
    let mut states: BTreeMap<&'static str, u64> =
        ["up", "down", "degraded", "unknown", "maintenance"].into_iter().map(|s| (s, 0)).collect();
    for m in reader.list_monitors()? {
        let view = MonitorView::new(&m, &reader.verdict(m.id)?);
        if let Some(n) = states.get_mut(view.state.as_str()) {
            *n += 1;
        }
    }
    for (state, n) in states {
        w.gauge("uptime_monitors", "Monitors by state, as applied on this node.", &[("state", state)], n);
    }
    let open = reader.list_incidents()?.iter().filter(|i| i.state != IncidentState::Resolved).count() as u64;
    w.gauge("uptime_incidents_open", "Incidents not resolved.", &[], open);
    for (node, checks) in reader.checks_received()? {
        let node = node.to_string();
        let help = "Checks received from each node in applied digests.";
        w.counter("uptime_digest_checks_received_total", help, &[("node", &node)], checks);
    }
    let dup = reader.digests_duplicate()?;
    w.counter("uptime_digests_duplicate_total", "Digests dropped by apply as already applied.", &[], dup);
    let coalesced = reader.digests_coalesced()?;
    w.counter("uptime_digests_coalesced_total", "Digest windows folded together because of a backlog.", &[], coalesced);
    let mut by_state: BTreeMap<&'static str, u64> =
        ["pending", "claimed", "sent", "failed", "dead"].into_iter().map(|s| (s, 0)).collect();
    for n in reader.outbox()? {
        *by_state.entry(n.state.as_str()).or_insert(0) += 1;
    }
    for (state, n) in by_state {
        let help = "Notification records by state (failed: waiting for a retry; dead: given up).";
        w.gauge("uptime_notifications", help, &[("state", state)], n);
    }
    let mut outcomes: BTreeMap<&'static str, u64> =
        ["sent", "failed", "abandoned", "undeliverable", "interrupted", "deferred"]
            .into_iter()
            .map(|s| (s, 0))
            .collect();
    outcomes.extend(reader.delivery_counts()?);
    for (outcome, n) in outcomes {
        let help = "Delivery attempts recorded in the replicated delivery log, by outcome.";
        w.counter("uptime_notification_deliveries_total", help, &[("outcome", outcome)], n);
    }
    if let Some(local) = local {
        local.write(&mut w);
    }
    Ok(w.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_and_type_come_once_per_metric_and_label_values_are_escaped() {
        let mut w = MetricsWriter::default();
        w.gauge("a", "An a.", &[("k", "x\"y\\z\nw")], 1);
        w.gauge("a", "An a.", &[("k", "v")], 2);
        w.counter("b_total", "A b.", &[], 3);
        assert_eq!(
            w.finish(),
            "# HELP a An a.\n# TYPE a gauge\na{k=\"x\\\"y\\\\z\\nw\"} 1\na{k=\"v\"} 2\n\
             # HELP b_total A b.\n# TYPE b_total counter\nb_total 3\n"
        );
    }
}
