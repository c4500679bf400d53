//! Node configuration: a TOML file, then `UPTIME_*` environment variables over it.
//!
//! Every key can come from the environment: `UPTIME_NODE_ID=2`, nested keys with a
//! double underscore (`UPTIME_RAFT__HEARTBEAT_MS=100`, `UPTIME_TLS__CA=/etc/ca.pem`).
//! A value is read as a TOML value when it parses as one (numbers, booleans,
//! arrays such as `UPTIME_PEERS='[{id = 1, peer_addr = "…", api_addr = "…"}]'`),
//! and as a string otherwise.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Error;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This node's id, unique in the cluster, from 1.
    pub node_id: u64,
    /// Where the Raft log (`raft-log.redb`) and the state (`state/`) live.
    pub data_dir: PathBuf,
    /// The API port: REST, status page, metrics.
    pub api_listen: SocketAddr,
    /// The peer port: node-to-node gRPC.
    pub peer_listen: SocketAddr,
    /// The local address this node's outgoing peer connections come from;
    /// unset lets the kernel choose. Several nodes on one machine, each on
    /// its own 127.0.0.K, set it so that faults can be aimed per node pair.
    #[serde(default)]
    pub peer_source_addr: Option<std::net::IpAddr>,
    /// The bearer token of the admin API. Prefer `api_token_file` in production.
    #[serde(default)]
    pub api_token: Option<String>,
    /// A file holding the admin API token (trailing whitespace ignored).
    #[serde(default)]
    pub api_token_file: Option<PathBuf>,
    /// The initial members, the same list on every node. A node in this list
    /// bootstraps the cluster with it on first start.
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
    /// Start empty and wait to be added (`uptimectl cluster add-node`) instead of
    /// bootstrapping from `peers`.
    #[serde(default)]
    pub join: bool,
    /// Peer mutual TLS; required unless `insecure`.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// Plaintext between peers. Only for a trusted network or a test.
    #[serde(default)]
    pub insecure: bool,
    #[serde(default)]
    pub raft: RaftTimings,
    #[serde(default)]
    pub digest: DigestSettings,
    #[serde(default)]
    pub probe: ProbeSettings,
    #[serde(default)]
    pub storage: StorageSettings,
    #[serde(default)]
    pub alerts: AlertSettings,
    /// `UPTIME_*` variables that name no config key (another program's, or a
    /// typo): ignored, and named in a warning at start-up.
    #[serde(skip)]
    pub ignored_env: Vec<String>,
}

/// How this node delivers alerts when it leads, and its own safety nets
/// outside the fenced path (`[alerts]`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertSettings {
    /// First retry delay after a failed delivery; each further failure doubles
    /// it (±25 % jitter) up to `retry_max_backoff_ms`. 500 to 3600000.
    pub retry_backoff_ms: u64,
    pub retry_max_backoff_ms: u64,
    /// One send's limit inside the lease, 100 to 300000.
    pub send_timeout_ms: u64,
    /// A notice on a channel of this node's own when it is out of contact
    /// with a quorum (no replicated channel can be used then).
    pub lost_quorum: Option<LostQuorumSettings>,
    /// The leader pings this URL on an interval, so that a dead cluster is
    /// noticed from outside (a dead man's switch such as healthchecks.io).
    pub deadman: Option<DeadmanSettings>,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            retry_backoff_ms: 2_000,
            retry_max_backoff_ms: 600_000,
            send_timeout_ms: 30_000,
            lost_quorum: None,
            deadman: None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LostQuorumSettings {
    /// A webhook (JSON POST) that receives the notices.
    pub url: String,
    /// Out of contact for this long before the notice (default 30000).
    #[serde(default = "default_lost_quorum_after")]
    pub after_ms: u64,
    /// At most one "lost quorum" notice per this long (default 3600000).
    #[serde(default = "default_lost_quorum_every")]
    pub repeat_ms: u64,
}

fn default_lost_quorum_after() -> u64 {
    30_000
}

