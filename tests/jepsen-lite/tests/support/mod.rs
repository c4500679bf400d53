//! Shared by the integration tests: a small text form for hand-written
//! histories, and a simulated cluster that produces correct concurrent
//! histories together with the truth behind them.

#![allow(dead_code)] // each test crate uses a different part

use std::collections::HashMap;

use uptime_jepsen_lite::{Completion, History, Input, Op, Output, Time, Value};

/// Parses one operation a line: `client call ret op key [value] [-> output]`,
/// with `?` for the return time of an unknown outcome (and no output), and
/// outputs `ok`, `exists`, `notfound`, `absent` or a number (a read's value).
/// Blank lines and `#` comments are skipped.
///
/// ```text
/// 1 0 10 create a 1 -> ok
/// 2 5 15 read a -> absent
/// 3 6 ?  update a 2
/// ```
pub fn parse(text: &str) -> History {
    let ops = text
        .lines()
        .map(|line| line.split('#').next().unwrap().trim())
        .filter(|line| !line.is_empty())
        .map(|line| parse_op(line).unwrap_or_else(|| panic!("cannot parse {line:?}")))
        .collect();
    History::new(ops)
}

fn parse_op(line: &str) -> Option<Op> {
    let (op, output) = match line.split_once("->") {
        Some((op, output)) => (op, Some(output.trim())),
        None => (line, None),
    };
    let words: Vec<&str> = op.split_whitespace().collect();
    let (client, call, ret) = (words.first()?.parse().ok()?, words.get(1)?.parse().ok()?, *words.get(2)?);
    let key = words.get(4)?.to_string();
    let value = || words.get(5).and_then(|v| v.parse().ok());
    let input = match *words.get(3)? {
        "create" => Input::Create { key, value: value()? },
        "update" => Input::Update { key, value: value()? },
        "delete" => Input::Delete { key },
        "read" => Input::Read { key },
        _ => return None,
    };
    if ret == "?" {
        return output.is_none().then(|| Op::unknown(client, call, input));
    }
    let output = match output? {
        "ok" => Output::Ok,
        "exists" => Output::Exists,
        "notfound" => Output::NotFound,
        "absent" => Output::Value(None),
        value => Output::Value(Some(value.parse().ok()?)),
    };
    Some(Op::returned(client, call, input, ret.parse().ok()?, output))
}

/// What a client does next in [`Sim`].
#[derive(Debug, Clone, Copy)]
pub struct Action {
    /// Which client moves (modulo the number of clients).
    pub client: usize,
    /// The key of a new operation (modulo the number of keys).
    pub key: usize,
    /// The kind of a new operation.
    pub kind: Kind,
    /// Give up on the client's pending operation instead of moving it on.
    pub time_out: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Create,
    Update,
    Delete,
    Read,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Idle,
    /// Invoked, not yet applied.
    Invoked(usize),
    /// Applied to the map, answer not yet delivered.
    Applied(usize, usize),
}

/// A correct map served to concurrent clients. Each operation moves in three
/// steps, one per [`Action`] of its client: invocation, taking effect on the
/// map (its linearization point), and return. Steps of different clients
/// interleave, so windows overlap, and each window holds the operation's true
/// point. A timeout before the effect is an unknown operation that never took
/// effect; after it, one that did.
pub struct Sim {
    keys: usize,
    phases: Vec<Phase>,
    map: HashMap<String, Value>,
    now: Time,
    next_value: Value,
    ops: Vec<Op>,
    outputs: Vec<Output>,
    /// When each operation took effect, if it did.
    pub points: Vec<Option<Time>>,
}

