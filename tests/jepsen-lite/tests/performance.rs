//! A history the size of a long jepsen-lite run checks quickly: 10 000
//! operations over 100 keys from 8 concurrent clients, with timeouts. Asserts
//! only the verdicts; prints the times.

mod support;

use std::time::Instant;

use support::{impossible_reads, Action, Kind, Rng, Sim};
use uptime_jepsen_lite::{check, Completion, Output, Verdict};

#[test]
fn ten_thousand_operations_over_a_hundred_keys() {
    let mut rng = Rng(0x5eed);
    let mut sim = Sim::new(8, 100);
    while sim.len() < 10_000 {
        let kind = match rng.below(10) {
            0..=1 => Kind::Create,
            2..=4 => Kind::Update,
            5 => Kind::Delete,
            _ => Kind::Read,
        };
        sim.step(Action {
            client: rng.below(8) as usize,
            key: rng.below(100) as usize,
            kind,
            time_out: rng.below(100) == 0,
        });
    }
    let mut history = sim.history();
    let unknown = history.ops.iter().filter(|op| op.ret().is_none()).count();

    let started = Instant::now();
    let verdict = check(&history).unwrap();
    println!("{} operations ({unknown} unknown): {verdict} in {:?}", history.ops.len(), started.elapsed());
    assert_eq!(verdict, Verdict::Linearizable);

    // The same history with its last returned read made impossible.
    let read = (0..history.ops.len())
        .rev()
        .find(|&op| history.ops[op].input.is_read() && history.ops[op].ret().is_some())
        .unwrap();
    let (value, _) = *impossible_reads(&history, read).last().unwrap();
    let Completion::Returned { output, .. } = &mut history.ops[read].completion else { unreachable!() };
    *output = Output::Value(value);
    let started = Instant::now();
    let verdict = check(&history).unwrap();
    println!(
        "with read {read} changed to {value:?}: {} violation(s) in {:?}",
        verdict.violations().len(),
        started.elapsed()
    );
    assert_eq!(verdict.violations().len(), 1, "{verdict}");
    assert_eq!(verdict.violations()[0].key, history.ops[read].input.key());
}
