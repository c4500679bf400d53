//! `jepsen-lite --minutes N --nodes 3|5 [--nemesis kill,pause,partition,clock,disk] [--seed S] [--out FILE]`:
//! one run against real nodes (see `scripts/jepsen.sh`). Prints the summary
//! and the seed, writes the results JSON and its plot (FILE.svg), and exits
//! non-zero when a checker fails.

use std::path::PathBuf;
use std::time::Duration;

use uptime_jepsen_lite::run::{self, Config, Net};
use uptime_jepsen_lite::schedule::Nemesis;

const USAGE: &str = "usage: jepsen-lite --minutes N --nodes 3|5 [--nemesis kill,pause,partition,clock,disk] [--seed S] [--out FILE] [--net nft|proxy] [--dir DIR] [--root REPO] [--print-schedule]";

/// Whether this process runs as root (nftables and tmpfs need it).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

fn parse() -> Result<(Config, PathBuf, bool), String> {
    let mut args = std::env::args().skip(1);
    let mut minutes = 3.0f64;
    let mut nodes = 3u64;
    let mut nemeses = Nemesis::ALL.to_vec();
    let mut seed = None;
    let mut out = PathBuf::from("jepsen-results.json");
    let mut dir = None;
    let mut root = std::env::current_dir().map_err(|e| e.to_string())?;
    let mut print_schedule = false;
    let mut chosen = false;
    // nftables as root, the peer proxy otherwise.
    let mut net = if is_root() { Net::Nft } else { Net::Proxy };
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value\n{USAGE}"));
        match a.as_str() {
            "--minutes" => {
                minutes = value()?.parse().map_err(|e| format!("--minutes: {e}"))?;
                if !(0.2..=600.0).contains(&minutes) {
                    return Err("--minutes: from 0.2 to 600".into());
                }
            }
            "--nodes" => {
                nodes = value()?.parse().map_err(|e| format!("--nodes: {e}"))?;
                if nodes != 3 && nodes != 5 {
                    return Err("--nodes: 3 or 5".into());
                }
            }
            "--nemesis" => {
                chosen = true;
                nemeses = value()?
                    .split(',')
                    .map(|n| {
                        Nemesis::parse(n.trim())
                            .ok_or(format!("--nemesis: {n:?} is not kill, pause, partition, clock or disk"))
                    })
                    .collect::<Result<_, _>>()?
            }
            "--seed" => seed = Some(value()?.parse().map_err(|e| format!("--seed: {e}"))?),
            "--out" => out = PathBuf::from(value()?),
            "--dir" => dir = Some(PathBuf::from(value()?)),
            "--root" => root = PathBuf::from(value()?),
            "--print-schedule" => print_schedule = true,
            "--net" => {
                net = match value()?.as_str() {
                    "nft" => Net::Nft,
                    "proxy" => Net::Proxy,
                    other => return Err(format!("--net: {other:?} is not nft or proxy")),
                }
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if !is_root() && nemeses.contains(&Nemesis::Disk) {
        if chosen {
            return Err("--nemesis disk needs root (a tmpfs data directory per node)".into());
        }
        eprintln!("jepsen-lite: not root: no disk nemesis (it needs a tmpfs data directory per node)");
        nemeses.retain(|n| *n != Nemesis::Disk);
    }
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    let dir = dir.unwrap_or_else(|| std::env::temp_dir().join(format!("jepsen-lite-{seed}")));
    let node_env = std::env::vars().filter(|(k, _)| k.starts_with("UPTIMETEST_")).collect();
    let cfg = Config {
        root,
        dir,
        nodes,
        length: Duration::from_secs_f64(minutes * 60.0),
        seed,
        nemeses,
        targets: 3,
        clients: 4,
        keys: 16,
        node_env,
        net,
    };
    Ok((cfg, out, print_schedule))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (cfg, out, print_schedule) = match parse() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("jepsen-lite: {e}");
            std::process::exit(2);
        }
    };
    if print_schedule {
        // The faults this seed draws, without running anything.
        for s in uptime_jepsen_lite::schedule::draw(cfg.seed, cfg.length, cfg.nodes, &cfg.nemeses) {
            println!("{:>7.1} s  hold {:>4.1} s  {:?}", s.at.as_secs_f64(), s.hold.as_secs_f64(), s.fault);
        }
        return;
    }
    eprintln!(
        "jepsen-lite: seed {} · {} nodes · {:?} · nemeses {:?} · partitions by {:?} · {}",
        cfg.seed,
        cfg.nodes,
        cfg.length,
        cfg.nemeses,
        cfg.net,
        cfg.dir.display()
    );
    // On SIGINT or SIGTERM the run is dropped, which heals the partitions and
    // stops the nodes (their owners' Drop) before the process exits.
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("jepsen-lite: {e}");
            std::process::exit(2);
        }
    };
    let outcome = tokio::select! {
        r = run::run(&cfg) => r,
        _ = tokio::signal::ctrl_c() => Err("interrupted: partitions healed, nodes stopped".into()),
        _ = term.recv() => Err("terminated: partitions healed, nodes stopped".into()),
    };
    match outcome {
        Ok((results, svg)) => {
            print!("{}", results.summary());
            if let Err(e) = run::write(&out, &results, &svg) {
                eprintln!("jepsen-lite: {e}");
                std::process::exit(2);
            }
            println!("results: {} (plot {})", out.display(), out.with_extension("svg").display());
            println!(
                "reproduce: scripts/jepsen.sh --minutes {} --nodes {} --seed {}",
                cfg.length.as_secs_f64() / 60.0,
                cfg.nodes,
                cfg.seed
            );
            if !results.ok() {
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("jepsen-lite: {e}");
            std::process::exit(2);
        }
    }
}
