//! Network partitions on loopback with nftables: node K lives on 127.0.0.K
//! (both listeners and the source of its peer connections,
//! `DEV_CLUSTER_DISTINCT_ADDRS=1`), so dropping packets between 127.0.0.A and
//! 127.0.0.B cuts exactly the pair A–B. Dropped, not rejected: bytes stop and
//! connections hang, as on a real partition. Rules live in a table of their
//! own (`inet jepsen_lite`), removed by [`Partitions::heal`] and on drop, so a
//! run never leaves the machine partitioned. Needs root.

use std::collections::BTreeSet;
use std::process::Command;

const TABLE: &str = "jepsen_lite";

/// One direction of traffic that is dropped: packets from node `from` to node `to`.
pub type Cut = (u64, u64);

/// The shapes of partition the nemesis knows, over nodes `1..=n`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `side` against the rest, both directions.
    Split { side: BTreeSet<u64> },
    /// Node `node` alone.
    Isolate { node: u64 },
    /// Two halves that cannot reach each other, joined by one `bridge` node that reaches both.
    Bridge { bridge: u64 },
    /// Each node reaches only its neighbours on a ring.
    Ring,
    /// `from` cannot send to `to`; the other way works.
    OneWay { from: u64, to: u64 },
}

impl Shape {
    /// The directed cuts that make this shape among `n` nodes.
    pub fn cuts(&self, n: u64) -> BTreeSet<Cut> {
        let nodes: Vec<u64> = (1..=n).collect();
        let both = |a: u64, b: u64| [(a, b), (b, a)];
        let mut out = BTreeSet::new();
        match self {
            Shape::Split { side } => {
                for &a in side {
                    for &b in nodes.iter().filter(|b| !side.contains(b)) {
                        out.extend(both(a, b));
                    }
                }
            }
            Shape::Isolate { node } => {
                for &b in nodes.iter().filter(|b| *b != node) {
                    out.extend(both(*node, b));
                }
            }
            Shape::Bridge { bridge } => {
                let rest: Vec<u64> = nodes.iter().copied().filter(|b| b != bridge).collect();
                let (left, right) = rest.split_at(rest.len() / 2);
                for &a in left {
                    for &b in right {
                        out.extend(both(a, b));
                    }
                }
            }
            Shape::Ring => {
                let n = nodes.len() as u64;
                for &a in &nodes {
                    for &b in &nodes {
                        let d = (a + n - b) % n;
                        if a != b && d != 1 && d != n - 1 {
                            out.insert((a, b));
                        }
                    }
                }
            }
            Shape::OneWay { from, to } => {
                out.insert((*from, *to));
            }
        }
        out
    }
}

/// The cuts in force, enforced by nftables (root) or by the harness's peer
/// proxy ([`crate::proxy`], no root); healed on drop.
pub struct Partitions {
    active: BTreeSet<Cut>,
    backend: Backend,
}

enum Backend {
    /// Rules in the table `inet jepsen_lite`.
    Nft,
    /// Cuts the peer proxy holds bytes for.
    Proxy(crate::proxy::Cuts),
}

fn nft(args: &str) -> Result<(), String> {
    let out = Command::new("nft").args(args.split_whitespace()).output().map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("nft {args}: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// The rule that drops packets of one cut.
pub fn rule(cut: Cut) -> String {
    format!("ip saddr 127.0.0.{} ip daddr 127.0.0.{} drop", cut.0, cut.1)
}

impl Partitions {
    /// Creates the (empty) table. Fails without root or without `nft`.
    pub fn new() -> Result<Partitions, String> {
        let _ = nft(&format!("delete table inet {TABLE}"));
        nft(&format!("add table inet {TABLE}"))?;
        nft(&format!("add chain inet {TABLE} input {{ type filter hook input priority 0 ; policy accept ; }}"))?;
        Ok(Partitions { active: BTreeSet::new(), backend: Backend::Nft })
    }

    /// Partitions enforced by the peer proxy (a cluster started with
    /// [`crate::cluster::Setup::peer_proxy`]): no root needed.
    pub fn proxied(cuts: crate::proxy::Cuts) -> Partitions {
        Partitions { active: BTreeSet::new(), backend: Backend::Proxy(cuts) }
    }

    /// Replaces the current cuts with `cuts`.
    pub fn apply(&mut self, cuts: &BTreeSet<Cut>) -> Result<(), String> {
        match &self.backend {
            Backend::Nft => {
                nft(&format!("flush chain inet {TABLE} input"))?;
                self.active.clear();
                for cut in cuts {
                    nft(&format!("add rule inet {TABLE} input {}", rule(*cut)))?;
                    self.active.insert(*cut);
                }
            }
            Backend::Proxy(c) => {
                c.set(cuts);
                self.active = cuts.clone();
            }
        }
        Ok(())
    }

    /// Removes every cut.
    pub fn heal(&mut self) -> Result<(), String> {
        self.apply(&BTreeSet::new())
    }

    pub fn active(&self) -> &BTreeSet<Cut> {
        &self.active
    }
}

impl Drop for Partitions {
    fn drop(&mut self) {
        match &self.backend {
            Backend::Nft => {
                let _ = nft(&format!("delete table inet {TABLE}"));
            }
            Backend::Proxy(c) => c.set(&BTreeSet::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_cut_the_pairs_they_name() {
        let set = |v: &[Cut]| v.iter().copied().collect::<BTreeSet<_>>();
        assert_eq!(Shape::Isolate { node: 2 }.cuts(3), set(&[(1, 2), (2, 1), (2, 3), (3, 2)]));
        let majority = Shape::Split { side: [1, 2].into() }.cuts(3);
        assert_eq!(majority, set(&[(1, 3), (3, 1), (2, 3), (3, 2)]));
        assert_eq!(Shape::OneWay { from: 1, to: 3 }.cuts(3), set(&[(1, 3)]));
        // Bridge of 5: node 3 reaches everyone, {1,2} and {4,5} do not reach each other.
        let bridge = Shape::Bridge { bridge: 3 }.cuts(5);
        assert!(bridge.iter().all(|(a, b)| *a != 3 && *b != 3));
        assert!(bridge.contains(&(1, 4)) && bridge.contains(&(5, 2)) && !bridge.contains(&(1, 2)));
        // Ring of 5: each node keeps exactly its two neighbours.
        let ring = Shape::Ring.cuts(5);
        for a in 1..=5u64 {
            let reach: Vec<u64> = (1..=5).filter(|b| *b != a && !ring.contains(&(a, *b))).collect();
            assert_eq!(reach.len(), 2, "node {a} reaches {reach:?}");
        }
        assert_eq!(rule((2, 3)), "ip saddr 127.0.0.2 ip daddr 127.0.0.3 drop");
    }

    /// As root with nftables: a cut really stops loopback bytes between two
    /// addresses (a connect hangs), and healing lets them through again.
    #[tokio::test]
    async fn a_cut_stops_loopback_traffic_between_two_addresses_and_heal_restores_it() {
        let Ok(mut parts) = Partitions::new() else {
            eprintln!("skipped: needs root and nft");
            return;
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.3:0").await.unwrap();
        let to = listener.local_addr().unwrap();
        let connect = || async move {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
            matches!(tokio::time::timeout(std::time::Duration::from_millis(300), socket.connect(to)).await, Ok(Ok(_)))
        };
        assert!(connect().await, "no partition yet");
        parts.apply(&Shape::OneWay { from: 2, to: 3 }.cuts(3)).unwrap();
        assert!(!connect().await, "the cut should drop the SYN");
        parts.heal().unwrap();
        assert!(connect().await, "healed");
    }
}