impl Sim {
    pub fn new(clients: usize, keys: usize) -> Self {
        Sim {
            keys,
            phases: vec![Phase::Idle; clients],
            map: HashMap::new(),
            now: 0,
            next_value: 1,
            ops: Vec::new(),
            outputs: Vec::new(),
            points: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn step(&mut self, action: Action) {
        self.now += 1;
        let client = action.client % self.phases.len();
        self.phases[client] = match self.phases[client] {
            Phase::Idle => {
                let key = format!("k{}", action.key % self.keys);
                let value = self.next_value;
                self.next_value += 1;
                let input = match action.kind {
                    Kind::Create => Input::Create { key, value },
                    Kind::Update => Input::Update { key, value },
                    Kind::Delete => Input::Delete { key },
                    Kind::Read => Input::Read { key },
                };
                // The same client id after a timeout, on purpose: the checker
                // must not order a timed-out operation before the next one.
                self.ops.push(Op::unknown(client as u64, self.now, input));
                self.points.push(None);
                Phase::Invoked(self.ops.len() - 1)
            }
            Phase::Invoked(_) if action.time_out => Phase::Idle,
            Phase::Invoked(op) => {
                let output = apply(&mut self.map, &self.ops[op].input);
                self.points[op] = Some(self.now);
                self.outputs.push(output);
                Phase::Applied(op, self.outputs.len() - 1)
            }
            Phase::Applied(..) if action.time_out => Phase::Idle,
            Phase::Applied(op, output) => {
                self.ops[op].completion = Completion::Returned { at: self.now, output: self.outputs[output].clone() };
                Phase::Idle
            }
        };
    }

    /// The history; operations still pending are unknown.
    pub fn history(&self) -> History {
        History::new(self.ops.clone())
    }
}

fn apply(map: &mut HashMap<String, Value>, input: &Input) -> Output {
    match input {
        Input::Create { key, value } => {
            if map.contains_key(key) {
                Output::Exists
            } else {
                map.insert(key.clone(), *value);
                Output::Ok
            }
        }
        Input::Update { key, value } => match map.get_mut(key) {
            Some(current) => {
                *current = *value;
                Output::Ok
            }
            None => Output::NotFound,
        },
        Input::Delete { key } => match map.remove(key) {
            Some(_) => Output::Ok,
            None => Output::NotFound,
        },
        Input::Read { key } => Output::Value(map.get(key).copied()),
    }
}

/// Why a read cannot have returned a value; see [`impossible_reads`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Impossible {
    /// No operation ever wrote it.
    NeverWritten,
    /// Only an operation on another key wrote it.
    OtherKey,
    /// Its only writer was invoked after the read returned.
    Future,
    /// Its only writer returned `ok`, and was then followed (in real time) by
    /// an update or delete that returned `ok` before the read began.
    Overwritten,
    /// Absent: a create or update returned `ok` before the read began and no
    /// delete on the key was invoked before the read returned.
    Present,
}

/// Values that read `read` of `history` cannot return in *any*
/// linearization, derived from the real-time order alone (so it holds
/// whatever order the checker picks), each with its reason. Relies on every
/// written value being unique, as [`Sim`] makes them.
pub fn impossible_reads(history: &History, read: usize) -> Vec<(Option<Value>, Impossible)> {
    let r = &history.ops[read];
    let (key, call, ret) = (r.input.key(), r.call, r.ret().expect("a read that returned"));
    let written = |op: &Op| match op.input {
        Input::Create { value, .. } | Input::Update { value, .. } => Some(value),
        _ => None,
    };
    let on_key: Vec<&Op> = history.ops.iter().filter(|op| op.input.key() == key).collect();
    let ok = |op: &Op| op.output() == Some(&Output::Ok);

    let fresh = history.ops.iter().filter_map(written).max().unwrap_or(0) + 1_000;
    let mut impossible = vec![(Some(fresh), Impossible::NeverWritten)];
    impossible.extend(
        history
            .ops
            .iter()
            .filter(|op| op.input.key() != key)
            .filter_map(written)
            .map(|v| (Some(v), Impossible::OtherKey)),
    );
    for w in &on_key {
        let Some(value) = written(w) else { continue };
        if w.call > ret {
            impossible.push((Some(value), Impossible::Future));
        } else if ok(w) {
            let overwritten = on_key.iter().any(|w2| {
                matches!(w2.input, Input::Update { .. } | Input::Delete { .. })
                    && ok(w2)
                    && w.ret().is_some_and(|w_ret| w_ret < w2.call)
                    && w2.ret().is_some_and(|w2_ret| w2_ret < call)
            });
            if overwritten {
                impossible.push((Some(value), Impossible::Overwritten));
            }
        }
    }
    let present = on_key.iter().any(|c| written(c).is_some() && ok(c) && c.ret().is_some_and(|c_ret| c_ret < call));
    let deletable = on_key.iter().any(|d| matches!(d.input, Input::Delete { .. }) && d.call < ret);
    if present && !deletable {
        impossible.push((None, Impossible::Present));
    }
    impossible
}

/// A small deterministic generator (splitmix64), so the performance test needs
/// no `rand`.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
