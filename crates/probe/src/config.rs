use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::Error;

/// How the prober runs checks. Per-check limits (the total timeout) come with
/// each check; these are the node-wide ones.
///
/// There are no per-phase timeouts: the DNS, connect and TLS phases each may
/// use whatever is left of the check's own deadline (the monitor's timeout),
/// and a phase that runs it out is named in the outcome. A fixed node-wide cap
/// would override the monitor's timeout (a 6 s handshake under a 20 s timeout
/// would be DOWN at 5 s).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Most response-body bytes read (decoded) for a body match; a huge body
    /// never fills memory. A `body_contains` not found in the first
    /// `max_body_bytes` fails the check; a `body_regex` over a longer body is
    /// not judged at all (`Error::BodyTooLong`).
    pub max_body_bytes: usize,
    /// Most bytes read while looking for a TCP banner.
    pub max_banner_bytes: usize,
    /// `User-Agent` of HTTP checks, unless a spec sets its own.
    pub user_agent: String,
    /// DNS servers for resolving targets; empty uses the system's
    /// (`/etc/resolv.conf`). DNS *checks* name their own server or use these.
    pub nameservers: Vec<SocketAddr>,
    /// Names kept in the resolver's cache of targets' names, so 100k monitors
    /// on a few hundred hosts do not mean 100k lookups per interval.
    pub dns_cache_size: u64,
    /// Longest any answer, positive or negative, stays in that cache, whatever
    /// its TTL (or its SOA minimum) says. A zone may ask for a day; a check
    /// must see a restored record come back, or a deleted one go, within a few
    /// seconds, so this is kept well below any check interval. 1 s to 1 h.
    pub dns_cache_max_ttl: Duration,
    /// Trust Mozilla's root certificates (compiled in, so every node trusts the
    /// same set whatever its OS).
    pub webpki_roots: bool,
    /// PEM files of further trusted CA certificates (a private CA).
    pub extra_ca_files: Vec<PathBuf>,
    /// Payload bytes in each ICMP echo request (56 is what `ping` sends).
    pub icmp_payload_bytes: usize,
    /// Local addresses TCP checks (http, tcp, tls) connect from, per family; none
    /// lets the kernel choose. For multi-homed hosts that must probe from one
    /// interface; also how tests on one machine tell nodes apart (127.0.0.K).
    pub source_addrs: Vec<std::net::IpAddr>,
}

/// The default of [`Config::dns_cache_max_ttl`]: one lookup per host every
/// 5 s at most, and a change in DNS seen within 5 s.
pub const DEFAULT_DNS_CACHE_MAX_TTL: Duration = Duration::from_secs(5);

impl Default for Config {
    fn default() -> Self {
        Config {
            max_body_bytes: 1 << 20,
            max_banner_bytes: 4096,
            user_agent: concat!("uptime-cluster/", env!("CARGO_PKG_VERSION")).to_string(),
            nameservers: Vec::new(),
            dns_cache_size: 10_000,
            dns_cache_max_ttl: DEFAULT_DNS_CACHE_MAX_TTL,
            webpki_roots: true,
            extra_ca_files: Vec::new(),
            icmp_payload_bytes: 56,
            source_addrs: Vec::new(),
        }
    }
}

impl Config {
    pub fn validate(self) -> Result<Config, Error> {
        let bad = |field, message: &str| Err(Error::Config { field, message: message.to_string() });
        if !(1..=(64 << 20)).contains(&self.max_body_bytes) {
            return bad("max_body_bytes", "must be 1 byte to 64 MiB");
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&self.dns_cache_max_ttl) {
            return bad("dns_cache_max_ttl", "must be 1 s to 1 h");
        }
        if !(1..=(1 << 20)).contains(&self.max_banner_bytes) {
            return bad("max_banner_bytes", "must be 1 byte to 1 MiB");
        }
        if http::HeaderValue::from_str(&self.user_agent).is_err() {
            return bad("user_agent", "is not a valid header value");
        }
        if self.source_addrs.iter().filter(|a| a.is_ipv4()).count() > 1
            || self.source_addrs.iter().filter(|a| a.is_ipv6()).count() > 1
        {
            return bad("source_addrs", "at most one IPv4 and one IPv6 address");
        }
        if self.icmp_payload_bytes > 1400 {
            return bad("icmp_payload_bytes", "at most 1400 (one unfragmented packet)");
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_bad_fields_are_named() {
        Config::default().validate().unwrap();
        for (cfg, field) in [
            (Config { max_body_bytes: 0, ..Config::default() }, "max_body_bytes"),
            (Config { user_agent: "a\nb".into(), ..Config::default() }, "user_agent"),
            (Config { icmp_payload_bytes: 9000, ..Config::default() }, "icmp_payload_bytes"),
        ] {
            match cfg.validate() {
                Err(Error::Config { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }
}
