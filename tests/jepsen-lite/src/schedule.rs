//! The nemesis schedule: which fault, on which nodes, when and for how long,
//! drawn from a seed so that a run's faults can be replayed exactly. Every
//! fault is bounded and healed before the next starts, and the run ends with
//! a quiet period in which nothing is faulted (so the checkers see a healed
//! cluster).

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::net::Shape;

/// A small, seedable generator (splitmix64): the schedule must not depend on
/// a library's algorithm changing between versions.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }
}

/// The kinds of fault a run may draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Nemesis {
    /// kill -9 and restart: the leader, a random node, or a majority at once.
    Kill,
    /// SIGSTOP long enough for the paused node (often the leader) to be deposed, then SIGCONT.
    Pause,
    /// Network partitions: majority/minority, leader isolated, bridge, ring, one-way.
    Partition,
    /// A step of one node's wall clock (the leader's or another's), a year or
    /// an hour ahead or ten minutes behind, through libfaketime.
    Clock,
    /// One node's data directory (a tmpfs) filled to the last byte, then freed.
    Disk,
}

impl Nemesis {
    pub const ALL: [Nemesis; 5] = [Nemesis::Kill, Nemesis::Pause, Nemesis::Partition, Nemesis::Clock, Nemesis::Disk];

    pub fn parse(s: &str) -> Option<Nemesis> {
        match s {
            "kill" => Some(Nemesis::Kill),
            "pause" => Some(Nemesis::Pause),
            "partition" => Some(Nemesis::Partition),
            "clock" => Some(Nemesis::Clock),
            "disk" => Some(Nemesis::Disk),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Nemesis::Kill => "kill",
            Nemesis::Pause => "pause",
            Nemesis::Partition => "partition",
            Nemesis::Clock => "clock",
            Nemesis::Disk => "disk",
        }
    }
}

/// The clock steps a clock fault draws from, in seconds.
pub const CLOCK_STEPS_S: [i64; 3] = [365 * 24 * 3600, 3600, -600];

/// Who a fault hits: the leader at the time, or fixed nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    Leader,
    Nodes(BTreeSet<u64>),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fault {
    Kill(Target),
    Pause(Target),
    /// A partition shape; `Isolate` of the leader is drawn as `IsolateLeader`.
    Partition(PartitionShape),
    /// The target's wall clock stepped by `step_s` seconds, then set right.
    Clock {
        target: Target,
        step_s: i64,
    },
    /// The target's disk filled, then freed.
    Disk(Target),
}

impl Fault {
    pub fn kind(&self) -> Nemesis {
        match self {
            Fault::Kill(_) => Nemesis::Kill,
            Fault::Pause(_) => Nemesis::Pause,
            Fault::Partition(_) => Nemesis::Partition,
            Fault::Clock { .. } => Nemesis::Clock,
            Fault::Disk(_) => Nemesis::Disk,
        }
    }
}

/// [`Shape`] with the leader resolved when the fault starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PartitionShape {
    IsolateLeader,
    Split(BTreeSet<u64>),
    Bridge(u64),
    Ring,
    OneWay(u64, u64),
}

impl PartitionShape {
    /// The shape, with the leader known.
    pub fn resolve(&self, leader: Option<u64>) -> Shape {
        match self {
            PartitionShape::IsolateLeader => Shape::Isolate { node: leader.unwrap_or(1) },
            PartitionShape::Split(side) => Shape::Split { side: side.clone() },
            PartitionShape::Bridge(b) => Shape::Bridge { bridge: *b },
            PartitionShape::Ring => Shape::Ring,
            PartitionShape::OneWay(a, b) => Shape::OneWay { from: *a, to: *b },
        }
    }
}

/// One fault: from `at` after the run's start, for `hold`, then healed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub at: Duration,
    pub hold: Duration,
    pub fault: Fault,
}

