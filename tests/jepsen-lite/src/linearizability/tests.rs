use super::*;
use crate::history::{Completion, Input, Output};

fn key() -> String {
    "a".to_string()
}

fn create(client: u64, call: u64, ret: u64, value: u64, output: Output) -> Op {
    Op::returned(client, call, Input::Create { key: key(), value }, ret, output)
}

fn update(client: u64, call: u64, ret: u64, value: u64, output: Output) -> Op {
    Op::returned(client, call, Input::Update { key: key(), value }, ret, output)
}

fn read(client: u64, call: u64, ret: u64, value: Option<u64>) -> Op {
    Op::returned(client, call, Input::Read { key: key() }, ret, Output::Value(value))
}

fn steps(max: u64) -> Budget {
    Budget { max_steps_per_key: NonZeroU64::new(max).unwrap(), time_limit: None }
}

#[test]
fn nothing_is_linearizable() {
    assert_eq!(check(&History::default()).unwrap(), Verdict::Linearizable);
    assert_eq!(check_model(&Register, &[], &Budget::default()).unwrap(), Outcome::Linearizable);
}

#[test]
fn only_unknown_operations_are_linearizable() {
    let ops =
        vec![Op::unknown(1, 0, Input::Create { key: key(), value: 1 }), Op::unknown(2, 0, Input::Read { key: key() })];
    assert_eq!(check(&History::new(ops)).unwrap(), Verdict::Linearizable);
}

#[test]
fn the_search_backtracks_to_reorder_concurrent_writes() {
    // Both creates overlap; the first tried (client 1's, called first) must
    // be undone so that client 2's goes first and client 1's is refused.
    let ops = [
        create(1, 0, 10, 1, Output::Exists),
        create(2, 1, 10, 2, Output::Ok),
        read(3, 11, 12, Some(2)),
        update(3, 13, 14, 3, Output::Ok),
        read(1, 15, 16, Some(3)),
    ];
    assert_eq!(check_model(&Register, &ops, &Budget::default()).unwrap(), Outcome::Linearizable);
}

