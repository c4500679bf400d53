//! The linearizability checker: Wing & Gong's search, with Lowe's
//! memoisation (as in porcupine), per key of the monitor map.
//!
//! A history is linearizable if every operation can be given a point between
//! its invocation and its return such that, applied in the order of those
//! points, the model gives every operation the output it returned.
//!
//! [`check`] splits the history by key first. The map is a set of independent
//! registers, and linearizability is compositional (Herlihy & Wing's
//! locality): the whole history is linearizable iff each key's sub-history
//! is. That turns one search over n operations into many small ones.
//!
//! The search over one key ([`check_model`]) walks a list of call and return
//! entries in time order. At a call it tries to linearize that operation now
//! (the model accepts its output from the current state), lifts it out of the
//! list and starts again from the front; at a return whose call is still in
//! the list it backtracks, because that operation ran out of time. Lowe's
//! cache remembers each (set of linearized operations, model state) reached:
//! reaching one again cannot lead anywhere new, so that branch is pruned.
//! (Extended for unknown operations: see `Cache`.)
//!
//! Unknown outcomes: an operation whose client timed out has no return entry
//! (its return is at +∞). It may be linearized at any point after its call,
//! which the search tries like any other, and it need not be linearized at
//! all: the search succeeds once every operation that returned is placed.
//! Unknown reads cannot change the state, and unknown updates whose value no
//! read saw cannot matter, so [`check`] drops both before the search.
//!
//! Ties: an invocation and a return at the same time are taken as concurrent
//! (calls sort before returns), which can only accept more histories.

use std::collections::{hash_map, BTreeMap, HashMap, HashSet};
use std::fmt;
use std::hash::Hash;
use std::num::NonZeroU64;
use std::time::{Duration, Instant};

use crate::history::{History, Input, Key, Op, Output, Time, Value};
use crate::model::{Model, Register};
use crate::Error;

/// How much work a check may do before it gives up with
/// [`Verdict::Unknown`]. Linearizability checking is NP-complete; a history
/// with many concurrent or unknown operations on one key can take a very long
/// time, and a bounded "don't know" is more use than a hung harness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// Search steps (entries visited) allowed for each key. A key that needs
    /// more is reported inconclusive; the other keys are still checked.
    pub max_steps_per_key: NonZeroU64,
    /// Wall-clock time for the whole check; `None` for no limit. Keys not
    /// finished in time are reported inconclusive.
    pub time_limit: Option<Duration>,
}

impl Default for Budget {
    fn default() -> Self {
        Budget { max_steps_per_key: NonZeroU64::new(10_000_000).expect("non-zero"), time_limit: None }
    }
}

/// The answer for a whole history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every key's operations have a linearization.
    Linearizable,
    /// These keys' operations have none (in key order, at least one). Other
    /// keys may also have been inconclusive.
    NotLinearizable(Vec<Violation>),
    /// No violation was found, but these keys (at least one) could not be
    /// decided within the budget.
    Unknown(Vec<Inconclusive>),
}

impl Verdict {
    /// Whether the history was proven linearizable.
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }

    /// The violations found, if any.
    pub fn violations(&self) -> &[Violation] {
        match self {
            Verdict::NotLinearizable(violations) => violations,
            _ => &[],
        }
    }
}

/// One key whose operations have no linearization, with what the search got
/// furthest with, for a human to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The key.
    pub key: Key,
    /// How many of the key's operations were checked (unknown reads dropped).
    pub ops: usize,
    /// The longest prefix of a linearization the search found: operations in
    /// linearization order, each with the state it left.
    pub prefix: Vec<Placed>,
    /// An operation that returned before it could be placed after that
    /// prefix: from [`Violation::state`] the model rejects its output, or
    /// every way on from placing it had already been tried and failed.
    pub stuck: Op,
    /// The state after the prefix.
    pub state: Option<Value>,
}

/// An operation in a linearization, and the state it left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// The operation.
    pub op: Op,
    /// The key's state after it.
    pub after: Option<Value>,
}

/// A key the budget ran out on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inconclusive {
    /// The key.
    pub key: Key,
    /// How many of the key's operations there were to check.
    pub ops: usize,
    /// Which limit was hit.
    pub reason: Exhausted,
}

/// Which part of the [`Budget`] ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhausted {
    /// [`Budget::max_steps_per_key`] steps, without an answer.
    Steps {
        /// The limit.
        max_steps: u64,
    },
    /// [`Budget::time_limit`] passed.
    Deadline {
        /// The limit.
        time_limit: Duration,
    },
}

