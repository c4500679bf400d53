//! The check executors behind one [`Prober`]: it owns what checks share (the
//! caching resolver, TLS client configurations, ICMP sockets) and runs one
//! check at a time per call, many calls at once.
//!
//! Timeouts: every check has a total deadline (the monitor's timeout, or a
//! spec's tighter one). Each phase (DNS, connect, TLS, first byte, body) may
//! use whatever is left of it, and runs under that deadline itself, so a
//! failure names the phase that ran out. No fixed per-phase cap: it would
//! override the monitor's timeout. The whole check also runs under the total
//! deadline, so no check outlives its timeout whatever a phase does.
//!
//! DNS queries are resent every [`DNS_RETRANSMIT`] (a lost UDP datagram is not
//! an outage), for as long as the check's deadline allows: the resolver's
//! per-query timeout never ends a lookup sooner.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::lookup::Lookup;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::RecordType;
use hickory_resolver::TokioResolver;
use rustls::pki_types::CertificateDer;
use tokio::time::Instant;

use crate::{CheckSpec, Config, Error, ErrorKind, Outcome, Phase};

mod connect;
mod dns;
mod http;
mod icmp;
mod tcp;
mod tls;

/// Wall-clock time, injected so certificate-expiry tests need no real waiting.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Runs checks. Cheap to clone; clones share caches and sockets.
#[derive(Clone)]
pub struct Prober {
    inner: Arc<Inner>,
}

/// Builds a [`Prober`] with trust anchors or a clock beyond the [`Config`].
pub struct ProberBuilder {
    config: Config,
    roots: Vec<CertificateDer<'static>>,
    clock: Option<Clock>,
}

pub(crate) struct Inner {
    config: Config,
    /// Resolves targets' names; its cache honours each record's TTL up to
    /// `Config::dns_cache_max_ttl`.
    resolver: TokioResolver,
    tls: tls::Clients,
    /// DNS checks must reach the server every time, so they use uncached
    /// resolvers, one per server asked (`None`: the configured nameservers).
    dns_check_resolvers: Mutex<HashMap<Option<std::net::SocketAddr>, TokioResolver>>,
    icmp: icmp::Sockets,
    /// Compiled `body_regex`es, so a monitor does not recompile every interval.
    regexes: Mutex<HashMap<String, Arc<regex::bytes::Regex>>>,
    clock: Clock,
}

/// How long one DNS query waits for its answer before it is sent again, within
/// the check's deadline; the resolver's own retries (`attempts`) are off, so
/// [`lookup`] alone decides when a lookup gives up.
pub(crate) const DNS_RETRANSMIT: Duration = Duration::from_secs(2);

/// Most compiled regexes kept; past it the cache starts over (a fleet with
/// more distinct patterns than this is unlikely, and recompiling is correct).
const REGEX_CACHE: usize = 4096;

// === impl Prober ===

impl Prober {
    pub fn new(config: Config) -> Result<Prober, Error> {
        Prober::builder(config).build()
    }

    pub fn builder(config: Config) -> ProberBuilder {
        ProberBuilder { config, roots: Vec::new(), clock: None }
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Runs one check within `timeout` (or the spec's own tighter timeout).
    ///
    /// `Ok` holds what the check found, down or not; `Err` means this node could
    /// not run the check at all (an invalid spec, no ICMP socket) and knows
    /// nothing about the target.
    pub async fn check(&self, spec: &CheckSpec, timeout: Duration) -> Result<Outcome, Error> {
        let timeout = match spec {
            CheckSpec::Http(s) => s.timeout_ms.map_or(timeout, |ms| timeout.min(Duration::from_millis(ms))),
            _ => timeout,
        };
        let start = Instant::now();
        let deadline = start + timeout;
        let inner = &*self.inner;
        let run = async {
            match spec {
                CheckSpec::Http(s) => http::run(inner, s, start, deadline).await,
                CheckSpec::Tcp(s) => tcp::run(inner, s, start, deadline).await,
                CheckSpec::Tls(s) => tls::run(inner, s, start, deadline).await,
                CheckSpec::Dns(s) => dns::run(inner, s, start, deadline).await,
                CheckSpec::Icmp(s) => icmp::run(inner, s, start, deadline).await,
            }
        };
        // The backstop: executors attribute timeouts to phases themselves, but
        // whatever they do, the check ends at its deadline.
        match tokio::time::timeout_at(deadline, run).await {
            Ok(result) => result,
            Err(_) => Ok(Outcome::down(
                ErrorKind::Timeout,
                Some(Phase::Total),
                format!("no result within {timeout:?}"),
                start.elapsed(),
            )),
        }
    }
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

// === impl ProberBuilder ===

impl ProberBuilder {
    /// Trusts `cert` as a root, in addition to the configured roots.
    pub fn trust(mut self, cert: CertificateDer<'static>) -> Self {
        self.roots.push(cert);
        self
    }

    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    pub fn build(self) -> Result<Prober, Error> {
        let config = self.config.validate()?;
        let resolver = build_resolver(&config, None, Cache::Targets)?;
        let tls = tls::Clients::new(&config, self.roots)?;
        Ok(Prober {
            inner: Arc::new(Inner {
                resolver,
                tls,
                dns_check_resolvers: Mutex::new(HashMap::new()),
                icmp: icmp::Sockets::default(),
                regexes: Mutex::new(HashMap::new()),
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemTime::now)),
                config,
            }),
        })
    }
}

// === impl Inner ===

impl Inner {
    /// An uncached resolver asking `server` (or the configured nameservers).
    fn dns_check_resolver(&self, server: Option<std::net::SocketAddr>) -> Result<TokioResolver, Error> {
        let mut map = self.dns_check_resolvers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = map.get(&server) {
            return Ok(r.clone());
        }
        let r = build_resolver(&self.config, server, Cache::Off)?;
        // Servers come from specs; bound the map so churn cannot grow it forever.
        if map.len() >= 1024 {
            map.clear();
        }
        map.insert(server, r.clone());
        Ok(r)
    }

