//! `probe-bench http|sched ...`: prints one JSON object of figures. Driven by
//! `scripts/bench-probe.sh`; see `uptime_benches::probe_load`.
//!
//! ```text
//! probe-bench http  --targets URL[,URL...] [--concurrency 64] [--seconds 10] [--max-checks 5000000] [--threads N]
//! probe-bench sched --targets URL[,URL...] [--monitors 100000] [--interval 30] [--seconds 60] [--threads N]
//! ```

use std::time::Duration;

use anyhow::{bail, Context};
use uptime_benches::probe_load;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().cloned().unwrap_or_default();
    let opt =
        |name: &str| -> Option<String> { args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned() };
    let num = |name: &str, default: f64| -> anyhow::Result<f64> {
        opt(name).map_or(Ok(default), |v| v.parse().with_context(|| format!("{name} {v}")))
    };
    let targets: Vec<String> =
        opt("--targets").unwrap_or_default().split(',').filter(|s| !s.is_empty()).map(String::from).collect();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = opt("--threads") {
        runtime.worker_threads(n.parse().context("--threads")?);
    }
    let runtime = runtime.enable_all().build()?;
    let figures = match mode.as_str() {
        "http" => runtime.block_on(probe_load::http_checks(
            &targets,
            num("--concurrency", 64.0)? as usize,
            num("--seconds", 10.0)?,
            num("--max-checks", 5_000_000.0)? as u64,
        ))?,
        "sched" => runtime.block_on(probe_load::scheduler(
            &targets,
            num("--monitors", 100_000.0)? as u64,
            Duration::from_secs_f64(num("--interval", 30.0)?),
            num("--seconds", 60.0)?,
        ))?,
        other => bail!("unknown mode {other:?}: expected http or sched"),
    };
    println!("{figures}");
    Ok(())
}