/// The answer for one model's operations ([`check_model`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<S> {
    /// The operations have a linearization.
    Linearizable,
    /// They have none.
    NotLinearizable(Counterexample<S>),
    /// The budget ran out first.
    Exhausted(Exhausted),
}

/// The furthest a failed search got, by index into the operations it was
/// given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counterexample<S> {
    /// The longest linearizable prefix found: (operation, state after it).
    pub prefix: Vec<(usize, S)>,
    /// The operation that returned before it could be placed after it.
    pub stuck: usize,
    /// The state after the prefix.
    pub state: S,
}

/// Checks a monitor-map history with the default [`Budget`].
///
/// Errors only if the history is malformed ([`History::validate`]); a history
/// that is not linearizable is a [`Verdict`], not an error.
pub fn check(history: &History) -> Result<Verdict, Error> {
    check_with(history, &Budget::default())
}

/// Checks a monitor-map history: each key's operations against a
/// [`Register`], within `budget`.
pub fn check_with(history: &History, budget: &Budget) -> Result<Verdict, Error> {
    history.validate()?;
    let mut by_key: BTreeMap<&str, Vec<Op>> = BTreeMap::new();
    for op in &history.ops {
        // An unknown read returned nothing and changed nothing: no constraint.
        if op.input.is_read() && op.ret().is_none() {
            continue;
        }
        by_key.entry(op.input.key()).or_default().push(op.clone());
    }
    for ops in by_key.values_mut() {
        drop_unread_unknown_updates(ops);
    }

    let deadline = budget.time_limit.map(|limit| Deadline { at: Instant::now() + limit, limit });
    let mut violations = Vec::new();
    let mut inconclusive = Vec::new();
    for (key, ops) in by_key {
        let outcome = if deadline.is_some_and(|d| d.passed()) {
            Outcome::Exhausted(Exhausted::Deadline { time_limit: budget.time_limit.unwrap_or_default() })
        } else {
            search(&Register, &ops, budget.max_steps_per_key.get(), deadline)
        };
        match outcome {
            Outcome::Linearizable => {}
            Outcome::NotLinearizable(counterexample) => {
                violations.push(Violation {
                    key: key.to_string(),
                    ops: ops.len(),
                    prefix: counterexample
                        .prefix
                        .into_iter()
                        .map(|(op, after)| Placed { op: ops[op].clone(), after })
                        .collect(),
                    stuck: ops[counterexample.stuck].clone(),
                    state: counterexample.state,
                });
            }
            Outcome::Exhausted(reason) => {
                inconclusive.push(Inconclusive { key: key.to_string(), ops: ops.len(), reason })
            }
        }
    }
    Ok(if !violations.is_empty() {
        Verdict::NotLinearizable(violations)
    } else if !inconclusive.is_empty() {
        Verdict::Unknown(inconclusive)
    } else {
        Verdict::Linearizable
    })
}

/// Drops the unknown updates whose value no returned read saw: with one
/// removed, a linearization stays a linearization. (If the key was absent the
/// update changed nothing. If present, the ops after it up to the next write
/// that replaces or removes the value include no read, which would have seen
/// its value; creates among them are refused either way.) Each of them would
/// otherwise multiply the search: it may be placed at any later point.
fn drop_unread_unknown_updates(ops: &mut Vec<Op>) {
    let read: HashSet<Value> = ops
        .iter()
        .filter_map(|op| match op.output() {
            Some(Output::Value(Some(value))) if op.input.is_read() => Some(*value),
            _ => None,
        })
        .collect();
    ops.retain(|op| match op.input {
        Input::Update { value, .. } => op.ret().is_some() || read.contains(&value),
        _ => true,
    });
}

/// Checks one set of operations against any [`Model`], as a single search
/// (no partitioning): the building block of [`check`].
pub fn check_model<M: Model>(
    model: &M,
    ops: &[Op<M::Input, M::Output>],
    budget: &Budget,
) -> Result<Outcome<M::State>, Error> {
    for (index, op) in ops.iter().enumerate() {
        if let Some(ret) = op.ret() {
            if ret < op.call {
                return Err(Error::ReturnBeforeCall { index, call: op.call, ret });
            }
        }
    }
    let deadline = budget.time_limit.map(|limit| Deadline { at: Instant::now() + limit, limit });
    Ok(search(model, ops, budget.max_steps_per_key.get(), deadline))
}

#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Instant,
    limit: Duration,
}

impl Deadline {
    fn passed(&self) -> bool {
        Instant::now() >= self.at
    }
}

/// Steps between looks at the clock; reading it every step would cost more
/// than the step.
const CLOCK_EVERY: u64 = 1 << 12;

