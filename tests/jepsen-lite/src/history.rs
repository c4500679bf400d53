//! What the harness records: one [`Op`] per client operation on the monitor
//! map, with its invocation time and either its return or the fact that its
//! outcome is unknown.
//!
//! The harness can record either form: a list of [`Op`]s, or the [`Event`]s as
//! they happen (invocation first, then a return or a timeout), folded into a
//! [`History`] by [`History::from_events`]. Both serialise with serde; JSON is
//! the format the harness writes and a human reads.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Error;

/// A client (process) id. Only for reading a history: the checker never
/// orders a client's operations by id, so a client that reuses its id after a
/// timeout constrains nothing.
pub type ClientId = u64;

/// A point in time: nanoseconds on the harness's monotonic clock, or any
/// counter that only moves forward. Only the order of times matters.
pub type Time = u64;

/// A monitor's name: the key of the replicated map.
pub type Key = String;

/// What a write stores under a key. Opaque to the checker; the harness makes
/// every written value unique so that a read names the write it saw.
pub type Value = u64;

/// An operation as the client asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case")]
pub enum Input {
    /// Add `key`; refused with [`Output::Exists`] if it is there.
    Create {
        /// The monitor to add.
        key: Key,
        /// What it holds afterwards.
        value: Value,
    },
    /// Replace `key`'s value; [`Output::NotFound`] if it is absent.
    Update {
        /// The monitor to change.
        key: Key,
        /// What it holds afterwards.
        value: Value,
    },
    /// Remove `key`; [`Output::NotFound`] if it is absent.
    Delete {
        /// The monitor to remove.
        key: Key,
    },
    /// Look `key` up.
    Read {
        /// The monitor to read.
        key: Key,
    },
}

impl Input {
    /// The key this operation touches; operations on different keys never
    /// constrain each other.
    pub fn key(&self) -> &str {
        match self {
            Input::Create { key, .. } | Input::Update { key, .. } | Input::Delete { key } | Input::Read { key } => key,
        }
    }

    /// Whether the operation cannot change the map, whatever it returns.
    pub fn is_read(&self) -> bool {
        matches!(self, Input::Read { .. })
    }
}

/// What the cluster answered.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Output {
    /// The write took effect.
    Ok,
    /// A create was refused: the key was there.
    Exists,
    /// An update or delete was refused: the key was absent.
    NotFound,
    /// A read's answer; `None` is "absent".
    Value(Option<Value>),
}

/// How an operation ended, as far as its client knows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Completion<O = Output> {
    /// The client got an answer at `at`.
    Returned {
        /// When the answer arrived; not before the invocation.
        at: Time,
        /// The answer.
        output: O,
    },
    /// The client gave up (a timeout after the request may have been
    /// proposed; Jepsen's `:info`). The operation may have taken effect at any
    /// time after its invocation, or never.
    Unknown,
}

/// One client operation: what was asked, when, and how it ended.
///
/// Generic so that [`crate::check_model`] can check models other than the
/// monitor map; the defaults are the map's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Op<I = Input, O = Output> {
    /// Who issued it; for reading the history only.
    pub client: ClientId,
    /// When the client sent it; the operation took effect no earlier.
    pub call: Time,
    /// What was asked.
    pub input: I,
    /// The answer, if one came; the operation took effect no later than it.
    pub completion: Completion<O>,
}

impl<I, O> Op<I, O> {
    /// An operation that returned `output` at `ret`.
    pub fn returned(client: ClientId, call: Time, input: I, ret: Time, output: O) -> Self {
        Op { client, call, input, completion: Completion::Returned { at: ret, output } }
    }

    /// An operation whose client timed out.
    pub fn unknown(client: ClientId, call: Time, input: I) -> Self {
        Op { client, call, input, completion: Completion::Unknown }
    }

    /// The return time, or `None` for an unknown outcome (a return at +∞).
    pub fn ret(&self) -> Option<Time> {
        match &self.completion {
            Completion::Returned { at, .. } => Some(*at),
            Completion::Unknown => None,
        }
    }

    /// The output, or `None` for an unknown outcome.
    pub fn output(&self) -> Option<&O> {
        match &self.completion {
            Completion::Returned { output, .. } => Some(output),
            Completion::Unknown => None,
        }
    }
}

/// A recorded history of operations on the monitor map, in no required order.
///
/// Failed operations that certainly did not take effect (refused before being
/// proposed) are left out by the harness: they neither read nor wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// The operations; ok and unknown alike.
    pub ops: Vec<Op>,
}

impl History {
    /// A history of these operations.
    pub fn new(ops: Vec<Op>) -> Self {
        History { ops }
    }

    /// Folds an event log into operations, in invocation order. An invocation
    /// with no return (the harness stopped first) is an unknown outcome, like
    /// an explicit [`Event::Unknown`].
    pub fn from_events(events: impl IntoIterator<Item = Event>) -> Result<History, Error> {
        let mut ops: Vec<Op> = Vec::new();
        // Op index per event id, and whether that op has completed.
        let mut by_id: HashMap<u64, (usize, bool)> = HashMap::new();
        for event in events {
            match event {
                Event::Invoke { id, client, at, input } => {
                    if by_id.insert(id, (ops.len(), false)).is_some() {
                        return Err(Error::DuplicateInvoke { id });
                    }
                    ops.push(Op::unknown(client, at, input));
                }
                Event::Return { id, at, output } => {
                    let op = complete(&mut by_id, id)?;
                    ops[op].completion = Completion::Returned { at, output };
                }
                Event::Unknown { id } => {
                    complete(&mut by_id, id)?;
                }
            }
        }
        Ok(History { ops })
    }

