//! The alert checkers: what the fencing sink accepted, against what the
//! cluster committed (its incidents and its outbox with every delivery
//! attempt) and the faults the nemesis made. Pure functions over what the run
//! collected, so each rule is tested on small hand-made cases.
//!
//! - **missed**: a committed `open` or `resolve` notification of a watched
//!   incident with no accepted delivery after the heal, and an incident
//!   transition (opened; resolved, where the monitor notifies on recovery)
//!   with no notification at all.
//! - **duplicates**: accepted deliveries beyond the first for one
//!   `Idempotency-Key`. One is *after a crash mid-send* when it went out
//!   under a later claim than the delivery before it, and the cluster's log
//!   shows that earlier attempt never settled as sent (interrupted by a
//!   re-claim, abandoned, or failed after the receiver had the request): the
//!   sender died or lost its lease between sending and recording. Every other
//!   duplicate is unexplained and must not happen.
//! - **stale term accepted**: an accepted delivery whose fencing token is not
//!   a claim the cluster committed for that notification (a send outside the
//!   protocol: before a claim committed, or by a leader whose claim never
//!   did), or an alert with no token at all.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use uptime_api::dto::{IncidentView, NotificationView};

use crate::sink::Delivery;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertCounts {
    /// Incidents of the watched monitors.
    pub incidents: u64,
    /// Requests the sink received for the watched incidents, accepted or not.
    pub deliveries: u64,
    /// Distinct `Idempotency-Key`s among the accepted ones.
    pub distinct_deliveries: u64,
    pub duplicates_unexplained: u64,
    pub duplicates_after_crash: u64,
    pub missed_alerts: u64,
    pub stale_term_accepted: u64,
    /// Requests the sink refused because a newer leader had been seen.
    pub stale_rejected: u64,
    /// What each missed, unexplained or stale case was, for the human summary.
    pub findings: Vec<String>,
}

fn notification_id(d: &Delivery) -> Option<u64> {
    d.idempotency_key.as_deref()?.parse().ok()
}

fn token(fence: (u64, u64, u64)) -> String {
    format!("{}-{}-{}", fence.0, fence.1, fence.2)
}

