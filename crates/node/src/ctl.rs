//! `uptimectl`: the operator CLI over the admin API.
//!
//! Exit status 0 on success; on error a one-line reason on stderr and status 1
//! (usage errors: 2, from clap). A read answered from state that may be behind
//! the cluster (the node heard no leader) is printed, with a warning on stderr,
//! and exits [`EXIT_STALE`].

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;
use uptime_api::dto::{
    AddNode, ChannelView, ClusterStatus, CreateMonitor, DeclareIncident, HistoryView, IncidentAction, IncidentView,
    MaintenanceView, MonitorView, NotificationView,
};
use uptime_api::{Client, ClientError, Read};

/// The exit status of a read that was answered but marked stale.
pub const EXIT_STALE: i32 = 3;

/// What a command prints: stdout, and the stale mark of a read, if any.
#[derive(Debug, Default)]
pub struct Printed {
    pub stdout: String,
    /// The `X-Uptime-Stale` age of the read this printed.
    pub stale: Option<String>,
}

impl Printed {
    /// The warning for stderr, when the read was stale.
    pub fn warning(&self) -> Option<String> {
        self.stale.as_ref().map(|age| {
            format!(
                "warning: stale: the answering node hears no leader (no quorum?); this state is {age} old and may \
                 be behind the cluster"
            )
        })
    }
}

impl From<String> for Printed {
    fn from(stdout: String) -> Self {
        Printed { stdout, stale: None }
    }
}

/// A read's output with its stale mark.
fn read_out<T>(read: Read<T>, print: impl FnOnce(&T) -> String) -> Printed {
    Printed { stdout: print(&read.value), stale: read.stale }
}

#[derive(Debug, Parser)]
#[command(name = "uptimectl", version, about = "Operate an uptime-cluster")]
pub struct Cli {
    /// API base URL of any node.
    #[arg(long, global = true, env = "UPTIMECTL_ENDPOINT", default_value = "http://127.0.0.1:8080")]
    pub endpoint: String,
    /// Admin API bearer token.
    #[arg(long, global = true, env = "UPTIMECTL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Who incident actions are attributed to.
    #[arg(long, global = true, env = "UPTIMECTL_USER")]
    pub by: Option<String>,
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
    /// Incidents: what went down, and what people did about it.
    #[command(subcommand)]
    Incident(IncidentCmd),
    /// A monitor's downsampled history and uptime.
    History {
        monitor: String,
        /// How far back: e.g. 1h, 24h (default), 30d.
        #[arg(long, default_value = "24h")]
        range: String,
    },
    /// Maintenance windows: no incidents and no alerts for their monitors while active.
    #[command(subcommand)]
    Maintenance(MaintenanceCmd),
    /// Notification channels: where alerts go.
    #[command(subcommand)]
    Channel(ChannelCmd),
    /// The notification outbox: every alert and its delivery.
    #[command(subcommand)]
    Outbox(OutboxCmd),
}