/// Draws the faults of a run of `length` over `nodes` nodes from `seed`: a
/// quiet gap (2–6 s) before each fault, faults held 2–12 s (a pause at least
/// 3 s, several election timeouts), and the last 20 % of the run quiet.
pub fn draw(seed: u64, length: Duration, nodes: u64, kinds: &[Nemesis]) -> Vec<Step> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    if kinds.is_empty() || nodes < 3 {
        return out;
    }
    let end = length.mul_f64(0.8);
    let mut t = Duration::from_secs(rng.between(2, 6));
    let pick = |rng: &mut Rng, count: u64| -> BTreeSet<u64> {
        let mut set = BTreeSet::new();
        while (set.len() as u64) < count {
            set.insert(rng.between(1, nodes));
        }
        set
    };
    let minority = (nodes - 1) / 2;
    loop {
        let kind = kinds[rng.below(kinds.len() as u64) as usize];
        let hold = Duration::from_secs(match kind {
            Nemesis::Pause => rng.between(3, 10),
            _ => rng.between(2, 12),
        });
        if t + hold > end {
            break;
        }
        let fault = match kind {
            Nemesis::Kill => Fault::Kill(match rng.below(3) {
                0 => Target::Leader,
                1 => Target::Nodes(pick(&mut rng, 1)),
                // A majority at once: the cluster stops until they return.
                _ => Target::Nodes(pick(&mut rng, minority + 1)),
            }),
            Nemesis::Pause => Fault::Pause(match rng.below(2) {
                0 => Target::Leader,
                _ => Target::Nodes(pick(&mut rng, 1)),
            }),
            Nemesis::Partition => Fault::Partition(match rng.below(5) {
                0 => PartitionShape::IsolateLeader,
                1 => PartitionShape::Split(pick(&mut rng, minority)),
                2 => PartitionShape::Bridge(rng.between(1, nodes)),
                // In a ring of three every node is next to both others: no cut.
                3 if nodes >= 5 => PartitionShape::Ring,
                3 => PartitionShape::Bridge(rng.between(1, nodes)),
                _ => {
                    let a = rng.between(1, nodes);
                    let b = (a % nodes) + 1;
                    PartitionShape::OneWay(a, b)
                }
            }),
            Nemesis::Clock => Fault::Clock {
                target: if rng.below(2) == 0 { Target::Leader } else { Target::Nodes(pick(&mut rng, 1)) },
                step_s: CLOCK_STEPS_S[rng.below(CLOCK_STEPS_S.len() as u64) as usize],
            },
            Nemesis::Disk => {
                Fault::Disk(if rng.below(2) == 0 { Target::Leader } else { Target::Nodes(pick(&mut rng, 1)) })
            }
        };
        out.push(Step { at: t, hold, fault });
        t += hold + Duration::from_secs(rng.between(2, 6));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_schedule_and_every_fault_ends_before_the_quiet_tail() {
        let len = Duration::from_secs(180);
        let a = draw(42, len, 5, &Nemesis::ALL);
        assert_eq!(a, draw(42, len, 5, &Nemesis::ALL), "same seed, same schedule");
        assert_ne!(a, draw(43, len, 5, &Nemesis::ALL), "another seed, another schedule");
        assert!(a.len() >= 5, "{a:?}");
        for w in a.windows(2) {
            assert!(w[0].at + w[0].hold < w[1].at, "faults do not overlap: {w:?}");
        }
        let last = a.last().unwrap();
        assert!(last.at + last.hold <= len.mul_f64(0.8));
        // Every kind shows up over a long enough run.
        let kinds: BTreeSet<Nemesis> =
            draw(7, Duration::from_secs(1800), 5, &Nemesis::ALL).iter().map(|s| s.fault.kind()).collect();
        assert_eq!(kinds.len(), Nemesis::ALL.len());
        // Only the kinds asked for.
        assert!(draw(1, len, 3, &[Nemesis::Pause]).iter().all(|s| matches!(s.fault, Fault::Pause(_))));
        // Every partition cuts something.
        for nodes in [3, 5] {
            for s in draw(11, Duration::from_secs(1800), nodes, &[Nemesis::Partition]) {
                let Fault::Partition(shape) = &s.fault else { unreachable!() };
                assert!(!shape.resolve(Some(1)).cuts(nodes).is_empty(), "{nodes} nodes: {shape:?} cuts nothing");
            }
        }
        // Node numbers stay in range; a minority split is a minority.
        for s in draw(9, Duration::from_secs(600), 5, &Nemesis::ALL) {
            if let Fault::Partition(PartitionShape::Split(side)) = &s.fault {
                assert!(side.len() <= 2 && side.iter().all(|n| (1..=5).contains(n)));
            }
        }
    }
}
