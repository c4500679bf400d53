//! The verdict rule: from what each node last reported about a monitor to the
//! monitor's state. A pure function, so it is table-tested and every node that
//! applies the same entries reaches the same verdict.
//!
//! Hysteresis is carried by the reports themselves: each node says how many of
//! its consecutive results had the same status (up, degraded or down: a run
//! counts one class), and a node counts toward DOWN only after `confirmations`
//! down results in a row, toward DEGRADED after as many failing ones (degraded
//! or down, in any mix: `failing_run`), toward UP only after `recovery_confirmations` ok results in a row. A node in between
//! votes for neither, and the state stays as it was. This keeps the rule
//! independent of how the leader batches digests into entries.

use serde::{Deserialize, Serialize};

/// How many fresh reporters must agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QuorumRule {
    /// More than half of the fresh reporters.
    Majority,
    /// One is enough.
    Any,
    /// Every fresh reporter.
    All,
    /// At least N fresh reporters.
    Count(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum MonitorState {
    Up,
    Down,
    Degraded,
    /// No fresh reporter (new, or every node silent or unable to check).
    Unknown,
    Maintenance,
    /// Paused by an operator: not checked, not alerted. Appended last, so
    /// older records decode unchanged.
    Paused,
}

impl MonitorState {
    pub fn as_str(self) -> &'static str {
        match self {
            MonitorState::Up => "up",
            MonitorState::Down => "down",
            MonitorState::Degraded => "degraded",
            MonitorState::Unknown => "unknown",
            MonitorState::Maintenance => "maintenance",
            MonitorState::Paused => "paused",
        }
    }
}

/// What one check found, as a node reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckStatus {
    Up,
    Degraded,
    Down,
    /// The node could not run the check (no permission for ICMP, out of file
    /// descriptors, a source address it does not have): it knows nothing about
    /// the target and does not vote. Appended last, so older records decode.
    NotChecked,
}

impl CheckStatus {
    fn failing(self) -> bool {
        matches!(self, CheckStatus::Degraded | CheckStatus::Down)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Up => "up",
            CheckStatus::Degraded => "degraded",
            CheckStatus::Down => "down",
            CheckStatus::NotChecked => "not_checked",
        }
    }
}

/// One node's latest report on one monitor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    pub status: CheckStatus,
    /// Consecutive results with this same `status`, ≥ 1: a degraded result
    /// ends a run of downs and starts its own.
    pub run: u32,
    /// Consecutive failing results, degraded or down in any mix.
    pub failing_run: u32,
    /// State time (leader time) of the report.
    pub at_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictPolicy {
    pub quorum: QuorumRule,
    /// Failing results in a row before a node counts toward DOWN.
    pub confirmations: u32,
    /// Ok results in a row before a node counts toward UP.
    pub recovery_confirmations: u32,
    /// A report older than this does not vote (3 check intervals).
    pub stale_after_ms: u64,
}

impl QuorumRule {
    /// Votes needed among `fresh` reporters; `None` when it cannot be reached.
    fn needed(self, fresh: usize) -> Option<usize> {
        let need = match self {
            QuorumRule::Majority => fresh / 2 + 1,
            QuorumRule::Any => 1,
            QuorumRule::All => fresh,
            QuorumRule::Count(n) => n as usize,
        };
        (need >= 1 && need <= fresh).then_some(need)
    }
}