#[derive(Debug, Subcommand)]
pub enum ChannelCmd {
    /// Add a channel.
    Add(AddChannel),
    /// List channels (secrets redacted).
    List,
    /// Show one channel (secrets redacted).
    Get { name: String },
    /// Delete a channel (refused while a monitor names it).
    Rm { name: String },
    /// Send a synthetic alert through the channel and print the outcome.
    Test { name: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ChannelKindArg {
    Webhook,
    Smtp,
    Slack,
    Discord,
    Pagerduty,
    Ntfy,
}

#[derive(Debug, Args)]
pub struct AddChannel {
    pub kind: ChannelKindArg,
    pub name: String,
    /// webhook, slack, discord, ntfy (topic URL); pagerduty (default: PagerDuty's Events API v2).
    #[arg(long)]
    pub url: Option<String>,
    /// Notify this channel for every monitor that does not opt out.
    #[arg(long)]
    pub default: bool,
    /// webhook: sign bodies with HMAC-SHA256 under this secret.
    #[arg(long, env = "UPTIMECTL_CHANNEL_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// webhook: an extra request header, NAME=VALUE (repeatable).
    #[arg(long = "header")]
    pub headers: Vec<String>,
    /// smtp: the server's host name.
    #[arg(long)]
    pub host: Option<String>,
    /// smtp: default 587 (starttls), 465 (tls), 25 (plain).
    #[arg(long)]
    pub port: Option<u16>,
    /// smtp: starttls (default), tls or plain.
    #[arg(long)]
    pub security: Option<String>,
    #[arg(long)]
    pub username: Option<String>,
    #[arg(long, env = "UPTIMECTL_SMTP_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// smtp: the sender address.
    #[arg(long)]
    pub from: Option<String>,
    /// smtp: recipients (repeat or comma-separate).
    #[arg(long, value_delimiter = ',')]
    pub to: Vec<String>,
    /// pagerduty: the integration's routing key.
    #[arg(long, env = "UPTIMECTL_ROUTING_KEY", hide_env_values = true)]
    pub routing_key: Option<String>,
    /// ntfy: access token.
    #[arg(long = "ntfy-token", env = "UPTIMECTL_NTFY_TOKEN", hide_env_values = true)]
    pub ntfy_token: Option<String>,
    /// ntfy: priority 1 (min) to 5 (max).
    #[arg(long)]
    pub priority: Option<u8>,
    /// Subject (title) template; see docs/alerting.md for the variables.
    #[arg(long)]
    pub subject: Option<String>,
    /// Body template.
    #[arg(long)]
    pub body: Option<String>,
}

impl AddChannel {
    fn into_body(self) -> Result<ChannelView, ClientError> {
        let mut headers = std::collections::BTreeMap::new();
        for h in &self.headers {
            let Some((name, value)) = h.split_once('=') else {
                return Err(ClientError::Api {
                    status: 400,
                    code: "invalid_argument".into(),
                    message: format!("--header {h:?}: expected NAME=VALUE"),
                    field: Some("headers".into()),
                });
            };
            headers.insert(name.trim().to_string(), value.to_string());
        }
        let kind = self.kind.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default();
        Ok(ChannelView {
            name: self.name,
            kind,
            default: self.default,
            url: self.url,
            headers,
            secret: self.secret,
            host: self.host,
            port: self.port,
            security: self.security,
            username: self.username,
            password: self.password,
            from: self.from,
            to: self.to,
            routing_key: self.routing_key,
            token: self.ntfy_token,
            priority: self.priority,
            subject: self.subject,
            body: self.body,
            ..Default::default()
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum OutboxCmd {
    /// List notifications, newest first.
    List {
        /// pending, claimed, sent, failed, dead, due or all (default).
        #[arg(long)]
        state: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum IncidentCmd {
    /// List incidents.
    List {
        /// open, triggered, acknowledged, resolved or all (default).
        #[arg(long)]
        state: Option<String>,
    },
    /// Show one incident with its timeline.
    Get { id: String },
    /// Acknowledge: people are on it (stops reminders).
    Ack { id: String },
    /// Resolve by hand.
    Resolve { id: String },
    /// Reopen a resolved incident.
    Reopen { id: String },
    /// Add a note to the timeline.
    Note { id: String, text: String },
    /// Assign to a person (no name: unassign).
    Assign { id: String, assignee: Option<String> },
    /// Set the severity: critical, major, minor or info.
    Severity { id: String, severity: String },
    /// Declare an incident by hand.
    Declare {
        title: String,
        #[arg(long)]
        severity: Option<String>,
        /// The monitor it is about (id or name).
        #[arg(long)]
        monitor: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum MaintenanceCmd {
    List,
    /// One-off: --start and --end (RFC 3339). Recurring: --time-zone, --at HH:MM, --duration, [--weekdays mon,tue].
    Add {
        name: String,
        /// Monitors (ids or names) the window silences.
        #[arg(long, value_delimiter = ',', required_unless_present = "all_monitors")]
        monitors: Vec<String>,
        /// Silence every monitor, present and future, instead of a list.
        #[arg(long, conflicts_with = "monitors")]
        all_monitors: bool,
        #[arg(long)]
        start: Option<String>,
        #[arg(long)]
        end: Option<String>,
        #[arg(long)]
        time_zone: Option<String>,
        #[arg(long)]
        at: Option<String>,
        #[arg(long)]
        duration: Option<String>,
        #[arg(long, value_delimiter = ',')]
        weekdays: Vec<String>,
    },
    Rm {
        id: String,
    },
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
    /// Replace a monitor's definition (all of it; unset flags take defaults).
    /// Its id, verdict, history and incidents stay.
    Update {
        /// The monitor to change, by id or name.
        monitor: String,
        #[command(flatten)]
        def: AddMonitor,
    },
    /// List monitors.
    List {
        /// Reflect every write committed before this call (asks the leader).
        #[arg(long)]
        linearizable: bool,
    },
    /// Show one monitor, by id or name.
    Get {
        monitor: String,
    },
    /// Delete a monitor, by id or name.
    Rm {
        monitor: String,
    },
    /// Stop probing it (state: maintenance) until resumed.
    Pause {
        monitor: String,
    },
    Resume {
        monitor: String,
    },
    /// Each node's latest report: which nodes see it down.
    Nodes {
        monitor: String,
    },
}

#[derive(Debug, Args)]
pub struct AddMonitor {
    pub kind: String,
    pub name: String,
    /// URL for http, host:port for tcp and tls, host for icmp, name for dns.
    pub target: String,
    #[arg(long, default_value = "30s")]
    pub interval: String,
    /// Default: 4/5 of the interval, at most 10s.
    #[arg(long)]
    pub timeout: Option<String>,
    /// Expected HTTP status codes (repeat or comma-separate).
    #[arg(long, value_delimiter = ',')]
    pub expect: Vec<u16>,
    /// Channels to alert (names), besides the cluster's default channels.
    #[arg(long, value_delimiter = ',')]
    pub channels: Vec<String>,
    /// Do not alert the cluster's default channels, only --channels.
    #[arg(long)]
    pub no_default_channels: bool,
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
    /// Open a "no data" incident after no node has reported a check for this
    /// long (default 10m); 0s = never.
    #[arg(long)]
    pub no_data_after: Option<String>,
    /// Severity of the "no data" incident: critical, major, minor (default), info.
    #[arg(long)]
    pub no_data_severity: Option<String>,
    /// Open an incident when the monitor is degraded, not only when it is down.
    #[arg(long)]
    pub alert_on_degraded: bool,
    /// Show on the public status page.
    #[arg(long)]
    pub public: bool,
    /// Create paused.
    #[arg(long)]
    pub paused: bool,
    #[arg(long = "tag")]
    pub tags: Vec<String>,
}

impl AddMonitor {
    fn into_body(self) -> CreateMonitor {
        CreateMonitor {
            name: self.name,
            kind: self.kind,
            target: self.target,
            interval: Some(self.interval),
            timeout: self.timeout,
            expect: self.expect,
            public: self.public,
            paused: self.paused,
            tags: self.tags,
            confirmations: self.confirmations,
            recovery_confirmations: self.recovery_confirmations,
            quorum: self.quorum,
            notify_on_recovery: self.no_recovery_notify.then_some(false),
            renotify: self.renotify,
            channels: self.channels,
            no_data_after: self.no_data_after,
            no_data_severity: self.no_data_severity,
            alert_on_degraded: self.alert_on_degraded.then_some(true),
            default_channels: self.no_default_channels.then_some(false),
        }
    }
}

/// Runs one command and returns what to print.
pub async fn run(cli: Cli) -> Result<Printed, ClientError> {
    let mut client = Client::new(&cli.endpoint, cli.token.clone())?;
    if let Some(user) = cli.by.clone().or_else(|| std::env::var("USER").ok()) {
        client = client.with_user(user);
    }
    let json = cli.output == Output::Json;
    let stdout: Result<String, ClientError> = match cli.command {
        Command::Cluster(ClusterCmd::Status) => {
            let status = client.cluster_status().await?;
            Ok(if json { to_json(&status) } else { cluster_table(&status) })
        }
        Command::Cluster(ClusterCmd::AddNode { id, peer_addr, api_addr }) => {
            let status = client.add_node(&AddNode { id, peer_addr, api_addr }).await?;
            if json {
                return Ok(to_json(&status).into());
            }
            let mut out = cluster_table(&status);
            if status.members.iter().any(|m| m.id == id && !m.voter) {
                out.push_str(&format!(
                    "\nnode {id} is catching up as a learner and becomes a voter once it has (see `uptimectl cluster status`)\n"
                ));
            }
            Ok(out)
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
            let m = client.create_monitor(&a.into_body()).await?;
            Ok(if json { to_json(&m) } else { monitor_table(std::slice::from_ref(&m)) })
        }
        Command::Monitor(MonitorCmd::Update { monitor, def }) => {
            let m = client.update_monitor(&monitor, &def.into_body()).await?;
            Ok(if json { to_json(&m) } else { monitor_table(std::slice::from_ref(&m)) })
        }
        Command::Monitor(MonitorCmd::List { linearizable }) => {
            let read = client.list_monitors_read(linearizable).await?;
            return Ok(read_out(read, |ms| if json { to_json(ms) } else { monitor_table(ms) }));
        }
        Command::Monitor(MonitorCmd::Get { monitor }) => {
            let read = client.get_monitor_read(&monitor).await?;
            return Ok(read_out(read, |m| if json { to_json(m) } else { monitor_table(std::slice::from_ref(m)) }));
        }
        Command::Monitor(MonitorCmd::Pause { monitor }) => {
            let m = client.pause_monitor(&monitor, true).await?;
            Ok(if json { to_json(&m) } else { monitor_table(std::slice::from_ref(&m)) })
        }
        Command::Monitor(MonitorCmd::Resume { monitor }) => {
            let m = client.pause_monitor(&monitor, false).await?;
            Ok(if json { to_json(&m) } else { monitor_table(std::slice::from_ref(&m)) })
        }
        Command::Monitor(MonitorCmd::Nodes { monitor }) => {
            let Read { value: nodes, stale } = client.monitor_nodes_read(&monitor).await?;
            let stdout = if json {
                to_json(&nodes)
            } else {
                table(
                    &["NODE", "STATUS", "RUN", "AT", "STALE", "LATENCY", "ERROR"],
                    nodes
                        .iter()
                        .map(|n| {
                            vec![
                                n.node_id.to_string(),
                                n.status.clone(),
                                n.run.to_string(),
                                n.at.clone(),
                                n.stale.to_string(),
                                format!("{:.1}ms", n.latency_ms),
                                n.last_error.clone(),
                            ]
                        })
                        .collect(),
                )
            };
            return Ok(Printed { stdout, stale });
        }
        Command::Incident(cmd) => incident(&client, cmd, json).await,
        Command::History { monitor, range } => {
            let h = client.history(&monitor, &range).await?;
            Ok(if json { to_json(&h) } else { history_table(&h) })
        }
        Command::Maintenance(MaintenanceCmd::List) => {
            let ws = client.list_maintenance().await?;
            Ok(if json { to_json(&ws) } else { maintenance_table(&ws) })
        }
        Command::Maintenance(MaintenanceCmd::Add {
            name,
            monitors,
            all_monitors,
            start,
            end,
            time_zone,
            at,
            duration,
            weekdays,
        }) => {
            let w = client
                .create_maintenance(&MaintenanceView {
                    name,
                    monitors,
                    all_monitors,
                    start,
                    end,
                    time_zone,
                    at,
                    duration,
                    weekdays,
                    ..Default::default()
                })
                .await?;
            for warning in &w.warnings {
                eprintln!("warning: {warning}");
            }
            Ok(if json { to_json(&w) } else { maintenance_table(std::slice::from_ref(&w)) })
        }
        Command::Maintenance(MaintenanceCmd::Rm { id }) => {
            client.delete_maintenance(&id).await?;
            Ok(if json { "{}\n".to_string() } else { format!("deleted maintenance window {id}\n") })
        }
        Command::Monitor(MonitorCmd::Rm { monitor }) => {
            client.delete_monitor(&monitor).await?;
            Ok(if json { "{}\n".to_string() } else { format!("deleted {monitor}\n") })
        }
        Command::Channel(cmd) => channel(&client, cmd, json).await,
        Command::Outbox(OutboxCmd::List { state }) => {
            let list = client.list_outbox(state.as_deref()).await?;
            Ok(if json { to_json(&list) } else { outbox_table(&list) })
        }
    };
    stdout.map(Printed::from)
}

async fn incident(client: &Client, cmd: IncidentCmd, json: bool) -> Result<String, ClientError> {
    let one = |i: IncidentView| if json { to_json(&i) } else { incident_detail(&i) };
    let act = |id: String, action: &'static str, body: IncidentAction| async move {
        client.incident_action(&id, action, &body).await
    };
    Ok(match cmd {
        IncidentCmd::List { state } => {
            let list = client.list_incidents(state.as_deref()).await?;
            if json {
                to_json(&list)
            } else {
                table(
                    &["ID", "STATE", "SEVERITY", "MONITOR", "OPENED", "RESOLVED", "TITLE"],
                    list.iter()
                        .map(|i| {
                            vec![
                                i.id.to_string(),
                                i.state.clone(),
                                i.severity.clone(),
                                i.monitor_id.map(|m| m.to_string()).unwrap_or_else(|| "-".into()),
                                i.opened_at.clone(),
                                i.resolved_at.clone().unwrap_or_else(|| "-".into()),
                                i.title.clone(),
                            ]
                        })
                        .collect(),
                )
            }
        }
        IncidentCmd::Get { id } => {
            let i = client.get_incident(&id).await?;
            let deliveries = client.incident_deliveries(&id).await?;
            if json {
                #[derive(Serialize)]
                struct WithDeliveries<'a> {
                    #[serde(flatten)]
                    incident: &'a IncidentView,
                    deliveries: &'a [NotificationView],
                }
                to_json(&WithDeliveries { incident: &i, deliveries: &deliveries })
            } else {
                let mut out = incident_detail(&i);
                out.push_str("\ndeliveries\n");
                out.push_str(&deliveries_table(&deliveries));
                out
            }
        }
        IncidentCmd::Ack { id } => one(act(id, "ack", IncidentAction::default()).await?),
        IncidentCmd::Resolve { id } => one(act(id, "resolve", IncidentAction::default()).await?),
        IncidentCmd::Reopen { id } => one(act(id, "reopen", IncidentAction::default()).await?),
        IncidentCmd::Note { id, text } => {
            one(act(id, "notes", IncidentAction { text: Some(text), ..Default::default() }).await?)
        }
        IncidentCmd::Assign { id, assignee } => {
            one(act(id, "assign", IncidentAction { assignee, ..Default::default() }).await?)
        }
        IncidentCmd::Severity { id, severity } => {
            one(act(id, "severity", IncidentAction { severity: Some(severity), ..Default::default() }).await?)
        }
        IncidentCmd::Declare { title, severity, monitor } => {
            one(client.declare_incident(&DeclareIncident { title, severity, monitor }).await?)
        }
    })
}

async fn channel(client: &Client, cmd: ChannelCmd, json: bool) -> Result<String, ClientError> {
    let one = |c: &ChannelView| if json { to_json(c) } else { channel_detail(c) };
    Ok(match cmd {
        ChannelCmd::Add(a) => one(&client.create_channel(&a.into_body()?).await?),
        ChannelCmd::List => {
            let list = client.list_channels().await?;
            if json {
                to_json(&list)
            } else {
                table(
                    &["NAME", "KIND", "DEFAULT", "TARGET", "USED BY"],
                    list.iter()
                        .map(|c| {
                            vec![
                                c.name.clone(),
                                c.kind.clone(),
                                c.default.to_string(),
                                channel_target(c),
                                c.used_by.join(","),
                            ]
                        })
                        .collect(),
                )
            }
        }
        ChannelCmd::Get { name } => one(&client.get_channel(&name).await?),
        ChannelCmd::Rm { name } => {
            client.delete_channel(&name).await?;
            if json {
                "{}\n".to_string()
            } else {
                format!("deleted channel {name}\n")
            }
        }
        ChannelCmd::Test { name } => {
            let t = client.test_channel(&name).await?;
            if !t.ok {
                // The outcome is the answer, but a failed test is an error for scripts.
                return Err(ClientError::Api {
                    status: 502,
                    code: "channel_test_failed".into(),
                    message: format!("test through channel {name} failed after {} ms: {}", t.took_ms, t.detail),
                    field: None,
                });
            }
            if json {
                to_json(&t)
            } else {
                let status = t.status.map(|s| format!(" (HTTP {s})")).unwrap_or_default();
                format!("test through channel {name}: delivered in {} ms{status}: {}\n", t.took_ms, t.detail)
            }
        }
    })
}

fn channel_target(c: &ChannelView) -> String {
    match (&c.url, &c.host) {
        (Some(u), _) => u.clone(),
        (None, Some(h)) => format!("{h}:{} -> {}", c.port.unwrap_or_default(), c.to.join(",")),
        _ => "-".into(),
    }
}

fn channel_detail(c: &ChannelView) -> String {
    let mut out = format!("channel {}  {}{}\n", c.name, c.kind, if c.default { "  (default)" } else { "" });
    let mut field = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            out.push_str(&format!("  {k:<12} {v}\n"));
        }
    };
    field("url", c.url.clone());
    field("host", c.host.clone());
    field("port", c.port.map(|p| p.to_string()));
    field("security", c.security.clone());
    field("username", c.username.clone());
    field("password", c.password.clone());
    field("from", c.from.clone());
    field("to", (!c.to.is_empty()).then(|| c.to.join(", ")));
    field("routing_key", c.routing_key.clone());
    field("token", c.token.clone());
    field("priority", c.priority.map(|p| p.to_string()));
    field("secret", c.secret.clone());
    for (k, v) in &c.headers {
        field("header", Some(format!("{k}: {v}")));
    }
    field("subject", c.subject.clone());
    field("body", c.body.clone());
    field("used by", (!c.used_by.is_empty()).then(|| c.used_by.join(", ")));
    out
}

fn outbox_table(list: &[NotificationView]) -> String {
    table(
        &["ID", "INCIDENT", "CHANNEL", "KIND", "STATE", "ATTEMPTS", "CREATED", "LAST ERROR"],
        list.iter()
            .map(|n| {
                vec![
                    n.id.to_string(),
                    n.incident_id.to_string(),
                    n.channel.clone().unwrap_or_else(|| "-".into()),
                    n.kind.clone(),
                    n.state.clone(),
                    n.attempts.to_string(),
                    n.created_at.clone(),
                    n.deliveries
                        .iter()
                        .rev()
                        .find(|d| !d.error.is_empty())
                        .map(|d| d.error.clone())
                        .unwrap_or_default(),
                ]
            })
            .collect(),
    )
}

fn deliveries_table(list: &[NotificationView]) -> String {
    let mut rows = Vec::new();
    for n in list {
        if n.deliveries.is_empty() {
            rows.push(vec![
                "-".into(),
                n.channel.clone().unwrap_or_default(),
                n.kind.clone(),
                "-".into(),
                n.state.clone(),
                String::new(),
            ]);
        }
        for d in &n.deliveries {
            let outcome = match d.status {
                Some(s) => format!("{} (HTTP {s})", d.outcome),
                None => d.outcome.clone(),
            };
            rows.push(vec![
                d.at.clone(),
                n.channel.clone().unwrap_or_default(),
                n.kind.clone(),
                d.attempt.to_string(),
                outcome,
                d.error.clone(),
            ]);
        }
    }
    table(&["AT", "CHANNEL", "KIND", "ATTEMPT", "OUTCOME", "ERROR"], rows)
}

fn incident_detail(i: &IncidentView) -> String {
    let mut out = format!(
        "incident {}  {}  {}  {}\nopened {}{}\n",
        i.id,
        i.state,
        i.severity,
        i.title,
        i.opened_at,
        i.resolved_at.as_ref().map(|r| format!("  resolved {r}")).unwrap_or_default()
    );
    if let Some(a) = &i.assignee {
        out.push_str(&format!("assignee {a}\n"));
    }
    out.push('\n');
    out.push_str(&table(
        &["AT", "BY", "WHAT", "TEXT"],
        i.timeline.iter().map(|e| vec![e.at.clone(), e.by.clone(), e.kind.clone(), e.text.clone()]).collect(),
    ));
    out
}

fn history_table(h: &HistoryView) -> String {
    let pct = h.uptime_percent.map(|p| format!("{p:.3}%")).unwrap_or_else(|| "n/a".into());
    let ms = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
    let mut out = format!(
        "{} from {} to {} ({} buckets): uptime {pct}, {} checks, {} failures\n\n",
        h.name, h.from, h.to, h.level, h.checks, h.failures
    );
    out.push_str(&table(
        &["START", "CHECKS", "FAILURES", "P50_MS", "P95_MS", "P99_MS", "MAX_MS"],
        h.buckets
            .iter()
            .map(|b| {
                vec![
                    b.start.clone(),
                    b.checks.to_string(),
                    b.failures.to_string(),
                    ms(b.latency_p50_ms),
                    ms(b.latency_p95_ms),
                    ms(b.latency_p99_ms),
                    ms(b.latency_max_ms),
                ]
            })
            .collect(),
    ));
    out
}

fn maintenance_table(ws: &[MaintenanceView]) -> String {
    table(
        &["ID", "NAME", "ACTIVE", "MONITORS", "WHEN"],
        ws.iter()
            .map(|w| {
                let when = match (&w.start, &w.end, &w.time_zone) {
                    (Some(s), Some(e), _) => format!("{s} .. {e}"),
                    (_, _, Some(tz)) => format!(
                        "{} {} for {} ({tz})",
                        if w.weekdays.is_empty() { "daily".to_string() } else { w.weekdays.join(",") },
                        w.at.clone().unwrap_or_default(),
                        w.duration.clone().unwrap_or_default()
                    ),
                    _ => "-".into(),
                };
                let monitors = if w.all_monitors { "all".to_string() } else { w.monitors.join(",") };
                vec![w.id.to_string(), w.name.clone(), w.active.to_string(), monitors, when]
            })
            .collect(),
    )
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
