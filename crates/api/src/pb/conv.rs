//! Conversions between the JSON shapes (`dto`) and the generated protobuf types.

use crate::dto::{ClusterStatus, Member, MonitorView};
use crate::pb;

impl From<Member> for pb::Member {
    fn from(m: Member) -> Self {
        pb::Member { id: m.id, addr: m.addr, api_addr: m.api_addr, voter: m.voter, healthy: m.healthy }
    }
}

impl From<ClusterStatus> for pb::ClusterStatus {
    fn from(s: ClusterStatus) -> Self {
        pb::ClusterStatus {
            node_id: s.node_id,
            leader: s.leader,
            term: s.term,
            members: s.members.into_iter().map(Into::into).collect(),
            last_applied: s.last_applied,
            last_log_index: s.last_log_index,
            snapshot_index: s.snapshot_index,
            purged_index: s.purged_index,
        }
    }
}

impl From<MonitorView> for pb::Monitor {
    fn from(m: MonitorView) -> Self {
        pb::Monitor {
            id: m.id,
            name: m.name,
            kind: m.kind,
            target: m.target,
            interval_s: m.interval_s,
            timeout_s: m.timeout_s,
            enabled: m.enabled,
            public: m.public,
            tags: m.tags,
            state: m.state,
            created_at_ms: m.created_at_ms,
            updated_at_ms: m.updated_at_ms,
        }
    }
}
