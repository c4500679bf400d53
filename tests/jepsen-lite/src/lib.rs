//! jepsen-lite: the fault-injection harness (issue 12). Built so far:
//! - `net`: partitions on loopback with nftables, per node pair.

pub mod net;