    /// Checks what the checker relies on: every return is at or after its
    /// invocation.
    pub fn validate(&self) -> Result<(), Error> {
        for (index, op) in self.ops.iter().enumerate() {
            if let Some(ret) = op.ret() {
                if ret < op.call {
                    return Err(Error::ReturnBeforeCall { index, call: op.call, ret });
                }
            }
        }
        Ok(())
    }
}

fn complete(by_id: &mut HashMap<u64, (usize, bool)>, id: u64) -> Result<usize, Error> {
    match by_id.get_mut(&id) {
        None => Err(Error::CompletionWithoutInvoke { id }),
        Some((_, true)) => Err(Error::AlreadyCompleted { id }),
        Some((op, done)) => {
            *done = true;
            Ok(*op)
        }
    }
}

/// One line of the harness's event log, written as it happens so that a
/// harness that dies mid-run still leaves every invocation on record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A client sent a request.
    Invoke {
        /// Pairs this invocation with its completion; unique in the log.
        id: u64,
        /// Who sent it.
        client: ClientId,
        /// When.
        at: Time,
        /// What it asked.
        input: Input,
    },
    /// The request's answer arrived.
    Return {
        /// The invocation this answers.
        id: u64,
        /// When.
        at: Time,
        /// The answer.
        output: Output,
    },
    /// The client gave up on the request; its outcome is unknown.
    Unknown {
        /// The invocation given up on.
        id: u64,
    },
}

// === impl Display ===

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::Create { key, value } => write!(f, "create {key:?} = {value}"),
            Input::Update { key, value } => write!(f, "update {key:?} = {value}"),
            Input::Delete { key } => write!(f, "delete {key:?}"),
            Input::Read { key } => write!(f, "read {key:?}"),
        }
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Output::Ok => f.write_str("ok"),
            Output::Exists => f.write_str("exists"),
            Output::NotFound => f.write_str("not found"),
            Output::Value(Some(value)) => write!(f, "{value}"),
            Output::Value(None) => f.write_str("absent"),
        }
    }
}

impl<I: fmt::Display, O: fmt::Display> fmt::Display for Op<I, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.completion {
            Completion::Returned { at, output } => {
                write!(f, "client {} [{}, {}] {} -> {}", self.client, self.call, at, self.input, output)
            }
            Completion::Unknown => write!(f, "client {} [{}, ?] {} -> unknown", self.client, self.call, self.input),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(key: &str) -> Input {
        Input::Read { key: key.into() }
    }

    #[test]
    fn events_fold_into_ops_and_a_missing_return_is_unknown() {
        let events = vec![
            Event::Invoke { id: 1, client: 7, at: 10, input: Input::Create { key: "a".into(), value: 1 } },
            Event::Invoke { id: 2, client: 8, at: 11, input: read("a") },
            Event::Return { id: 1, at: 20, output: Output::Ok },
            Event::Invoke { id: 3, client: 9, at: 12, input: read("a") },
            Event::Unknown { id: 3 },
        ];
        let history = History::from_events(events).unwrap();
        assert_eq!(
            history.ops,
            vec![
                Op::returned(7, 10, Input::Create { key: "a".into(), value: 1 }, 20, Output::Ok),
                Op::unknown(8, 11, read("a")),
                Op::unknown(9, 12, read("a")),
            ]
        );
    }

    #[test]
    fn malformed_event_logs_are_errors() {
        let invoke = |id| Event::Invoke { id, client: 1, at: 0, input: read("a") };
        let ret = |id| Event::Return { id, at: 1, output: Output::Value(None) };
        assert!(matches!(History::from_events([invoke(1), invoke(1)]), Err(Error::DuplicateInvoke { id: 1 })));
        assert!(matches!(History::from_events([ret(2)]), Err(Error::CompletionWithoutInvoke { id: 2 })));
        assert!(matches!(
            History::from_events([invoke(1), ret(1), Event::Unknown { id: 1 }]),
            Err(Error::AlreadyCompleted { id: 1 })
        ));
    }

    #[test]
    fn validate_rejects_a_return_before_its_call() {
        let history = History::new(vec![Op::returned(1, 5, read("a"), 4, Output::Value(None))]);
        assert!(matches!(history.validate(), Err(Error::ReturnBeforeCall { index: 0, call: 5, ret: 4 })));
    }

    #[test]
    fn json_round_trip() {
        let history = History::new(vec![
            Op::returned(1, 0, Input::Create { key: "a".into(), value: 1 }, 5, Output::Ok),
            Op::returned(2, 1, Input::Update { key: "a".into(), value: 2 }, 6, Output::NotFound),
            Op::returned(3, 2, read("a"), 7, Output::Value(Some(1))),
            Op::returned(3, 8, read("b"), 9, Output::Value(None)),
            Op::unknown(4, 3, Input::Delete { key: "a".into() }),
        ]);
        let json = serde_json::to_string(&history).unwrap();
        assert_eq!(serde_json::from_str::<History>(&json).unwrap(), history);

        // The shape the harness writes, pinned so that old histories stay readable.
        let op: Op = serde_json::from_str(
            r#"{"client":3,"call":2,"input":{"f":"read","key":"a"},
                "completion":{"returned":{"at":7,"output":{"value":1}}}}"#,
        )
        .unwrap();
        assert_eq!(op, Op::returned(3, 2, read("a"), 7, Output::Value(Some(1))));
        let op: Op =
            serde_json::from_str(r#"{"client":4,"call":3,"input":{"f":"delete","key":"a"},"completion":"unknown"}"#)
                .unwrap();
        assert_eq!(op, Op::unknown(4, 3, Input::Delete { key: "a".into() }));
    }
}
