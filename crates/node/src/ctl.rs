//! `uptimectl`: the operator CLI over the admin API.
//!
//! Exit status 0 on success; on error a one-line reason on stderr and status 1
//! (usage errors: 2, from clap).

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;
use uptime_api::dto::{AddNode, ClusterStatus, CreateMonitor, MonitorView};
use uptime_api::{Client, ClientError};

#[derive(Debug, Parser)]
#[command(name = "uptimectl", version, about = "Operate an uptime-cluster")]
pub struct Cli {
    /// API base URL of any node.
    #[arg(long, global = true, env = "UPTIMECTL_ENDPOINT", default_value = "http://127.0.0.1:8080")]
    pub endpoint: String,
    /// Admin API bearer token.
    #[arg(long, global = true, env = "UPTIMECTL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Cluster membership and health.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Monitors: what the cluster probes.
    #[command(subcommand)]
    Monitor(MonitorCmd),
}

#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Leader, term, members and their health.
    Status,
    /// Add a node (started with join = true): it catches up as a learner, then votes.
    AddNode {
        /// The new node's id.
        id: u64,
        /// Its peer address, host:port.
        #[arg(long)]
        peer_addr: String,
        /// Its API base URL, e.g. http://10.0.0.4:8080.
        #[arg(long)]
        api_addr: String,
    },
    /// Remove a node from the cluster.
    RemoveNode { id: u64 },
    /// The answering node's applied index and state hash.
    StateHash,
}

#[derive(Debug, Subcommand)]
pub enum MonitorCmd {
    /// Create a monitor: KIND is http, tcp, icmp, dns or tls.
    Add(AddMonitor),
    /// List monitors.
    List {
        /// Reflect every write committed before this call (asks the leader).
        #[arg(long)]
        linearizable: bool,
    },
    /// Show one monitor, by id or name.
    Get { monitor: String },
    /// Delete a monitor, by id or name.
    Rm { monitor: String },
}

#[derive(Debug, Args)]
pub struct AddMonitor {
    pub kind: String,
    pub name: String,
    /// URL for http, host:port for tcp and tls, host for icmp, name for dns.
    pub target: String,
    #[arg(long, default_value = "30s")]
    pub interval: String,
    /// Default: the interval, at most 10s.
    #[arg(long)]
    pub timeout: Option<String>,
    /// Expected HTTP status codes (repeat or comma-separate).
    #[arg(long, value_delimiter = ',')]
    pub expect: Vec<u16>,
    /// Channels to alert (names); default: the cluster's default channels.
    #[arg(long, value_delimiter = ',')]
    pub channels: Vec<String>,
    /// Failing checks in a row, per node, before it counts toward down (default 2).
    #[arg(long)]
    pub confirmations: Option<u32>,
    /// Ok checks in a row, per node, before it counts toward up (default 1).
    #[arg(long)]
    pub recovery_confirmations: Option<u32>,
    /// How many nodes must agree: majority (default), any, all, or a number.
    #[arg(long)]
    pub quorum: Option<String>,
    /// Do not notify when the monitor recovers.
    #[arg(long)]
    pub no_recovery_notify: bool,
    /// Remind every DURATION while an incident is unacknowledged (e.g. 30m).
    #[arg(long)]
    pub renotify: Option<String>,
    /// Show on the public status page.
    #[arg(long)]
    pub public: bool,
    /// Create paused.
    #[arg(long)]
    pub paused: bool,
    #[arg(long = "tag")]
    pub tags: Vec<String>,
}

/// Runs one command and returns what to print on stdout.
pub async fn run(cli: Cli) -> Result<String, ClientError> {
    let client = Client::new(&cli.endpoint, cli.token.clone())?;
    let json = cli.output == Output::Json;
    match cli.command {
        Command::Cluster(ClusterCmd::Status) => {
            let status = client.cluster_status().await?;
            Ok(if json { to_json(&status) } else { cluster_table(&status) })
        }
        Command::Cluster(ClusterCmd::AddNode { id, peer_addr, api_addr }) => {
            let status = client.add_node(&AddNode { id, peer_addr, api_addr }).await?;
            Ok(if json { to_json(&status) } else { cluster_table(&status) })
        }
        Command::Cluster(ClusterCmd::RemoveNode { id }) => {
            let status = client.remove_node(id).await?;
            Ok(if json { to_json(&status) } else { cluster_table(&status) })
        }
        Command::Cluster(ClusterCmd::StateHash) => {
            let h = client.state_hash().await?;
            Ok(if json { to_json(&h) } else { format!("applied_index {}\nhash {}\n", h.applied_index, h.hash) })
        }
        Command::Monitor(MonitorCmd::Add(a)) => {
            let m = client
                .create_monitor(&CreateMonitor {
                    name: a.name,
                    kind: a.kind,
                    target: a.target,
                    interval: Some(a.interval),
                    timeout: a.timeout,
                    expect: a.expect,
                    public: a.public,
                    paused: a.paused,
                    tags: a.tags,
                    confirmations: a.confirmations,
                    recovery_confirmations: a.recovery_confirmations,
                    quorum: a.quorum,
                    notify_on_recovery: a.no_recovery_notify.then_some(false),
                    renotify: a.renotify,
                    channels: a.channels,
                })
                .await?;
            Ok(if json { to_json(&m) } else { monitor_table(std::slice::from_ref(&m)) })
        }
        Command::Monitor(MonitorCmd::List { linearizable }) => {
            let ms = client.list_monitors(linearizable).await?;
            Ok(if json { to_json(&ms) } else { monitor_table(&ms) })
        }
        Command::Monitor(MonitorCmd::Get { monitor }) => {
            let m = client.get_monitor(&monitor).await?;
            Ok(if json { to_json(&m) } else { monitor_table(std::slice::from_ref(&m)) })
        }
        Command::Monitor(MonitorCmd::Rm { monitor }) => {
            client.delete_monitor(&monitor).await?;
            Ok(if json { "{}\n".to_string() } else { format!("deleted {monitor}\n") })
        }
    }
}

fn to_json<T: Serialize>(v: &T) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}

fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<String>| {
        let parts: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row);
    }
    out
}

fn cluster_table(s: &ClusterStatus) -> String {
    let leader = s.leader.map(|l| l.to_string()).unwrap_or_else(|| "none".into());
    let mut out = format!(
        "leader {leader}  term {}  last_applied {}  (answered by node {})\n\n",
        s.term, s.last_applied, s.node_id
    );
    out.push_str(&table(
        &["ID", "PEER", "API", "ROLE", "HEALTHY"],
        s.members
            .iter()
            .map(|m| {
                let role = if Some(m.id) == s.leader {
                    "leader"
                } else if m.voter {
                    "voter"
                } else {
                    "learner"
                };
                vec![m.id.to_string(), m.addr.clone(), m.api_addr.clone(), role.into(), m.healthy.to_string()]
            })
            .collect(),
    ));
    out
}

fn monitor_table(ms: &[MonitorView]) -> String {
    table(
        &["ID", "NAME", "KIND", "TARGET", "INTERVAL", "STATE", "PUBLIC"],
        ms.iter()
            .map(|m| {
                vec![
                    m.id.to_string(),
                    m.name.clone(),
                    m.kind.clone(),
                    m.target.clone(),
                    format!("{}s", m.interval_s),
                    m.state.clone(),
                    m.public.to_string(),
                ]
            })
            .collect(),
    )
}