    fn regex(&self, pattern: &str) -> Result<Arc<regex::bytes::Regex>, Error> {
        let mut map = self.regexes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(re) = map.get(pattern) {
            return Ok(re.clone());
        }
        let re = Arc::new(
            crate::spec::compile_regex(pattern)
                .map_err(|e| crate::SpecError { field: "body_regex", message: e.to_string() })?,
        );
        if map.len() >= REGEX_CACHE {
            map.clear();
        }
        map.insert(pattern.to_string(), re.clone());
        Ok(re)
    }

    fn now(&self) -> SystemTime {
        (self.clock)()
    }
}

/// Which of the two kinds of resolver the prober builds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cache {
    /// Resolves targets' names as the machine would: hosts file, then a
    /// cache whose lifetimes (positive and negative) are capped.
    Targets,
    /// A DNS check's: every query goes to the server (no cache, no hosts file).
    /// hickory still answers `localhost`, `*.localhost`, `*.invalid`,
    /// `*.onion` and the loopback reverse zones itself (RFC 6761), so
    /// `DnsSpec::validate` refuses those names.
    Off,
}

/// A resolver on `server`, else on the configured nameservers, else on the
/// system's configuration.
fn build_resolver(config: &Config, server: Option<std::net::SocketAddr>, cache: Cache) -> Result<TokioResolver, Error> {
    let servers: Vec<std::net::SocketAddr> = match server {
        Some(s) => vec![s],
        None => config.nameservers.clone(),
    };
    let mut builder = if servers.is_empty() {
        TokioResolver::builder_tokio().map_err(|e| Error::ResolverConfig { message: e.to_string() })?
    } else {
        let name_servers = servers
            .iter()
            .map(|addr| {
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                for c in &mut ns.connections {
                    c.port = addr.port();
                }
                ns
            })
            .collect();
        TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(name_servers),
            TokioRuntimeProvider::default(),
        )
    };
    let opts = builder.options_mut();
    match cache {
        Cache::Targets => {
            opts.cache_size = config.dns_cache_size;
            opts.positive_max_ttl = Some(config.dns_cache_max_ttl);
            opts.negative_max_ttl = Some(config.dns_cache_max_ttl);
        }
        Cache::Off => {
            opts.cache_size = 0;
            opts.use_hosts_file = ResolveHosts::Never;
        }
    }
    opts.timeout = DNS_RETRANSMIT;
    opts.attempts = 0;
    builder.build().map_err(|e| Error::ResolverConfig { message: e.to_string() })
}

/// Looks `name` up, sending the query again each time one times out, until an
/// answer, a definite error, or `deadline`. `None`: the deadline passed with no
/// answer.
pub(crate) async fn lookup(
    resolver: &TokioResolver,
    name: &str,
    record_type: RecordType,
    deadline: Instant,
) -> Option<Result<Lookup, NetError>> {
    loop {
        match tokio::time::timeout_at(deadline, resolver.lookup(name, record_type)).await {
            Err(_) => return None,
            Ok(Err(NetError::Timeout)) if Instant::now() < deadline => continue,
            Ok(Err(NetError::Timeout)) => return None,
            Ok(result) => return Some(result),
        }
    }
}
