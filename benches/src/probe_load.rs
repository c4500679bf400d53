//! The Rust side of `scripts/bench-probe.sh`: load loops around the real
//! prober and scheduler, measured with the process's own CPU and RSS.
//!
//! Both loops are bounded in time and count and only ever target the URLs
//! they are given (the script passes 127.0.0.x addresses).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use uptime_probe::{CheckSpec, Config, HttpSpec, Job, Prober, Report, Scheduler, SchedulerConfig, Status};

/// User plus system CPU time of this process so far (from `/proc/self/stat`,
/// whose tick is `USER_HZ`, 100 on Linux).
pub fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields overall, so the 12th and 13th after it.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Resident set size and its peak, in MiB (from `/proc/self/status`).
pub fn rss_mb() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0)
}

fn http_spec(url: &str) -> anyhow::Result<CheckSpec> {
    let spec = CheckSpec::Http(HttpSpec { url: url.to_string(), ..HttpSpec::default() });
    spec.validate().with_context(|| format!("target {url}"))?;
    Ok(spec)
}

/// `concurrency` workers run fresh-connection HTTP checks round-robin over
/// `targets` for `seconds` (or `max_checks`), as fast as they complete.
pub async fn http_checks(
    targets: &[String],
    concurrency: usize,
    seconds: f64,
    max_checks: u64,
) -> anyhow::Result<Value> {
    if targets.is_empty() {
        bail!("no targets");
    }
    let specs: Arc<Vec<CheckSpec>> = Arc::new(targets.iter().map(|t| http_spec(t)).collect::<Result<_, _>>()?);
    let prober = Prober::new(Config::default())?;
    let done = Arc::new(AtomicU64::new(0));
    let up = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..concurrency {
        let (specs, prober, done, up, stop) = (specs.clone(), prober.clone(), done.clone(), up.clone(), stop.clone());
        workers.spawn(async move {
            let mut i = w;
            let mut errors: Vec<String> = Vec::new();
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                if done.fetch_add(1, Ordering::Relaxed) >= max_checks {
                    stop.store(true, Ordering::Relaxed);
                    break;
                }
                let spec = &specs[i % specs.len()];
                i += 1;
                match prober.check(spec, Duration::from_secs(5)).await {
                    Ok(o) if o.status == Status::Up => {
                        up.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(o) => {
                        if errors.len() < 3 {
                            errors.push(o.to_string());
                        }
                    }
                    Err(e) => {
                        if errors.len() < 3 {
                            errors.push(e.to_string());
                        }
                    }
                }
            }
            errors
        });
    }
    let mut errors = Vec::new();
    while let Some(r) = workers.join_next().await {
        errors.extend(r?);
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = (cpu_time() - cpu0).as_secs_f64();
    let checks = done.load(Ordering::Relaxed).min(max_checks);
    let up = up.load(Ordering::Relaxed);
    errors.truncate(5);
    Ok(json!({
        "mode": "http",
        "targets": targets.len(),
        "concurrency": concurrency,
        "seconds": wall,
        "checks": checks,
        "up": up,
        "checks_per_s": checks as f64 / wall,
        "cpu_pct": 100.0 * cpu / wall,
        "cpu_us_per_check": if checks > 0 { cpu * 1e6 / checks as f64 } else { 0.0 },
        "sample_errors": errors,
    }))
}

/// The scheduler holding `monitors` HTTP monitors at `interval` over
/// `targets` for `seconds`: checks/s, lateness percentiles, CPU and RSS.
pub async fn scheduler(targets: &[String], monitors: u64, interval: Duration, seconds: f64) -> anyhow::Result<Value> {
    if targets.is_empty() {
        bail!("no targets");
    }
    let specs: Vec<CheckSpec> = targets.iter().map(|t| http_spec(t)).collect::<Result<_, _>>()?;
    let (rss_before, _) = rss_mb();
    let (tx, mut rx) = mpsc::channel::<Report>(65_536);
    let (scheduler, handle) = Scheduler::new(SchedulerConfig::default(), Prober::new(Config::default())?, tx)?;
    let jobs = (0..monitors)
        .map(|id| Job {
            id,
            spec: specs[(id % specs.len() as u64) as usize].clone(),
            interval,
            timeout: Duration::from_secs(10),
        })
        .collect();
    handle.replace_all(jobs)?;
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    let run_for = Duration::from_secs_f64(seconds);
    let sched = tokio::spawn(scheduler.run(tokio::time::sleep(run_for)));
    let mut lateness_us: Vec<u32> = Vec::with_capacity((monitors * 3) as usize);
    let (mut reports, mut up, mut errors) = (0u64, 0u64, Vec::new());
    while let Some(r) = rx.recv().await {
        reports += 1;
        lateness_us.push(u32::try_from(r.lateness().as_micros()).unwrap_or(u32::MAX));
        match &r.result {
            Ok(o) if o.status == Status::Up => up += 1,
            Ok(o) if errors.len() < 5 => errors.push(o.to_string()),
            Err(e) if errors.len() < 5 => errors.push(e.to_string()),
            _ => {}
        }
    }
    sched.await?;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = (cpu_time() - cpu0).as_secs_f64();
    let (rss, peak) = rss_mb();
    lateness_us.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lateness_us.is_empty() {
            return 0.0;
        }
        let i = ((lateness_us.len() as f64 - 1.0) * p).round() as usize;
        f64::from(lateness_us[i]) / 1000.0
    };
    Ok(json!({
        "mode": "sched",
        "monitors": monitors,
        "interval_s": interval.as_secs_f64(),
        "targets": targets.len(),
        "seconds": wall,
        "checks": reports,
        "up": up,
        "checks_per_s": reports as f64 / wall,
        "cpu_pct": 100.0 * cpu / wall,
        "rss_mb": rss,
        "rss_peak_mb": peak,
        "rss_before_mb": rss_before,
        "lateness_p50_ms": pct(0.50),
        "lateness_p99_ms": pct(0.99),
        "lateness_max_ms": pct(1.0),
        "sample_errors": errors,
    }))
}
