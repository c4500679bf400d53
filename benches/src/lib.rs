//! Benchmarks and the Rust side of the peer comparison scripts.
//!
//! Modules:
//! - `probe_load`: fresh-connection HTTP check loops and a 100k-monitor
//!   scheduler run, measured for `scripts/bench-probe.sh` (binary `probe-bench`).
//!
//! The criterion benches live under `benches/` (`cargo bench -p uptime-benches`).

pub mod probe_load;