/// The next state of a monitor.
pub fn evaluate(
    current: MonitorState,
    reports: &[NodeReport],
    now_ms: u64,
    policy: &VerdictPolicy,
    in_maintenance: bool,
) -> MonitorState {
    if in_maintenance {
        return MonitorState::Maintenance;
    }
    // A vote is a fresh report of a check the node ran.
    let fresh: Vec<&NodeReport> = reports
        .iter()
        .filter(|r| r.status != CheckStatus::NotChecked && now_ms.saturating_sub(r.at_ms) <= policy.stale_after_ms)
        .collect();
    let Some(need) = policy.quorum.needed(fresh.len()) else {
        return MonitorState::Unknown;
    };
    let down = fresh.iter().filter(|r| r.status == CheckStatus::Down && r.run >= policy.confirmations).count();
    let failing = fresh.iter().filter(|r| r.status.failing() && r.failing_run >= policy.confirmations).count();
    let up = fresh.iter().filter(|r| r.status == CheckStatus::Up && r.run >= policy.recovery_confirmations).count();
    if down >= need {
        MonitorState::Down
    } else if failing >= need {
        MonitorState::Degraded
    } else if up >= need {
        MonitorState::Up
    } else if matches!(current, MonitorState::Unknown | MonitorState::Maintenance | MonitorState::Paused) {
        // Nothing confirmed yet and no earlier verdict to keep: say what the
        // quorum sees unconfirmed, once any side reaches it.
        let raw_up = fresh.iter().filter(|r| r.status == CheckStatus::Up).count();
        if raw_up >= need {
            MonitorState::Up
        } else {
            MonitorState::Unknown
        }
    } else {
        current
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CheckStatus::{Degraded as G, Down as D, NotChecked as N, Up as U};
    use MonitorState as S;

    fn policy(quorum: QuorumRule) -> VerdictPolicy {
        VerdictPolicy { quorum, confirmations: 2, recovery_confirmations: 1, stale_after_ms: 90_000 }
    }

    fn r(status: CheckStatus, run: u32) -> NodeReport {
        NodeReport { status, run, failing_run: run, at_ms: 1_000_000 }
    }

    /// A failing report whose run of its own status is 1 after `failing` failures in a row.
    fn flip(status: CheckStatus, failing: u32) -> NodeReport {
        NodeReport { status, run: 1, failing_run: failing, at_ms: 1_000_000 }
    }

    #[test]
    fn table() {
        use QuorumRule::*;
        let now = 1_000_000;
        #[rustfmt::skip]
        let cases: Vec<(&str, QuorumRule, MonitorState, Vec<NodeReport>, MonitorState)> = vec![
            ("majority down, confirmed",       Majority, S::Up, vec![r(D, 2), r(D, 3), r(U, 5)], S::Down),
            ("majority down, not yet confirmed", Majority, S::Up, vec![r(D, 1), r(D, 1), r(U, 5)], S::Up),
            ("minority down stays up",         Majority, S::Up, vec![r(D, 9), r(U, 4), r(U, 4)], S::Up),
            ("minority down from unknown",     Majority, S::Unknown, vec![r(D, 9), r(U, 1), r(U, 1)], S::Up),
            ("down and degraded = degraded",   Majority, S::Up, vec![r(D, 2), r(G, 2), r(U, 1)], S::Degraded),
            ("recovery needs a quorum",        Majority, S::Down, vec![r(U, 1), r(D, 5), r(D, 5)], S::Down),
            ("recovered",                      Majority, S::Down, vec![r(U, 1), r(U, 1), r(D, 5)], S::Up),
            ("between: keep state",            Majority, S::Down, vec![r(U, 1), r(D, 1), r(G, 1)], S::Down),
            ("any: one is enough",             Any,      S::Up, vec![r(D, 2), r(U, 7), r(U, 7)], S::Down),
            ("all: one up holds it up",        All,      S::Up, vec![r(D, 2), r(D, 2), r(U, 1)], S::Up),
            ("all: all down",                  All,      S::Up, vec![r(D, 2), r(D, 2), r(D, 2)], S::Down),
            ("count 2 of 3",                   Count(2), S::Up, vec![r(D, 2), r(D, 2), r(U, 1)], S::Down),
            ("count beyond reporters",         Count(4), S::Up, vec![r(D, 2), r(D, 2), r(D, 2)], S::Unknown),
            ("no reporters",                   Majority, S::Up, vec![], S::Unknown),
            ("first report up",                Majority, S::Unknown, vec![r(U, 1)], S::Up),
            ("429/503 flapping is degraded",  Majority, S::Up, vec![flip(D, 6), flip(G, 7), r(U, 1)], S::Degraded),
            ("one 503 after a 429 is no down", Majority, S::Up, vec![flip(D, 2), flip(D, 2), r(U, 1)], S::Degraded),
            ("not checked does not vote",      Majority, S::Up, vec![r(N, 9), r(N, 9), r(D, 2)], S::Down),
            ("nobody could check",             Majority, S::Up, vec![r(N, 9), r(N, 9), r(N, 9)], S::Unknown),
            ("not checked is not up",          Majority, S::Unknown, vec![r(N, 9), r(N, 9), r(D, 1)], S::Unknown),
            ("after a pause, first report up", Majority, S::Paused, vec![r(U, 1)], S::Up),
        ];
        for (name, rule, current, reports, want) in cases {
            assert_eq!(evaluate(current, &reports, now, &policy(rule), false), want, "{name}");
        }
    }

    #[test]
    fn stale_reports_do_not_vote() {
        let p = policy(QuorumRule::Majority);
        let old = NodeReport { status: D, run: 5, failing_run: 5, at_ms: 0 };
        let fresh = NodeReport { status: U, run: 1, failing_run: 0, at_ms: 100_000 };
        // Two stale downs and one fresh up: the fresh reporter alone is the majority.
        assert_eq!(evaluate(S::Down, &[old, old, fresh], 100_000, &p, false), S::Up);
        // Nothing fresh at all.
        assert_eq!(evaluate(S::Up, &[old], 100_000, &p, false), S::Unknown);
    }

    #[test]
    fn maintenance_wins() {
        let p = policy(QuorumRule::Majority);
        assert_eq!(evaluate(S::Down, &[r(D, 9)], 1_000_000, &p, true), S::Maintenance);
        // After a window, a confirmed quorum decides at once.
        assert_eq!(evaluate(S::Maintenance, &[r(D, 2)], 1_000_000, &p, false), S::Down);
    }
}