/// Where the search is in trying the candidates of one configuration.
#[derive(Debug, Clone, Copy)]
enum Cursor {
    /// At a node of the list of returned operations' entries: a call is a
    /// candidate; the first return ends this phase.
    Returned(usize),
    /// At a node of the list of unknown operations' calls, tried after the
    /// returned ones: a candidate if called no later than `limit`, the return
    /// time of `blocked`, the first unplaced operation to return.
    Unknown { node: usize, limit: Option<Time>, blocked: Option<usize> },
}

/// The search over one key. Requires every return at or after its call.
///
/// Unknown operations are kept in a list of their own and tried only after
/// every returned candidate: a linearization that needs fewer of them is
/// found first, and then [`Cache`] prunes every configuration that differs
/// from one already explored only by having placed more of them.
fn search<M: Model>(
    model: &M,
    ops: &[Op<M::Input, M::Output>],
    max_steps: u64,
    deadline: Option<Deadline>,
) -> Outcome<M::State> {
    let mut remaining = ops.iter().filter(|op| op.ret().is_some()).count();
    if remaining == 0 {
        return Outcome::Linearizable;
    }
    let entries_of = |unknown: bool| {
        let items = ops.iter().enumerate().filter(|(_, op)| op.ret().is_none() == unknown);
        Entries::new(ops.len(), items.map(|(i, op)| (i, op.call, op.ret())))
    };
    let (mut returned, mut unknown) = (entries_of(false), entries_of(true));
    let mut linearized = Linearized::new(ops);
    let mut cache: Cache<M::State> = Cache::default();
    // The current partial linearization: each operation with the state
    // before it and the cursor it was chosen at. Invariant: exactly the
    // operations on the stack are set in `linearized` and lifted out of their
    // list.
    let mut stack: Vec<(usize, M::State, Cursor)> = Vec::new();
    let mut state = model.init();
    let mut best: Option<Counterexample<M::State>> = None;
    let mut cursor = Cursor::Returned(returned.first());
    let mut steps = 0u64;

    loop {
        steps += 1;
        if steps > max_steps {
            return Outcome::Exhausted(Exhausted::Steps { max_steps });
        }
        if steps.is_multiple_of(CLOCK_EVERY) {
            if let Some(deadline) = deadline.filter(Deadline::passed) {
                return Outcome::Exhausted(Exhausted::Deadline { time_limit: deadline.limit });
            }
        }

        let candidate = match cursor {
            Cursor::Returned(node) => match returned.get(node) {
                Some(Entry { op, call: true }) => Some(op),
                end => {
                    // The end of the list cannot be reached while an
                    // operation that returned is unplaced: its return entry
                    // comes first.
                    debug_assert!(end.is_some(), "reached the end with {remaining} returned operations unplaced");
                    let blocked = end.map(|entry| entry.op);
                    let limit = blocked.and_then(|op| ops[op].ret());
                    cursor = Cursor::Unknown { node: unknown.first(), limit, blocked };
                    continue;
                }
            },
            Cursor::Unknown { node, limit, .. } => {
                unknown.get(node).map(|entry| entry.op).filter(|&op| limit.is_none_or(|limit| ops[op].call <= limit))
            }
        };

        let Some(op) = candidate else {
            // Every candidate was tried, and `blocked` returned while its call
            // is still unplaced: this order is dead.
            let Cursor::Unknown { blocked, .. } = cursor else { unreachable!("only the unknown phase runs out") };
            let stuck = blocked
                .or_else(|| (0..ops.len()).find(|&op| ops[op].ret().is_some() && !linearized.get(op)))
                .unwrap_or(0);
            if best.as_ref().is_none_or(|best| stack.len() > best.prefix.len()) {
                best = Some(counterexample(&stack, &state, stuck));
            }
            let Some((op, before, at)) = stack.pop() else {
                return Outcome::NotLinearizable(best.expect("recorded just above"));
            };
            linearized.clear(op);
            if ops[op].ret().is_some() {
                remaining += 1;
                returned.unlift(op);
            } else {
                unknown.unlift(op);
            }
            state = before;
            cursor = advance(at, &returned, &unknown);
            continue;
        };

        if let Some(after) = model.step(&state, &ops[op].input, ops[op].output()) {
            linearized.set(op);
            if cache.insert(&linearized, &after) {
                stack.push((op, std::mem::replace(&mut state, after), cursor));
                if ops[op].ret().is_some() {
                    returned.lift(op);
                    remaining -= 1;
                    if remaining == 0 {
                        return Outcome::Linearizable;
                    }
                } else {
                    unknown.lift(op);
                }
                cursor = Cursor::Returned(returned.first());
                continue;
            }
            linearized.clear(op);
        }
        cursor = advance(cursor, &returned, &unknown);
    }
}