#[test]
fn a_counterexample_names_the_prefix_and_the_operation_left_over() {
    let ops = [create(1, 0, 10, 1, Output::Ok), update(1, 11, 20, 2, Output::Ok), read(2, 21, 30, Some(1))];
    let Outcome::NotLinearizable(counterexample) = check_model(&Register, &ops, &Budget::default()).unwrap() else {
        panic!("a stale read was accepted");
    };
    assert_eq!(counterexample, Counterexample { prefix: vec![(0, Some(1)), (1, Some(2))], stuck: 2, state: Some(2) });

    let verdict = check(&History::new(ops.to_vec())).unwrap();
    let [violation] = verdict.violations() else { panic!("{verdict}") };
    assert_eq!(violation.key, "a");
    assert_eq!(violation.ops, 3);
    assert_eq!(violation.prefix.iter().map(|p| p.after).collect::<Vec<_>>(), [Some(1), Some(2)]);
    assert_eq!(violation.stuck, ops[2]);
    let text = verdict.to_string();
    assert!(text.contains(r#"client 2 [21, 30] read "a" -> 1"#), "{text}");
    assert!(text.contains("from state 2"), "{text}");
}

#[test]
fn the_cache_makes_many_interchangeable_operations_cheap() {
    // Sixteen overlapping reads and a read after them all that no order can
    // satisfy. Without the cache the search would try all 16! orders before
    // giving up; with it, each subset of the reads is visited once (2^16).
    let mut ops = vec![create(0, 0, 1, 7, Output::Ok)];
    ops.extend((0..16).map(|i| read(i + 1, 2 + i, 100 + i, Some(7))));
    ops.push(read(99, 200, 201, None));
    let outcome = check_model(&Register, &ops, &steps(5_000_000)).unwrap();
    let Outcome::NotLinearizable(counterexample) = outcome else { panic!("{outcome:?}") };
    assert_eq!(counterexample.stuck, ops.len() - 1);
    assert_eq!(counterexample.prefix.len(), 17);
}

#[test]
fn the_step_budget_gives_an_unknown_verdict() {
    let ops = vec![create(1, 0, 10, 1, Output::Ok), read(2, 1, 11, Some(1)), read(3, 2, 12, Some(1))];
    assert_eq!(check_model(&Register, &ops, &steps(2)).unwrap(), Outcome::Exhausted(Exhausted::Steps { max_steps: 2 }));
    let verdict = check_with(&History::new(ops.clone()), &steps(2)).unwrap();
    assert_eq!(
        verdict,
        Verdict::Unknown(vec![Inconclusive { key: key(), ops: 3, reason: Exhausted::Steps { max_steps: 2 } }])
    );
    assert_eq!(check_with(&History::new(ops), &steps(100)).unwrap(), Verdict::Linearizable);
}

#[test]
fn the_time_limit_gives_an_unknown_verdict() {
    let budget = Budget { time_limit: Some(Duration::ZERO), ..Budget::default() };
    let verdict = check_with(&History::new(vec![read(1, 0, 1, None)]), &budget).unwrap();
    let Verdict::Unknown(keys) = verdict else { panic!("{verdict}") };
    assert_eq!(keys[0].reason, Exhausted::Deadline { time_limit: Duration::ZERO });
}

#[test]
fn a_violation_outranks_an_undecided_key() {
    let mut ops = vec![read(1, 0, 1, Some(5))];
    let b = |input| Op::returned(2, 0, input, 10, Output::Ok);
    ops.push(b(Input::Create { key: "b".into(), value: 1 }));
    ops.push(Op::returned(3, 1, Input::Read { key: "b".into() }, 11, Output::Value(Some(1))));
    ops.extend(
        (0..10).map(|i| Op::returned(3, 20 + i, Input::Read { key: "b".into() }, 21 + i, Output::Value(Some(1)))),
    );
    // Enough steps to refute "a", too few to linearize "b".
    let verdict = check_with(&History::new(ops), &steps(5)).unwrap();
    let [violation] = verdict.violations() else { panic!("{verdict}") };
    assert_eq!(violation.key, "a");
}

#[test]
fn equal_times_are_concurrent() {
    // The read is invoked at the instant the create returns: either order.
    let ops = vec![create(1, 0, 5, 1, Output::Ok), read(2, 5, 9, None)];
    assert_eq!(check(&History::new(ops)).unwrap(), Verdict::Linearizable);
}

#[test]
fn a_return_before_its_call_is_an_error() {
    let ops = [read(1, 5, 4, None)];
    assert!(matches!(check_model(&Register, &ops, &Budget::default()), Err(Error::ReturnBeforeCall { index: 0, .. })));
    assert!(matches!(check(&History::new(ops.to_vec())), Err(Error::ReturnBeforeCall { index: 0, .. })));
}

#[test]
fn lifting_and_unlifting_restores_the_list() {
    let ops = [create(1, 0, 3, 1, Output::Ok), read(2, 1, 2, None), Op::unknown(3, 2, Input::Delete { key: key() })];
    let mut entries = Entries::new(ops.len(), ops.iter().enumerate().map(|(i, op)| (i, op.call, op.ret())));
    let walk = |entries: &Entries| {
        let mut node = entries.first();
        let mut seen = Vec::new();
        while let Some(entry) = entries.get(node) {
            seen.push((entry.op, entry.call));
            node = entries.next(node);
        }
        seen
    };
    let all = walk(&entries);
    assert_eq!(all, [(0, true), (1, true), (2, true), (1, false), (0, false)]);
    entries.lift(1);
    assert_eq!(walk(&entries), [(0, true), (2, true), (0, false)]);
    entries.lift(2);
    entries.lift(0);
    assert!(walk(&entries).is_empty());
    entries.unlift(0);
    entries.unlift(2);
    entries.unlift(1);
    assert_eq!(walk(&entries), all);
}

/// A model other than the register: a counter whose increments return the
/// new count, to show that [`check_model`] does not lean on [`Register`].
struct Counter;

impl Model for Counter {
    type Input = ();
    type Output = u64;
    type State = u64;

    fn init(&self) -> u64 {
        0
    }

    fn step(&self, state: &u64, _: &(), output: Option<&u64>) -> Option<u64> {
        let next = state + 1;
        output.is_none_or(|seen| *seen == next).then_some(next)
    }
}

#[test]
fn any_model_can_be_checked() {
    let incr = |call, ret, seen| Op::returned(1, call, (), ret, seen);
    let good = [incr(0, 10, 2), incr(1, 5, 1), incr(11, 12, 3)];
    assert_eq!(check_model(&Counter, &good, &Budget::default()).unwrap(), Outcome::Linearizable);
    // An unknown increment may have happened in between.
    let maybe = [incr(0, 1, 1), Op::unknown(2, 2, ()), incr(3, 4, 3)];
    assert_eq!(check_model(&Counter, &maybe, &Budget::default()).unwrap(), Outcome::Linearizable);
    let bad = [incr(0, 1, 2)];
    assert!(matches!(check_model(&Counter, &bad, &Budget::default()).unwrap(), Outcome::NotLinearizable(_)));
}

#[test]
fn unknown_updates_no_read_saw_are_dropped() {
    // Twenty unknown updates, each of which could be placed anywhere in a
    // long run of acknowledged updates and reads, and a bad read at the end:
    // searched as they are, each subset of them at each point.
    let mut ops: Vec<Op> =
        (0..20).map(|i| Op::unknown(100 + i, 0, Input::Update { key: key(), value: 1000 + i })).collect();
    ops.push(create(1, 1, 2, 0, Output::Ok));
    for i in 1..40 {
        ops.push(update(1, 10 * i, 10 * i + 1, i, Output::Ok));
        ops.push(read(2, 10 * i + 2, 10 * i + 3, Some(i)));
    }
    ops.push(read(2, 1000, 1001, Some(7)));
    let outcome = check_model(&Register, &ops, &steps(1_000_000)).unwrap();
    assert_eq!(outcome, Outcome::Exhausted(Exhausted::Steps { max_steps: 1_000_000 }));

    let verdict = check_with(&History::new(ops.clone()), &steps(1_000_000)).unwrap();
    let [violation] = verdict.violations() else { panic!("{verdict}") };
    assert_eq!(violation.stuck, *ops.last().unwrap());

    // One the last read saw is kept, and places it.
    ops.last_mut().unwrap().completion = Completion::Returned { at: 1001, output: Output::Value(Some(1007)) };
    assert_eq!(check_with(&History::new(ops), &steps(1_000_000)).unwrap(), Verdict::Linearizable);
}

#[test]
fn the_cache_prunes_a_configuration_with_more_unknown_ops_placed() {
    let ops = [
        read(1, 0, 1, None),
        Op::unknown(2, 0, Input::Delete { key: key() }),
        Op::unknown(3, 0, Input::Delete { key: key() }),
    ];
    let mut linearized = Linearized::new(&ops);
    let mut cache = Cache::default();
    linearized.set(1);
    assert!(cache.insert(&linearized, &None));
    linearized.set(2);
    assert!(!cache.insert(&linearized, &None), "a superset of unknown ops placed, same state");
    assert!(cache.insert(&linearized, &Some(1)), "another state");
    linearized.clear(1);
    linearized.clear(2);
    assert!(cache.insert(&linearized, &None), "a subset: it can do more");
    linearized.set(1);
    assert!(!cache.insert(&linearized, &None));
    linearized.set(0);
    assert!(cache.insert(&linearized, &None), "another set of returned ops");
}
