//! How far the Raft log may be purged: up to the last log id of the latest
//! snapshot that is durable and published, and no further.
//!
//! openraft 0.9 issues `PurgeLog` for a received snapshot as soon as it has
//! queued the install on the state-machine worker, while that worker is still
//! checking and fsyncing the file. A log purged in that window, followed by a
//! crash, leaves the old state and the old snapshot beside a log that no longer
//! reaches either: the node can never apply again. So the state machine raises
//! this floor each time it publishes a snapshot, and the log store clamps every
//! purge to it, finishing a deferred purge once the floor has caught up.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::typ::LogId;

/// Shared between a [`crate::StateMachineStore`] (which raises it) and a
/// [`crate::LogStore`] (which purges no further). Cheap to clone.
#[derive(Clone, Default)]
pub struct SnapshotFloor {
    inner: Arc<(Mutex<Option<LogId>>, Condvar)>,
}

impl SnapshotFloor {
    /// The last log id covered by a durable snapshot, if any.
    pub fn get(&self) -> Option<LogId> {
        *self.inner.0.lock().expect("snapshot floor poisoned")
    }

    /// Whether a durable snapshot covers every entry up to `index`.
    pub(crate) fn covers(&self, index: u64) -> bool {
        self.get().is_some_and(|f| f.index >= index)
    }

    /// Raises the floor to `to` (never lowers it) and wakes waiters.
    pub(crate) fn raise(&self, to: Option<LogId>) {
        let (lock, changed) = &*self.inner;
        let mut floor = lock.lock().expect("snapshot floor poisoned");
        if to > *floor {
            *floor = to;
            changed.notify_all();
        }
    }

    /// Waits up to `limit` for the floor to cover `index`; says whether it does.
    pub(crate) fn wait_to_cover(&self, index: u64, limit: Duration) -> bool {
        let (lock, changed) = &*self.inner;
        let floor = lock.lock().expect("snapshot floor poisoned");
        let (floor, _) = changed
            .wait_timeout_while(floor, limit, |f| !f.is_some_and(|f| f.index >= index))
            .expect("snapshot floor poisoned");
        floor.is_some_and(|f| f.index >= index)
    }
}
