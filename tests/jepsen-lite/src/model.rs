//! The sequential specification operations are checked against: a [`Model`]
//! trait, and [`Register`], one key of the monitor map.

use std::fmt::Debug;
use std::hash::Hash;

use crate::history::{Input, Output, Value};

/// A sequential specification: a state, and which outputs each input may give
/// from each state.
///
/// The checker assumes a deterministic model for operations whose output was
/// never seen: `step(state, input, None)` is *the* state the operation leaves,
/// whatever it returned.
pub trait Model {
    /// What a client asks.
    type Input;
    /// What a client is told.
    type Output;
    /// The specification's state. Hashed into the search's cache, so keep it
    /// small.
    type State: Clone + Eq + Hash + Debug;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// The state after `input` is applied to `state` and answers `output`, or
    /// `None` if `input` cannot answer `output` from `state`. `output` is
    /// `None` for an operation whose answer was never seen.
    fn step(&self, state: &Self::State, input: &Self::Input, output: Option<&Self::Output>) -> Option<Self::State>;
}

/// One key of the monitor map: absent, or holding a value. Ignores the key in
/// [`Input`]; the checker hands it one key's operations at a time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Register;

impl Model for Register {
    type Input = Input;
    type Output = Output;
    type State = Option<Value>;

    fn init(&self) -> Option<Value> {
        None
    }

    fn step(&self, state: &Option<Value>, input: &Input, output: Option<&Output>) -> Option<Option<Value>> {
        let (next, answer) = match (input, state) {
            (Input::Create { value, .. }, None) => (Some(*value), Output::Ok),
            (Input::Create { .. }, Some(_)) => (*state, Output::Exists),
            (Input::Update { value, .. }, Some(_)) => (Some(*value), Output::Ok),
            (Input::Update { .. }, None) => (None, Output::NotFound),
            (Input::Delete { .. }, Some(_)) => (None, Output::Ok),
            (Input::Delete { .. }, None) => (None, Output::NotFound),
            (Input::Read { .. }, _) => (*state, Output::Value(*state)),
        };
        match output {
            Some(seen) if *seen != answer => None,
            _ => Some(next),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_table() {
        let key = || "k".to_string();
        let create = Input::Create { key: key(), value: 1 };
        let update = Input::Update { key: key(), value: 2 };
        let delete = Input::Delete { key: key() };
        let read = Input::Read { key: key() };
        /// The state, an input, its output (`None`: unseen), and the state
        /// after (`None`: that output is impossible).
        type Row<'a> = (Option<Value>, &'a Input, Option<Output>, Option<Option<Value>>);
        let table: &[Row] = &[
            (None, &create, Some(Output::Ok), Some(Some(1))),
            (None, &create, Some(Output::Exists), None),
            (Some(5), &create, Some(Output::Exists), Some(Some(5))),
            (Some(5), &create, Some(Output::Ok), None),
            (Some(5), &create, None, Some(Some(5))),
            (None, &create, None, Some(Some(1))),
            (Some(5), &update, Some(Output::Ok), Some(Some(2))),
            (None, &update, Some(Output::NotFound), Some(None)),
            (None, &update, Some(Output::Ok), None),
            (Some(5), &update, None, Some(Some(2))),
            (Some(5), &delete, Some(Output::Ok), Some(None)),
            (None, &delete, Some(Output::NotFound), Some(None)),
            (None, &delete, Some(Output::Ok), None),
            (Some(5), &read, Some(Output::Value(Some(5))), Some(Some(5))),
            (Some(5), &read, Some(Output::Value(Some(4))), None),
            (Some(5), &read, Some(Output::Value(None)), None),
            (None, &read, Some(Output::Value(None)), Some(None)),
            (None, &read, Some(Output::Ok), None),
        ];
        for (state, input, output, expected) in table {
            assert_eq!(Register.step(state, input, output.as_ref()), *expected, "{state:?} {input} {output:?}");
        }
    }
}
