//! jepsen-lite: a fault-injection harness for uptime-cluster (issue 12), and
//! the checkers for the histories it records. `run` ties the parts below
//! together; `scripts/jepsen.sh` drives it (docs/reliability.md).
//!
//! Layout:
//! - `net`: partitions on loopback with nftables, per node pair (node K on 127.0.0.K).
//! - `proxy`: the same partitions without root, by a TCP proxy on every peer link.
//! - `sink`: the fencing alert sink every run delivers to.
//! - `cluster`: real nodes from `scripts/dev-cluster.sh`, signals, clients.
//! - `schedule`: the seeded nemesis schedule.
//! - `targets`: the fleet of HTTP targets a run flips down, for every node or a minority.
//! - `check`: the alert checkers (missed, duplicates by cause, stale term accepted).
//! - `run`: one run end to end, its results JSON; `plot`: its SVG time line.
//! - `nemesis`: carries a schedule's steps out on a cluster, and undoes each.
//! - `workload`: concurrent monitor writes and linearizable reads, recorded as a history.
//! - `history`: what the harness records: [`Op`]s ([`Input`], [`Output`],
//!   call time, and a [`Completion`] that is a return or *unknown*), or the
//!   [`Event`] log they are folded from; JSON through serde.
//! - `model`: the sequential specification, [`Model`], and [`Register`], one
//!   key of the monitor map.
//! - `linearizability`: [`check`], Wing & Gong's search with Lowe's cache,
//!   per key, within a [`Budget`], giving a [`Verdict`].
//!
//! ```
//! use uptime_jepsen_lite::{check, History, Input, Op, Output, Verdict};
//!
//! let key = || "api-health".to_string();
//! let history = History::new(vec![
//!     Op::returned(1, 0, Input::Create { key: key(), value: 7 }, 10, Output::Ok),
//!     // Overlaps the create, so it may see the key absent or present.
//!     Op::returned(2, 5, Input::Read { key: key() }, 15, Output::Value(None)),
//!     // Starts after the create returned: must see it.
//!     Op::returned(2, 20, Input::Read { key: key() }, 30, Output::Value(None)),
//! ]);
//! let verdict = check(&history).unwrap();
//! let Verdict::NotLinearizable(violations) = &verdict else { panic!("{verdict}") };
//! assert_eq!(violations[0].key, "api-health");
//! println!("{verdict}"); // the longest linearizable prefix, and the read that could not be placed
//! ```
//!
//! # What a verdict proves
//!
//! [`Verdict::Linearizable`] means: there is one total order of the recorded
//! operations, each placed between its invocation and its return, in which a
//! map of registers gives every returned operation the output it returned.
//! [`Verdict::NotLinearizable`] means there is none, for the keys it names;
//! the check is exhaustive, so this is a proof about the *recorded* history
//! (given that the recorded times are true: a return time taken after the
//! answer arrived, an invocation time taken before the request left).
//!
//! It does not prove more than the history shows:
//! - Only operations the harness invoked and recorded are seen. A write
//!   nobody invoked (a bug that invents a monitor, a replay of an old log)
//!   is visible only through what later reads return.
//! - A linearizable history is evidence, not proof, that the cluster is
//!   linearizable: another schedule, or other faults, may break it.
//! - Operations the harness leaves out because they certainly failed
//!   (refused before being proposed) are assumed to have had no effect; if
//!   the API says "refused" for a write that was in fact proposed, the
//!   checker cannot tell, and may report a violation the API caused.
//! - It checks the model here: monitors as opaque values under a name. It
//!   does not check anything derived from them (digests, incidents).
//!
//! # Unknown outcomes
//!
//! An operation whose client timed out ([`Completion::Unknown`]) may have
//! taken effect at any point after its invocation, or never. The checker
//! treats its return as at +∞: it may be placed anywhere after its call, it
//! need not be placed at all, and it never orders later operations, not even
//! the same client's. An unknown read is dropped: it changed nothing and
//! returned nothing; so is an unknown update whose value no read saw, which
//! cannot change any other operation's output. Many other unknown writes on
//! one key (creates, deletes, updates that were read) make the search
//! expensive, each of them placeable at any later point or never, and a
//! violation on such a key is the costly case, since refuting it means
//! exhausting every order. That is what the [`Budget`] and
//! [`Verdict::Unknown`] are for.

pub mod check;
pub mod cluster;
mod history;
mod linearizability;
mod model;
pub mod nemesis;
pub mod net;
pub mod plot;
pub mod proxy;
pub mod run;
pub mod schedule;
pub mod sink;
pub mod targets;
pub mod workload;

pub use history::{ClientId, Completion, Event, History, Input, Key, Op, Output, Time, Value};
pub use linearizability::{
    check, check_model, check_with, Budget, Counterexample, Exhausted, Inconclusive, Outcome, Placed, Verdict,
    Violation,
};
pub use model::{Model, Register};

/// A history the checker cannot read. A history that is merely not
/// linearizable is a [`Verdict`], not an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operation's return is before its invocation: the clock went
    /// backwards, or the harness paired the wrong events.
    #[error("operation {index} returned at {ret}, before its invocation at {call}")]
    ReturnBeforeCall {
        /// Its position in the history.
        index: usize,
        /// Its invocation time.
        call: Time,
        /// Its return time.
        ret: Time,
    },
    /// Two invocations in an event log have the same id.
    #[error("event id {id} is invoked twice")]
    DuplicateInvoke {
        /// The id.
        id: u64,
    },
    /// A return or timeout in an event log names no earlier invocation.
    #[error("event id {id} completes without an invocation")]
    CompletionWithoutInvoke {
        /// The id.
        id: u64,
    },
    /// A second return or timeout for one invocation.
    #[error("event id {id} completes twice")]
    AlreadyCompleted {
        /// The id.
        id: u64,
    },
}
