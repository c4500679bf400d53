//! Hand-written histories with known answers, one table row each: the
//! histories a correct cluster can produce must pass, and each kind of
//! anomaly a broken one could produce must be caught, on the right key.

mod support;

use support::parse;
use uptime_jepsen_lite::{check, History, Verdict};

/// Linearizable histories. Format: see [`support::parse`].
const GOOD: &[(&str, &str)] = &[
    (
        "sequential",
        "1 0 1 create a 1 -> ok
         1 2 3 read a -> 1
         1 4 5 create a 9 -> exists
         1 6 7 update a 2 -> ok
         1 8 9 read a -> 2
         1 10 11 delete a -> ok
         1 12 13 read a -> absent
         1 14 15 delete a -> notfound
         1 16 17 update a 3 -> notfound
         1 18 19 create a 4 -> ok
         1 20 21 read a -> 4",
    ),
    (
        "a read overlapping a create sees the key absent",
        "1 0 10 create a 1 -> ok
         2 5 15 read a -> absent
         2 20 30 read a -> 1",
    ),
    (
        "a read overlapping a create sees the key present",
        "1 0 10 create a 1 -> ok
         2 1 9 read a -> 1",
    ),
    (
        "concurrent creates: one wins, the other is refused, reads see the winner",
        "1 0 10 create a 1 -> exists
         2 0 10 create a 2 -> ok
         3 1 9 read a -> 2
         3 11 12 read a -> 2",
    ),
    (
        "a read overlapping an update may see the old value",
        "1 0 1 create a 1 -> ok
         1 2 10 update a 2 -> ok
         2 3 9 read a -> 1",
    ),
    (
        "a read overlapping an update may see the new value",
        "1 0 1 create a 1 -> ok
         1 2 10 update a 2 -> ok
         2 3 9 read a -> 2",
    ),
    (
        "overlapping reads may see new then old, if they overlap each other",
        "1 0 1 create a 1 -> ok
         1 2 20 update a 2 -> ok
         2 3 10 read a -> 2
         3 4 11 read a -> 1",
    ),
    (
        "an unknown update that took effect",
        "1 0 1 create a 1 -> ok
         1 2 ? update a 2
         2 10 11 read a -> 2
         2 12 13 read a -> 2",
    ),
    (
        "an unknown update that never took effect",
        "1 0 1 create a 1 -> ok
         1 2 ? update a 2
         2 10 11 read a -> 1
         2 12 13 read a -> 1",
    ),
    (
        "an unknown update that took effect long after the timeout",
        "1 0 1 create a 1 -> ok
         1 2 ? update a 2
         2 10 11 read a -> 1
         2 100 101 read a -> 2",
    ),
    (
        "an unknown op does not order its client's later ops",
        "1 0 1 create a 1 -> ok
         1 2 ? update a 2
         1 5 6 read a -> 1
         2 7 8 read a -> 2",
    ),
    (
        "an unknown create that took effect refuses a later create",
        "1 0 ? create a 1
         2 5 6 create a 2 -> exists
         2 7 8 read a -> 1",
    ),
    (
        "an unknown create that never took effect",
        "1 0 ? create a 1
         2 5 6 create a 2 -> ok
         2 7 8 read a -> 2",
    ),
    (
        "an unknown delete that took effect",
        "1 0 1 create a 1 -> ok
         1 2 ? delete a
         2 5 6 read a -> absent",
    ),
    (
        "unknown reads constrain nothing",
        "1 0 1 create a 1 -> ok
         2 0 ? read a
         2 5 ? read a",
    ),
    (
        "keys are independent",
        "1 0 10 create a 1 -> ok
         2 0 10 create b 2 -> ok
         1 11 12 read b -> 2
         2 11 12 read a -> 1
         1 13 14 delete a -> ok
         2 15 16 read b -> 2",
    ),
];