/// The next candidate after the one at `cursor`.
fn advance(cursor: Cursor, returned: &Entries, unknown: &Entries) -> Cursor {
    match cursor {
        Cursor::Returned(node) => Cursor::Returned(returned.next(node)),
        Cursor::Unknown { node, limit, blocked } => Cursor::Unknown { node: unknown.next(node), limit, blocked },
    }
}

fn counterexample<S: Clone>(stack: &[(usize, S, Cursor)], state: &S, stuck: usize) -> Counterexample<S> {
    // The stack holds the state *before* each operation; the state after one
    // is the state before the next, and after the last it is `state`.
    let afters = stack.iter().skip(1).map(|(_, before, _)| before).chain(std::iter::once(state));
    Counterexample {
        prefix: stack.iter().zip(afters).map(|((op, ..), after)| (*op, after.clone())).collect(),
        stuck,
        state: state.clone(),
    }
}

/// A call or return entry of an operation.
#[derive(Debug, Clone, Copy)]
struct Entry {
    op: usize,
    call: bool,
}

/// The doubly linked list of entries in time order, with lifted entries
/// unlinked in place so that they can be relinked in reverse order
/// (Knuth's dancing links). Node 0 is the head, node `len + 1` the tail,
/// entry `i` is node `i + 1`.
struct Entries {
    entries: Vec<Entry>,
    next: Vec<usize>,
    prev: Vec<usize>,
    call_node: Vec<usize>,
    /// `None` for an unknown outcome: its return is at +∞, past the end.
    return_node: Vec<Option<usize>>,
}

impl Entries {
    /// The entries of `items` (op, call, return if any), among `n` ops.
    fn new(n: usize, items: impl Iterator<Item = (usize, Time, Option<Time>)>) -> Self {
        // (time, calls before returns at equal times, op)
        let mut order: Vec<(Time, bool, usize)> = Vec::new();
        for (op, call, ret) in items {
            order.push((call, false, op));
            if let Some(ret) = ret {
                order.push((ret, true, op));
            }
        }
        order.sort_unstable();
        let len = order.len();
        let mut call_node = vec![0; n];
        let mut return_node = vec![None; n];
        let entries = order
            .iter()
            .enumerate()
            .map(|(i, &(_, is_return, op))| {
                if is_return {
                    return_node[op] = Some(i + 1);
                } else {
                    call_node[op] = i + 1;
                }
                Entry { op, call: !is_return }
            })
            .collect();
        Entries {
            entries,
            next: (1..=len + 1).chain(std::iter::once(len + 1)).collect(),
            prev: std::iter::once(0).chain(0..=len).collect(),
            call_node,
            return_node,
        }
    }

    fn first(&self) -> usize {
        self.next[0]
    }

    fn next(&self, node: usize) -> usize {
        self.next[node]
    }

    fn get(&self, node: usize) -> Option<Entry> {
        node.checked_sub(1).and_then(|i| self.entries.get(i)).copied()
    }

    fn lift(&mut self, op: usize) {
        self.unlink(self.call_node[op]);
        if let Some(ret) = self.return_node[op] {
            self.unlink(ret);
        }
    }

    /// Undoes the last [`Entries::lift`] not yet undone; lifts and unlifts
    /// must nest like brackets.
    fn unlift(&mut self, op: usize) {
        if let Some(ret) = self.return_node[op] {
            self.relink(ret);
        }
        self.relink(self.call_node[op]);
    }

    fn unlink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = next;
        self.prev[next] = prev;
    }

    fn relink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = node;
        self.prev[next] = node;
    }
}

/// The set of linearized operations, in two parts: those that returned, and
/// those whose outcome is unknown.
struct Linearized {
    returned: Bitset,
    unknown: Bitset,
    /// Per operation: whether its outcome is unknown, and its bit in that part.
    slot: Vec<(bool, usize)>,
}

impl Linearized {
    fn new<I, O>(ops: &[Op<I, O>]) -> Self {
        let (mut returned, mut unknown) = (0, 0);
        let slot: Vec<(bool, usize)> = ops
            .iter()
            .map(|op| {
                let count = if op.ret().is_some() { &mut returned } else { &mut unknown };
                *count += 1;
                (op.ret().is_none(), *count - 1)
            })
            .collect();
        Linearized { returned: Bitset::new(returned), unknown: Bitset::new(unknown), slot }
    }