/// Counts over the notifications of `incidents` (the watched ones), whose
/// records are `outbox`; `recovery` says whether a resolved incident's monitor
/// notifies on recovery.
pub fn alerts(
    deliveries: &[Delivery],
    incidents: &[IncidentView],
    outbox: &[NotificationView],
    recovery: impl Fn(&IncidentView) -> bool,
) -> AlertCounts {
    let mut c = AlertCounts { incidents: incidents.len() as u64, ..AlertCounts::default() };
    let watched: BTreeSet<u64> = incidents.iter().map(|i| i.id).collect();
    let records: BTreeMap<u64, &NotificationView> =
        outbox.iter().filter(|n| watched.contains(&n.incident_id)).map(|n| (n.id, n)).collect();

    // Every transition has its notification.
    for i in incidents {
        let kinds: BTreeSet<&str> =
            records.values().filter(|n| n.incident_id == i.id).map(|n| n.kind.as_str()).collect();
        if !kinds.contains("open") {
            c.missed_alerts += 1;
            c.findings.push(format!("missed: incident {} opened with no open notification", i.id));
        }
        if i.state == "resolved" && recovery(i) && !kinds.contains("resolve") {
            c.missed_alerts += 1;
            c.findings.push(format!("missed: incident {} resolved with no resolve notification", i.id));
        }
    }

    let mut accepted: BTreeMap<u64, Vec<&Delivery>> = BTreeMap::new();
    for d in deliveries {
        let Some(id) = notification_id(d) else { continue };
        if !records.contains_key(&id) {
            continue;
        }
        c.deliveries += 1;
        if d.accepted {
            accepted.entry(id).or_default().push(d);
        } else {
            c.stale_rejected += 1;
        }
    }
    c.distinct_deliveries = accepted.len() as u64;

    for (id, n) in &records {
        if (n.kind == "open" || n.kind == "resolve") && !accepted.contains_key(id) {
            c.missed_alerts += 1;
            c.findings.push(format!(
                "missed: notification {id} ({} of incident {}) is {} and reached the sink {} time(s), none accepted",
                n.kind,
                n.incident_id,
                n.state,
                deliveries.iter().filter(|d| notification_id(d) == Some(*id)).count()
            ));
        }
    }

    for (id, ds) in &mut accepted {
        let n = records[id];
        let outcome: BTreeMap<&str, &str> =
            n.deliveries.iter().map(|d| (d.fencing_token.as_str(), d.outcome.as_str())).collect();
        ds.sort_by_key(|d| d.at_ms);
        for d in ds.iter() {
            match d.fence {
                Some(f) if outcome.contains_key(token(f).as_str()) => {}
                Some(f) => {
                    c.stale_term_accepted += 1;
                    c.findings.push(format!(
                        "stale term accepted: notification {id} sent under {}, which the cluster never committed as its claim (claims: {:?})",
                        token(f),
                        outcome.keys().collect::<Vec<_>>()
                    ));
                }
                None => {
                    c.stale_term_accepted += 1;
                    c.findings.push(format!("stale term accepted: notification {id} sent with no fencing token"));
                }
            }
        }
        for w in ds.windows(2) {
            let (before, after) = (w[0], w[1]);
            let later_claim = matches!((before.fence, after.fence), (Some(a), Some(b)) if b.2 > a.2);
            let unsettled = before
                .fence
                .and_then(|f| outcome.get(token(f).as_str()).copied())
                .is_some_and(|o| matches!(o, "interrupted" | "abandoned" | "failed"));
            if later_claim && unsettled {
                c.duplicates_after_crash += 1;
            } else {
                c.duplicates_unexplained += 1;
                c.findings.push(format!(
                    "duplicate: notification {id} accepted at {} under {:?} and again at {} under {:?}",
                    before.at_ms, before.fence, after.at_ms, after.fence
                ));
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use uptime_api::dto::DeliveryView;

    fn incident(id: u64, state: &str) -> IncidentView {
        IncidentView {
            id,
            monitor_id: Some(1),
            title: String::new(),
            cause: "down".into(),
            state: state.into(),
            severity: "critical".into(),
            assignee: None,
            opened_at: String::new(),
            acknowledged_at: None,
            resolved_at: None,
            opened_at_ms: 0,
            resolved_at_ms: None,
            timeline: vec![],
        }
    }

    fn record(id: u64, incident: u64, kind: &str, attempts: &[(&str, &str)]) -> NotificationView {
        NotificationView {
            id,
            incident_id: incident,
            channel: Some("sink".into()),
            kind: kind.into(),
            state: if attempts.iter().any(|a| a.1 == "sent") { "sent" } else { "claimed" }.into(),
            created_at: String::new(),
            next_attempt_at: None,
            attempts: attempts.len() as u32,
            deliveries: attempts
                .iter()
                .enumerate()
                .map(|(i, (t, o))| DeliveryView {
                    attempt: i as u32 + 1,
                    at: String::new(),
                    outcome: o.to_string(),
                    status: None,
                    error: String::new(),
                    fencing_token: t.to_string(),
                    took_ms: 0,
                })
                .collect(),
        }
    }

    fn got(id: u64, at_ms: u64, fence: (u64, u64, u64), accepted: bool) -> Delivery {
        Delivery {
            at_ms,
            path: "/hook".into(),
            idempotency_key: Some(id.to_string()),
            fence: Some(fence),
            accepted,
            headers: BTreeMap::new(),
            body: String::new(),
        }
    }

    #[test]
    fn a_clean_run_counts_nothing_wrong() {
        let incidents = [incident(1, "resolved")];
        let outbox = [record(10, 1, "open", &[("2-1-30", "sent")]), record(11, 1, "resolve", &[("2-1-40", "sent")])];
        let d = [got(10, 100, (2, 1, 30), true), got(11, 200, (2, 1, 40), true)];
        let c = alerts(&d, &incidents, &outbox, |_| true);
        assert_eq!((c.incidents, c.deliveries, c.distinct_deliveries), (1, 2, 2));
        assert_eq!(
            (c.missed_alerts, c.duplicates_unexplained, c.duplicates_after_crash, c.stale_term_accepted),
            (0, 0, 0, 0),
            "{:?}",
            c.findings
        );
    }

    #[test]
    fn a_missing_delivery_and_a_missing_record_are_missed() {
        let incidents = [incident(1, "resolved"), incident(2, "triggered")];
        // Incident 1's resolve was never recorded; incident 2's open was, but never arrived.
        let outbox = [record(10, 1, "open", &[("2-1-30", "sent")]), record(12, 2, "open", &[])];
        let d = [got(10, 100, (2, 1, 30), true)];
        let c = alerts(&d, &incidents, &outbox, |_| true);
        assert_eq!(c.missed_alerts, 2, "{:?}", c.findings);
        // Without recovery notices the resolve is not owed.
        assert_eq!(alerts(&d, &incidents, &outbox, |_| false).missed_alerts, 1);
        // A refused delivery is not a delivery.
        let refused = [got(10, 100, (2, 1, 30), true), got(12, 150, (1, 3, 20), false)];
        let c = alerts(&refused, &incidents, &outbox, |_| false);
        assert_eq!((c.missed_alerts, c.stale_rejected), (1, 1));
    }

    #[test]
    fn a_resend_after_an_interrupted_claim_is_explained_and_any_other_is_not() {
        let incidents = [incident(1, "triggered")];
        let outbox = [record(10, 1, "open", &[("2-1-30", "interrupted"), ("3-2-41", "sent")])];
        let crash = [got(10, 100, (2, 1, 30), true), got(10, 900, (3, 2, 41), true)];
        let c = alerts(&crash, &incidents, &outbox, |_| true);
        assert_eq!((c.duplicates_after_crash, c.duplicates_unexplained), (1, 0), "{:?}", c.findings);

        // The same claim sent twice.
        let outbox2 = [record(10, 1, "open", &[("3-2-41", "sent")])];
        let twice = [got(10, 100, (3, 2, 41), true), got(10, 110, (3, 2, 41), true)];
        let c = alerts(&twice, &incidents, &outbox2, |_| true);
        assert_eq!((c.duplicates_after_crash, c.duplicates_unexplained), (0, 1));

        // A second claim after the first had been recorded as sent.
        let outbox3 = [record(10, 1, "open", &[("2-1-30", "sent"), ("3-2-41", "sent")])];
        let c = alerts(&crash, &incidents, &outbox3, |_| true);
        assert_eq!((c.duplicates_after_crash, c.duplicates_unexplained), (0, 1));
    }

    #[test]
    fn a_send_under_a_claim_that_never_committed_is_a_stale_term_accepted() {
        let incidents = [incident(1, "triggered")];
        let outbox = [record(10, 1, "open", &[("3-2-41", "sent")])];
        let d = [got(10, 100, (2, 1, 39), true), got(10, 300, (3, 2, 41), true)];
        let c = alerts(&d, &incidents, &outbox, |_| true);
        assert_eq!(c.stale_term_accepted, 1, "{:?}", c.findings);
        assert_eq!(c.duplicates_unexplained, 1, "the uncommitted claim's send is no crash");
        let mut unfenced = got(10, 100, (0, 0, 0), true);
        unfenced.fence = None;
        assert_eq!(alerts(&[unfenced], &incidents, &outbox, |_| true).stale_term_accepted, 1);
        // Deliveries of incidents nobody watches are not counted.
        assert_eq!(alerts(&d, &[], &outbox, |_| true).deliveries, 0);
    }
}
