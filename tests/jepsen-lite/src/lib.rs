//! jepsen-lite: the fault-injection harness (issue 12). Built so far:
//! - `net`: partitions on loopback with nftables, per node pair.
//! - `sink`: the fencing alert sink every run delivers to.
//! - `cluster`: real nodes from `scripts/dev-cluster.sh`, signals, clients.
//! - `schedule`: the seeded nemesis schedule.
//! - `nemesis`: carries a schedule's steps out on a cluster, and undoes each.

pub mod cluster;
pub mod nemesis;
pub mod net;
pub mod schedule;
pub mod sink;