    fn part(&mut self, op: usize) -> (&mut Bitset, usize) {
        let (unknown, bit) = self.slot[op];
        (if unknown { &mut self.unknown } else { &mut self.returned }, bit)
    }

    fn set(&mut self, op: usize) {
        let (part, bit) = self.part(op);
        part.set(bit);
    }

    fn clear(&mut self, op: usize) {
        let (part, bit) = self.part(op);
        part.clear(bit);
    }

    fn get(&self, op: usize) -> bool {
        let (unknown, bit) = self.slot[op];
        if unknown {
            self.unknown.get(bit)
        } else {
            self.returned.get(bit)
        }
    }
}

/// Lowe's cache of configurations already reached, with subsumption for
/// unknown operations.
///
/// A configuration (returned ops linearized R, unknown ops linearized U,
/// state s) can do anything that (R, U ∪ X, s) can, for unknown ops X: the
/// ops in X need never be linearized, and since they have no return entries
/// they never stop another op from being linearized next. So a configuration
/// is pruned if one with the same R and s and a *subset* of its U was
/// reached. (This is complete: the search explores every configuration it
/// does not prune, and a pruned one's every continuation is open to the one
/// that pruned it, which has strictly fewer unknown ops linearized.) Plain
/// equality, as in Lowe's cache, leaves the search exponential in the number
/// of unknown ops: each may be linearized or not at every later point.
///
/// Invariant: each list holds an antichain, no element a subset of another.
struct Cache<S> {
    seen: HashMap<(Bitset, S), Vec<Bitset>>,
}

impl<S> Default for Cache<S> {
    fn default() -> Self {
        Cache { seen: HashMap::new() }
    }
}

impl<S: Clone + Eq + Hash> Cache<S> {
    /// Records the configuration; false if it, or one that subsumes it, was
    /// reached before.
    fn insert(&mut self, linearized: &Linearized, state: &S) -> bool {
        let unknown = &linearized.unknown;
        match self.seen.entry((linearized.returned.clone(), state.clone())) {
            hash_map::Entry::Vacant(entry) => {
                entry.insert(vec![unknown.clone()]);
                true
            }
            hash_map::Entry::Occupied(mut entry) => {
                let antichain = entry.get_mut();
                if antichain.iter().any(|seen| seen.is_subset(unknown)) {
                    return false;
                }
                antichain.retain(|seen| !unknown.is_subset(seen));
                antichain.push(unknown.clone());
                true
            }
        }
    }
}

/// A set of operations, as a cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Bitset(Vec<u64>);

impl Bitset {
    fn new(len: usize) -> Self {
        Bitset(vec![0; len.div_ceil(64)])
    }

    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }

    fn get(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }

    fn is_subset(&self, other: &Bitset) -> bool {
        self.0.iter().zip(&other.0).all(|(a, b)| a & !b == 0)
    }
}

// === impl Display ===

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Linearizable => f.write_str("linearizable"),
            Verdict::NotLinearizable(violations) => {
                writeln!(f, "not linearizable: {} key(s) have no linearization", violations.len())?;
                for violation in violations {
                    write!(f, "\n{violation}")?;
                }
                Ok(())
            }
            Verdict::Unknown(keys) => {
                writeln!(f, "unknown: no violation found, but {} key(s) were not decided", keys.len())?;
                for key in keys {
                    writeln!(f, "  key {:?} ({} operations): {}", key.key, key.ops, key.reason)?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "key {:?}: its {} operations have no linearization.", self.key, self.ops)?;
        writeln!(
            f,
            "Longest linearizable prefix found ({} operations), each with the state it left:",
            self.prefix.len()
        )?;
        for (i, placed) in self.prefix.iter().enumerate() {
            writeln!(f, "  {:>3}. {}   => {}", i + 1, placed.op, Shown(placed.after))?;
        }
        writeln!(
            f,
            "Then this operation returned before it could be placed: from state {} the model either \
             rejects its output or every way on from there was already tried and failed:",
            Shown(self.state)
        )?;
        writeln!(f, "       {}", self.stuck)
    }
}

impl fmt::Display for Exhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exhausted::Steps { max_steps } => write!(f, "gave up after {max_steps} search steps"),
            Exhausted::Deadline { time_limit } => write!(f, "the time limit of {time_limit:?} passed"),
        }
    }
}

/// A key's state as a human reads it.
struct Shown(Option<Value>);

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(value) => write!(f, "{value}"),
            None => f.write_str("absent"),
        }
    }
}

#[cfg(test)]
mod tests;