fn default_lost_quorum_every() -> u64 {
    3_600_000
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadmanSettings {
    pub url: String,
    /// Default 60000.
    #[serde(default = "default_deadman_every")]
    pub interval_ms: u64,
}

fn default_deadman_every() -> u64 {
    60_000
}

/// How this node runs checks (`[probe]`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProbeSettings {
    /// Local addresses to probe from (at most one IPv4 and one IPv6); empty lets
    /// the kernel choose.
    pub source_addrs: Vec<std::net::IpAddr>,
    /// DNS servers for resolving targets; empty uses /etc/resolv.conf.
    pub nameservers: Vec<std::net::SocketAddr>,
    /// Checks this node runs at once against one endpoint (a `host:port`, or
    /// one name through one resolver for DNS checks); more wait their turn, at
    /// most their timeout. Unset: 8. From 1 to the node-wide cap.
    pub max_in_flight_per_endpoint: Option<usize>,
    /// Longest a resolved (or failed) target name is cached, whatever its TTL:
    /// 1000 to 3600000; absent uses the prober's default (5 s).
    pub dns_cache_max_ttl_ms: Option<u64>,
}

/// File descriptors kept for everything but checks: redb files, peer and
/// API connections, the log.
const RESERVED_FDS: u64 = 256;

/// Checks at once that `open_files` descriptors leave room for: two each (a
/// connection, and a resolver socket while it resolves) after the reserve,
/// never more than `wanted`, at least one.
pub fn in_flight_for(open_files: u64, wanted: std::num::NonZeroUsize) -> std::num::NonZeroUsize {
    let room = open_files.saturating_sub(RESERVED_FDS) / 2;
    let room = usize::try_from(room).unwrap_or(usize::MAX);
    std::num::NonZeroUsize::new(room.min(wanted.get())).unwrap_or(std::num::NonZeroUsize::MIN)
}

impl ProbeSettings {
    pub fn to_config(&self) -> Result<uptime_probe::Config, Error> {
        uptime_probe::Config {
            source_addrs: self.source_addrs.clone(),
            nameservers: self.nameservers.clone(),
            dns_cache_max_ttl: self
                .dns_cache_max_ttl_ms
                .map_or(uptime_probe::DEFAULT_DNS_CACHE_MAX_TTL, std::time::Duration::from_millis),
            ..uptime_probe::Config::default()
        }
        .validate()
        .map_err(|e| Error::config(format!("probe: {e}")))
    }

    /// The probe scheduler's settings: the defaults, with this node's cap.
    pub fn scheduler_config(&self) -> Result<uptime_probe::SchedulerConfig, Error> {
        let defaults = uptime_probe::SchedulerConfig::default();
        let max = defaults.max_in_flight;
        let per_endpoint = match self.max_in_flight_per_endpoint {
            None => defaults.max_in_flight_per_endpoint,
            Some(n) => std::num::NonZeroUsize::new(n).filter(|n| *n <= max).ok_or_else(|| {
                Error::config(format!(
                    "probe: max_in_flight_per_endpoint: must be 1 to {max} (the node-wide cap), not {n}"
                ))
            })?,
        };
        uptime_probe::SchedulerConfig { max_in_flight_per_endpoint: per_endpoint, ..defaults }
            .validate()
            .map_err(|e| Error::config(format!("probe: {e}")))
    }
}

/// The redb files (`[storage]`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSettings {
    /// Page cache of `state/state.redb`. Larger speeds up history queries and
    /// snapshots of a large state; the live working set is small.
    pub state_cache_mb: u64,
    /// Page cache of `raft-log.redb`.
    pub log_cache_mb: u64,
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings {
            state_cache_mb: (uptime_raft_store::DEFAULT_STATE_CACHE >> 20) as u64,
            log_cache_mb: (uptime_raft_store::DEFAULT_LOG_CACHE >> 20) as u64,
        }
    }
}

/// How probe results travel to the leader (`[digest]`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DigestSettings {
    /// Results are folded into one digest per window.
    pub window_ms: u64,
    /// The leader proposes a tick this often, so time-driven transitions
    /// (staleness, maintenance edges, reminders) happen without digests.
    pub tick_ms: u64,
    /// Unsent digests beyond this are coalesced (a leader unreachable for long).
    pub max_backlog: usize,
}

impl Default for DigestSettings {
    fn default() -> Self {
        let d = crate::digest::DigestConfig::default();
        DigestSettings {
            window_ms: d.window.as_millis() as u64,
            tick_ms: d.tick.as_millis() as u64,
            max_backlog: d.max_backlog,
        }
    }
}

