//! Generated histories: a simulated correct map under concurrent clients,
//! with timeouts, must always be accepted; the same history with one read
//! changed to a value it provably could not see must be rejected, on that
//! read's key.

mod support;

use std::collections::HashMap;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::FileFailurePersistence;
use support::{impossible_reads, Action, Impossible, Kind, Sim};
use uptime_jepsen_lite::{check, Completion, History, Input, Output, Verdict};

fn action() -> impl Strategy<Value = Action> {
    let kind =
        prop_oneof![2 => Just(Kind::Create), 3 => Just(Kind::Update), 1 => Just(Kind::Delete), 4 => Just(Kind::Read)];
    (0..4usize, 0..3usize, kind, prop::bool::weighted(0.1)).prop_map(|(client, key, kind, time_out)| Action {
        client,
        key,
        kind,
        time_out,
    })
}

fn simulate(clients: usize, actions: &[Action]) -> History {
    let mut sim = Sim::new(clients, 3);
    for action in actions {
        sim.step(*action);
    }
    sim.history()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        // Test files sit beside no lib.rs, where proptest would look by default.
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("tests/generated.proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_correct_map_is_accepted(clients in 1..=4usize, actions in prop::collection::vec(action(), 0..90)) {
        let history = simulate(clients, &actions);
        let verdict = check(&history).unwrap();
        prop_assert_eq!(&verdict, &Verdict::Linearizable, "{}", verdict);
    }

    #[test]
    fn an_impossible_read_is_rejected(
        clients in 1..=4usize,
        actions in prop::collection::vec(action(), 1..90),
        which_read in any::<Index>(),
        which_reason in any::<Index>(),
        which_value in any::<Index>(),
    ) {
        let mut history = simulate(clients, &actions);
        let reads: Vec<usize> = (0..history.ops.len())
            .filter(|&op| history.ops[op].input.is_read() && history.ops[op].ret().is_some())
            .collect();
        prop_assume!(!reads.is_empty());
        let read = *which_read.get(&reads);
        let impossible = impossible_reads(&history, read);
        // The derivation must never call the true answer impossible.
        let Some(Output::Value(seen)) = history.ops[read].output() else { unreachable!("a read's output") };
        prop_assert!(impossible.iter().all(|(value, _)| value != seen), "{:?} is what it read", seen);

        // One reason first, then one value for it, so that the many values of
        // the other key do not crowd out the rarer, subtler reasons.
        let mut reasons: Vec<Impossible> = impossible.iter().map(|(_, why)| *why).collect();
        reasons.sort_unstable();
        reasons.dedup();
        let why = *which_reason.get(&reasons);
        let values: Vec<Option<u64>> = impossible.iter().filter(|(_, w)| *w == why).map(|(v, _)| *v).collect();
        let value = *which_value.get(&values);
        let Completion::Returned { output, .. } = &mut history.ops[read].completion else { unreachable!() };
        *output = Output::Value(value);
        let verdict = check(&history).unwrap();
        let named: Vec<&str> = verdict.violations().iter().map(|v| v.key.as_str()).collect();
        let Input::Read { key } = &history.ops[read].input else { unreachable!() };
        prop_assert_eq!(named, vec![key.as_str()], "read {} changed to {:?} ({:?}): {}", read, value, why, verdict);
    }
}

/// Every rule in `impossible_reads` fires on generated histories, so the
/// rejection property exercises each kind of impossible read.
#[test]
fn every_kind_of_impossible_read_is_generated() {
    let mut rng = support::Rng(7);
    let mut seen: HashMap<Impossible, usize> = HashMap::new();
    for _ in 0..200 {
        let mut sim = Sim::new(3, 2);
        for _ in 0..60 {
            let kind = [Kind::Create, Kind::Update, Kind::Delete, Kind::Read][rng.below(4) as usize];
            let action = Action {
                client: rng.below(3) as usize,
                key: rng.below(2) as usize,
                kind,
                time_out: rng.below(10) == 0,
            };
            sim.step(action);
        }
        let history = sim.history();
        for (op, o) in history.ops.iter().enumerate() {
            if o.input.is_read() && o.ret().is_some() {
                for (_, why) in impossible_reads(&history, op) {
                    *seen.entry(why).or_default() += 1;
                }
            }
        }
    }
    println!("{seen:?}");
    for why in [
        Impossible::NeverWritten,
        Impossible::OtherKey,
        Impossible::Future,
        Impossible::Overwritten,
        Impossible::Present,
    ] {
        assert!(seen.get(&why).copied().unwrap_or(0) >= 10, "{why:?}: {seen:?}");
    }
}
