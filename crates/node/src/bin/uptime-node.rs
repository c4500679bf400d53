use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use uptime_node::{certs, Config, Node};

#[derive(Parser)]
#[command(name = "uptime-node", version, about = "A node of an uptime-cluster")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// A single-node cluster with defaults, for trying it out.
    Dev {
        #[arg(long, default_value = ".uptime-dev")]
        data_dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
    /// A cluster node from a TOML config (every key overridable by UPTIME_* variables).
    Run {
        #[arg(long, env = "UPTIME_CONFIG")]
        config: PathBuf,
    },
    /// Certificates for peer mutual TLS.
    #[command(subcommand)]
    Certs(CertsCmd),
}

#[derive(Subcommand)]
enum CertsCmd {
    /// Create the cluster CA (ca.pem, ca.key) in DIR.
    InitCa {
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
    },
    /// Issue node<ID>.pem and node<ID>.key, signed by the CA in DIR.
    Node {
        #[arg(long)]
        id: u64,
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// Extra host names or IP addresses for the certificate.
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
}

fn main() {
    if let Err(e) = real_main() {
        // Each cause once: `{e:#}` repeats a source its parent already printed.
        let dyn_error: &(dyn std::error::Error + 'static) = e.as_ref();
        eprintln!("uptime-node: {}", uptime_api::error_chain(dyn_error));
        std::process::exit(1);
    }
}

fn real_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Certs(CertsCmd::InitCa { dir }) => {
            let (cert, key) = certs::init_ca(&dir)?;
            println!("wrote {} and {}", cert.display(), key.display());
            Ok(())
        }
        Cmd::Certs(CertsCmd::Node { id, dir, hosts }) => {
            let (cert, key) = certs::issue_node(&dir, id, &hosts)?;
            println!("wrote {} and {}", cert.display(), key.display());
            Ok(())
        }
        Cmd::Dev { data_dir, listen } => {
            std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
            let token = dev_token(&data_dir)?;
            let config = Config::dev(data_dir, listen, token.clone()).validate()?;
            eprintln!("uptime-node dev: API on http://{listen}  token: {token}");
            eprintln!("  export UPTIMECTL_ENDPOINT=http://{listen} UPTIMECTL_TOKEN={token}");
            serve(config)
        }
        Cmd::Run { config } => {
            let config = Config::load(&config, std::env::vars())?;
            serve(config)
        }
    }
}

/// The dev token persists in the data dir so restarts keep working clients.
fn dev_token(dir: &std::path::Path) -> anyhow::Result<String> {
    let path = dir.join("dev-token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        if !t.trim().is_empty() {
            return Ok(t.trim().to_string());
        }
    }
    let mut bytes = [0u8; 16];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&path, &token).with_context(|| format!("writing {}", path.display()))?;
    Ok(token)
}

/// openraft's per-attempt replication failure lines, silenced by default.
const QUIET_REPLICATION: &str = "openraft::replication=off,openraft::engine::handler::replication_handler=error";

fn serve(config: Config) -> anyhow::Result<()> {
    let filter = std::env::var("UPTIME_LOG").unwrap_or_else(|_| "info,openraft=warn".into());
    // openraft logs every failed replication attempt (three lines each, ~15 a
    // second per down peer); the peer network logs them rate-limited instead
    // (`uptime_api::network`). A filter that names these targets keeps its say.
    let filter = if filter.contains("openraft::replication") || filter.contains("replication_handler") {
        filter
    } else {
        format!("{filter},{QUIET_REPLICATION}")
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(format!("info,openraft=warn,{QUIET_REPLICATION}"))
            }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    for variable in &config.ignored_env {
        tracing::warn!(%variable, "ignored: {variable} names no config key");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let node = Node::build(config).await?;
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            signal.cancel();
        });
        node.run(shutdown).await?;
        Ok(())
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