impl DigestSettings {
    pub fn to_config(&self) -> crate::digest::DigestConfig {
        crate::digest::DigestConfig {
            window: std::time::Duration::from_millis(self.window_ms),
            tick: std::time::Duration::from_millis(self.tick_ms),
            max_backlog: self.max_backlog,
            ..Default::default()
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub id: u64,
    /// `host:port` of its peer listener.
    pub peer_addr: String,
    /// Base URL of its API, e.g. `http://10.0.0.2:8080`.
    pub api_addr: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The cluster CA certificate (PEM); peers must present a certificate it signed.
    pub ca: PathBuf,
    /// This node's certificate and key (PEM), from `uptime-node certs node`.
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftTimings {
    /// Leader heartbeat; also how fast followers learn of a new commit index.
    pub heartbeat_ms: u64,
    /// A follower that hears no leader for a random time in [min, max) starts an
    /// election. openraft adds a leader lease of `max` first (a follower refuses to
    /// vote while its leader's lease holds), so failover takes about
    /// max + [min, max) plus one round trip and a commit: 650–800 ms by default.
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many entries since the last one.
    pub snapshot_every: u64,
    /// Entries kept in the log behind a snapshot, so a slightly lagging follower
    /// catches up from the log rather than a full snapshot.
    pub keep_logs: u64,
}

impl Default for RaftTimings {
    fn default() -> Self {
        RaftTimings {
            heartbeat_ms: 50,
            election_timeout_min_ms: 250,
            election_timeout_max_ms: 400,
            snapshot_every: 10_000,
            keep_logs: 1_000,
        }
    }
}

// === impl Config ===

impl Config {
    /// The single-node configuration of `uptime-node dev`.
    pub fn dev(data_dir: PathBuf, api_listen: SocketAddr, token: String) -> Config {
        let peer_listen = SocketAddr::new(api_listen.ip(), 0);
        Config {
            node_id: 1,
            data_dir,
            api_listen,
            peer_listen,
            peer_source_addr: None,
            api_token: Some(token),
            api_token_file: None,
            peers: Vec::new(),
            join: false,
            tls: None,
            insecure: true,
            raft: RaftTimings::default(),
            digest: DigestSettings::default(),
            probe: ProbeSettings::default(),
            storage: StorageSettings::default(),
            alerts: AlertSettings::default(),
            ignored_env: Vec::new(),
        }
    }

    /// Reads `path`, applies `UPTIME_*` overrides from `env`, and validates.
    /// A variable that names no config key is ignored (and listed in
    /// `ignored_env`); one whose value does not fit its key is an error that
    /// names the variable.
    pub fn load(path: &Path, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadFile { path: path.to_owned(), source })?;
        let table: toml::Table =
            toml::from_str(&text).map_err(|e| Error::config(format!("{}: {e}", path.display())))?;
        let vars: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.strip_prefix("UPTIME_").is_some_and(|p| !NOT_CONFIG_KEYS.contains(&p)))
            .collect();
        let parse = |active: &[usize]| -> Result<Result<Config, toml::de::Error>, Error> {
            let mut t = table.clone();
            apply_env(&mut t, active.iter().map(|i| vars[*i].clone()))?;
            Ok(toml::Value::Table(t).try_into())
        };
        let mut active: Vec<usize> = (0..vars.len()).collect();
        let mut ignored = Vec::new();
        let mut config = loop {
            let e = match parse(&active)? {
                Ok(config) => break config,
                Err(e) => e,
            };
            // The variables at fault: those without which this error goes away.
            let culprits: Vec<usize> = active
                .iter()
                .copied()
                .filter(|i| {
                    let rest: Vec<usize> = active.iter().copied().filter(|j| j != i).collect();
                    match parse(&rest) {
                        Ok(Ok(_)) => true,
                        Ok(Err(other)) => other.message() != e.message(),
                        Err(_) => false,
                    }
                })
                .collect();
            if e.message().starts_with("unknown field") && !culprits.is_empty() {
                ignored.extend(culprits.iter().map(|i| vars[*i].0.clone()));
                active.retain(|i| !culprits.contains(i));
                continue;
            }
            // Values carry no positions; the file's own text does, so point at the line
            // when the file alone is at fault, and at the variables otherwise.
            let names: Vec<&str> = culprits.iter().map(|i| vars[*i].0.as_str()).collect();
            return Err(match toml::from_str::<Config>(&text) {
                Err(file_err) => Error::config(format!("{}: {}", path.display(), located(&text, &file_err))),
                Ok(_) if names.is_empty() => {
                    Error::config(format!("{} with UPTIME_* overrides: {}", path.display(), e.message()))
                }
                Ok(_) => Error::config(format!("{}: {}", names.join(", "), e.message())),
            });
        };
        config.ignored_env = ignored;
        // Relative paths in the file are relative to the file.
        let base = path.parent().unwrap_or(Path::new("."));
        config.data_dir = base.join(&config.data_dir);
        config.api_token_file = config.api_token_file.map(|p| base.join(p));
        if let Some(tls) = &mut config.tls {
            tls.ca = base.join(&tls.ca);
            tls.cert = base.join(&tls.cert);
            tls.key = base.join(&tls.key);
        }
        config.validate()
    }

    pub fn validate(self) -> Result<Config, Error> {
        if self.node_id == 0 {
            return Err(Error::config("node_id: node ids start at 1"));
        }
        if self.tls.is_none() && !self.insecure {
            return Err(Error::config(
                "tls: peer mutual TLS is required; create certificates with `uptime-node certs init-ca` and \
                 `uptime-node certs node`, or set insecure = true for a trusted test network",
            ));
        }
        if self.api_token.is_some() && self.api_token_file.is_some() {
            return Err(Error::config("api_token and api_token_file: set one, not both"));
        }
        if self.api_token.is_none() && self.api_token_file.is_none() {
            return Err(Error::config("api_token_file: the admin API needs a token"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for p in &self.peers {
            if p.id == 0 || !seen.insert(p.id) {
                return Err(Error::config(format!("peers: id {} is zero or repeated", p.id)));
            }
            if !p.peer_addr.contains(':') {
                return Err(Error::config(format!("peers: peer_addr {:?} is not host:port", p.peer_addr)));
            }
            if !(p.api_addr.starts_with("http://") || p.api_addr.starts_with("https://")) {
                return Err(Error::config(format!("peers: api_addr {:?} is not an http(s):// URL", p.api_addr)));
            }
        }
        if !self.join && !self.peers.is_empty() && !seen.contains(&self.node_id) {
            return Err(Error::config(format!(
                "peers: node {} is not in the peer list; list it, or set join = true to be added later",
                self.node_id
            )));
        }
        let r = &self.raft;
        if r.heartbeat_ms == 0
            || r.election_timeout_min_ms <= r.heartbeat_ms
            || r.election_timeout_max_ms <= r.election_timeout_min_ms
        {
            return Err(Error::config(
                "raft: need 0 < heartbeat_ms < election_timeout_min_ms < election_timeout_max_ms",
            ));
        }
        self.probe.to_config()?;
        self.probe.scheduler_config()?;
        let st = &self.storage;
        if !(1..=1 << 20).contains(&st.state_cache_mb) || !(1..=1 << 20).contains(&st.log_cache_mb) {
            return Err(Error::config("storage: state_cache_mb and log_cache_mb from 1 to 1048576"));
        }
        let d = &self.digest;
        if d.window_ms < 100 || d.tick_ms < 100 || d.max_backlog < 2 {
            return Err(Error::config("digest: window_ms and tick_ms at least 100, max_backlog at least 2"));
        }
        if r.snapshot_every == 0 {
            return Err(Error::config("raft: snapshot_every must be at least 1"));
        }
        let a = &self.alerts;
        if !(500..=3_600_000).contains(&a.retry_backoff_ms)
            || !(a.retry_backoff_ms..=3_600_000).contains(&a.retry_max_backoff_ms)
        {
            return Err(Error::config("alerts: need 500 <= retry_backoff_ms <= retry_max_backoff_ms <= 3600000"));
        }
        if !(100..=300_000).contains(&a.send_timeout_ms) {
            return Err(Error::config("alerts: send_timeout_ms from 100 to 300000"));
        }
        if let Some(l) = &a.lost_quorum {
            uptime_notify::spec::check_url("url", &l.url)
                .map_err(|e| Error::config(format!("alerts.lost_quorum: {}: {}", e.field, e.message)))?;
            if l.after_ms < 1_000 || l.repeat_ms < 1_000 {
                return Err(Error::config("alerts.lost_quorum: after_ms and repeat_ms at least 1000"));
            }
        }
        if let Some(d) = &a.deadman {
            uptime_notify::spec::check_url("url", &d.url)
                .map_err(|e| Error::config(format!("alerts.deadman: {}: {}", e.field, e.message)))?;
            if d.interval_ms < 1_000 {
                return Err(Error::config("alerts.deadman: interval_ms at least 1000"));
            }
        }
        Ok(self)
    }

    /// The admin token, from the config or its file.
    pub fn token(&self) -> Result<String, Error> {
        match (&self.api_token, &self.api_token_file) {
            (Some(t), _) => Ok(t.clone()),
            (None, Some(path)) => {
                let t =
                    std::fs::read_to_string(path).map_err(|source| Error::ReadFile { path: path.clone(), source })?;
                let t = t.trim().to_string();
                if t.is_empty() {
                    return Err(Error::config(format!("api_token_file: {} is empty", path.display())));
                }
                Ok(t)
            }
            (None, None) => Err(Error::config("api_token_file: the admin API needs a token")),
        }
    }
}

/// "line N (`text`): message" for a TOML error, on one line.
fn located(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let line_no = text[..span.start.min(text.len())].matches('\n').count() + 1;
            let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
            format!("line {line_no} ({line}): {}", e.message())
        }
        None => e.message().to_string(),
    }
}

/// `UPTIME_*` variables that are not config keys: the config file's path and the log filter.
const NOT_CONFIG_KEYS: [&str; 2] = ["CONFIG", "LOG"];

fn apply_env(table: &mut toml::Table, env: impl IntoIterator<Item = (String, String)>) -> Result<(), Error> {
    // Callers pass only `UPTIME_*` config variables; the checks below stay for
    // any other caller.
    for (key, value) in env {
        let Some(path) = key.strip_prefix("UPTIME_") else {
            continue;
        };
        // Read by the binary itself, not config keys.
        if NOT_CONFIG_KEYS.contains(&path) {
            continue;
        }
        let parts: Vec<String> = path.split("__").map(str::to_lowercase).collect();
        if parts.iter().any(String::is_empty) {
            return Err(Error::config(format!("{key}: malformed variable name")));
        }
        let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.clone()));
        let mut cursor = &mut *table;
        for part in &parts[..parts.len() - 1] {
            let entry = cursor.entry(part.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            cursor = entry.as_table_mut().ok_or_else(|| Error::config(format!("{key}: {part} is not a table")))?;
        }
        cursor.insert(parts[parts.len() - 1].clone(), parsed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("node.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    const BASE: &str = r#"
node_id = 1
data_dir = "data"
api_listen = "127.0.0.1:8080"
peer_listen = "127.0.0.1:7080"
api_token = "t0ken"
insecure = true
peers = [{ id = 1, peer_addr = "127.0.0.1:7080", api_addr = "http://127.0.0.1:8080" }]
"#;

    /// Issue 10, point 23: an unrelated `UPTIME_*` variable stopped the node
    /// with "unknown field", naming neither the variable nor the fix. It is
    /// ignored and listed; a bad value for a real key names its variable.
    #[test]
    fn unknown_uptime_variables_are_ignored_and_bad_values_name_their_variable() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), BASE);
        let var = |k: &str, v: &str| (k.to_string(), v.to_string());
        let c = Config::load(
            &path,
            [
                var("UPTIME_KUMA_URL", "http://x"),
                var("UPTIME_RAFT__HEARTBEAT_MS", "60"),
                var("UPTIME_RAFT__COLOUR", "red"),
            ],
        )
        .unwrap();
        assert_eq!(c.raft.heartbeat_ms, 60);
        assert_eq!(c.ignored_env, vec!["UPTIME_KUMA_URL".to_string(), "UPTIME_RAFT__COLOUR".to_string()]);

        for (key, value) in [("UPTIME_RAFT__HEARTBEAT_MS", "soon"), ("UPTIME_NODE_ID", "\"two\"")] {
            let e = Config::load(&path, [var("UPTIME_KUMA_URL", "x"), var(key, value)]).unwrap_err().to_string();
            assert!(e.contains(key), "{key}: {e}");
            assert!(!e.contains("UPTIME_KUMA_URL"), "{e}");
        }
    }

    #[test]
    fn env_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), BASE);
        let env = [
            ("UPTIME_NODE_ID".to_string(), "2".to_string()),
            ("UPTIME_JOIN".to_string(), "true".to_string()),
            ("UPTIME_RAFT__HEARTBEAT_MS".to_string(), "50".to_string()),
            ("UPTIME_STORAGE__STATE_CACHE_MB".to_string(), "512".to_string()),
            ("UPTIME_API_TOKEN".to_string(), "from env".to_string()),
            ("OTHER".to_string(), "x".to_string()),
        ];
        let c = Config::load(&path, env).unwrap();
        assert_eq!(c.node_id, 2);
        assert!(c.join);
        assert_eq!(c.raft.heartbeat_ms, 50);
        assert_eq!((c.storage.state_cache_mb, c.storage.log_cache_mb), (512, 64));
        assert_eq!(c.api_token.as_deref(), Some("from env"));
        assert_eq!(c.data_dir, dir.path().join("data"));
    }

    /// Issue 10, point 11: the per-endpoint cap of the probe scheduler is a
    /// node setting (it was fixed at 8).
    /// Issue 10, point 5: the node ran up to 1 024 checks at once whatever its
    /// open-file limit (1 024 by default on Linux), so under load checks failed
    /// with EMFILE, reported as the targets being down.
    #[test]
    fn the_in_flight_cap_fits_the_open_file_limit() {
        let n = |v: usize| std::num::NonZeroUsize::new(v).unwrap();
        for (open_files, wanted, cap) in [
            (1024, 1024, 384),
            (65_536, 1024, 1024),
            (300, 1024, 22),
            (256, 1024, 1),
            (0, 1024, 1),
            (u64::MAX, 1024, 1024),
            (4096, 10, 10),
        ] {
            assert_eq!(in_flight_for(open_files, n(wanted)), n(cap), "{open_files} open files");
        }
    }

    #[test]
    fn the_per_endpoint_cap_is_configurable() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), &format!("{BASE}\n[probe]\nmax_in_flight_per_endpoint = 32"));
        let c = Config::load(&path, []).unwrap();
        let env = [("UPTIME_PROBE__MAX_IN_FLIGHT_PER_ENDPOINT".to_string(), "3".to_string())];
        let from_env = Config::load(&path, env).unwrap();
        let cap = |c: &Config| c.probe.scheduler_config().unwrap().max_in_flight_per_endpoint.get();
        assert_eq!((cap(&c), cap(&from_env)), (32, 3));
        let unset = Config::load(&write(dir.path(), BASE), []).unwrap();
        assert_eq!(cap(&unset), uptime_probe::SchedulerConfig::default().max_in_flight_per_endpoint.get());
    }

    #[test]
    fn bad_configs_say_why() {
        let dir = tempfile::tempdir().unwrap();
        for (edit, needle) in [
            (BASE.replace("insecure = true", ""), "tls"),
            (BASE.replace("node_id = 1", "node_id = 3"), "not in the peer list"),
            (BASE.replace("api_token = \"t0ken\"", ""), "token"),
            (format!("{BASE}\nbogus = 1"), "bogus"),
            (format!("{BASE}\n[storage]\nstate_cache_mb = 0"), "state_cache_mb"),
            (format!("{BASE}\n[probe]\nmax_in_flight_per_endpoint = 0"), "max_in_flight_per_endpoint: must be 1 to"),
            (
                format!("{BASE}\n[probe]\nmax_in_flight_per_endpoint = 100000"),
                "max_in_flight_per_endpoint: must be 1 to",
            ),
            (BASE.replace("127.0.0.1:8080\"\npeer", "nope\"\npeer"), "api_listen"),
        ] {
            let path = write(dir.path(), &edit);
            let err = Config::load(&path, []).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle:?} not in {err:?}");
        }
    }
}