/// Histories that are not linearizable, with the keys that must be named.
const BAD: &[(&str, &[&str], &str)] = &[
    (
        "a stale read after a completed update",
        &["a"],
        "1 0 1 create a 1 -> ok
         1 2 3 update a 2 -> ok
         2 4 5 read a -> 1",
    ),
    (
        "a read of a value never written",
        &["a"],
        "1 0 1 create a 1 -> ok
         2 2 3 read a -> 7",
    ),
    ("a read of a key never created", &["a"], "2 2 3 read a -> 7"),
    (
        "two creates both ok, no delete between",
        &["a"],
        "1 0 1 create a 1 -> ok
         2 2 3 create a 2 -> ok",
    ),
    (
        "two concurrent creates both ok",
        &["a"],
        "1 0 10 create a 1 -> ok
         2 0 10 create a 2 -> ok",
    ),
    (
        "a read sees a deleted value after the delete completed",
        &["a"],
        "1 0 1 create a 1 -> ok
         1 2 3 delete a -> ok
         2 4 5 read a -> 1",
    ),
    (
        "a lost acknowledged write: later reads see the old value",
        &["a"],
        "1 0 1 create a 1 -> ok
         1 2 3 update a 2 -> ok
         2 10 11 read a -> 1
         3 12 13 read a -> 1",
    ),
    ("a refused create of a key never created", &["a"], "1 0 1 create a 1 -> exists"),
    (
        "an update reported not found on a present key",
        &["a"],
        "1 0 1 create a 1 -> ok
         1 2 3 update a 2 -> notfound",
    ),
    (
        "new then old in reads that do not overlap",
        &["a"],
        "1 0 1 create a 1 -> ok
         1 2 20 update a 2 -> ok
         2 3 5 read a -> 2
         3 6 8 read a -> 1",
    ),
    (
        "an unknown update's value appears, then the old value comes back",
        &["a"],
        "1 0 1 create a 1 -> ok
         1 2 ? update a 2
         2 10 11 read a -> 2
         2 12 13 read a -> 1",
    ),
    (
        "an unknown update seen before it was invoked",
        &["a"],
        "1 0 1 create a 1 -> ok
         2 2 3 read a -> 2
         1 4 ? update a 2",
    ),
    (
        "a read of another key's value",
        &["b"],
        "1 0 1 create a 1 -> ok
         1 2 3 create b 2 -> ok
         2 4 5 read b -> 1
         2 6 7 read a -> 1",
    ),
    (
        "a violation on one key among good ones names only that key",
        &["m2"],
        "1 0 10 create m1 1 -> ok
         2 0 10 create m2 2 -> ok
         3 0 10 create m3 3 -> ok
         1 11 12 update m2 4 -> ok
         2 13 14 read m1 -> 1
         3 15 16 read m2 -> 2
         1 17 18 read m3 -> 3",
    ),
    (
        "violations on two keys name both, in key order",
        &["a", "c"],
        "1 0 1 read c -> 5
         2 0 1 create b 1 -> ok
         3 0 1 read a -> 6",
    ),
];

#[test]
fn good_histories_are_linearizable() {
    for (name, text) in GOOD {
        let verdict = check(&parse(text)).unwrap();
        assert_eq!(verdict, Verdict::Linearizable, "{name}: {verdict}");
    }
}

#[test]
fn bad_histories_are_caught_on_their_keys() {
    for (name, keys, text) in BAD {
        let verdict = check(&parse(text)).unwrap();
        let named: Vec<&str> = verdict.violations().iter().map(|v| v.key.as_str()).collect();
        assert_eq!(named, *keys, "{name}: {verdict}");
    }
}

#[test]
fn the_explanation_names_the_stuck_read() {
    let (_, _, text) = BAD.iter().find(|(name, ..)| name.starts_with("a lost acknowledged")).unwrap();
    let verdict = check(&parse(text)).unwrap();
    let violation = &verdict.violations()[0];
    assert_eq!(violation.prefix.len(), 2, "{verdict}");
    assert_eq!(violation.state, Some(2));
    assert_eq!(violation.stuck.call, 10);
    println!("{verdict}");
}

#[test]
fn a_history_reread_from_json_gets_the_same_verdict() {
    for text in GOOD.iter().map(|(_, text)| text).chain(BAD.iter().map(|(_, _, text)| text)) {
        let history = parse(text);
        let reread: History = serde_json::from_str(&serde_json::to_string_pretty(&history).unwrap()).unwrap();
        assert_eq!(check(&reread).unwrap(), check(&history).unwrap());
    }
}
