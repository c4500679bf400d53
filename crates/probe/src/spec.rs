//! Check specifications: what a monitor asks every node to probe.
//!
//! Every type here is stored in the replicated log through bincode's serde mode,
//! which reads fields in order and cannot skip. So: plain structs and externally
//! tagged enums only, no `flatten`, no `untagged`/internal tags, no `skip*`.
//! `#[serde(default)]` is fine (it only fills fields a self-describing format such
//! as JSON leaves out) and lets the API accept partial specs. Durations are `u64`
//! milliseconds with an `_ms` suffix, like the monitor's own interval.

use serde::{Deserialize, Serialize};

mod dns;
mod http;
mod icmp;
mod tcp;
mod tls;

pub use dns::{DnsRecordType, DnsSpec};
pub(crate) use http::{compile_regex, parse_url, resolve_location, Target};
pub use http::{Header, HttpAuth, HttpSpec, StatusRange};
pub use icmp::IcmpSpec;
pub use tcp::TcpSpec;
pub use tls::TlsSpec;

/// A check that a spec describes, with its target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckSpec {
    Http(HttpSpec),
    Tcp(TcpSpec),
    Icmp(IcmpSpec),
    Dns(DnsSpec),
    Tls(TlsSpec),
}

/// A spec that cannot be run, naming the field at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    /// The offending field as the API spells it (`url`, `port`, `expect_status`…),
    /// so a REST 400 can point at it.
    pub field: &'static str,
    pub message: String,
}

impl SpecError {
    pub(crate) fn new(field: &'static str, message: impl Into<String>) -> Self {
        SpecError { field, message: message.into() }
    }
}

/// What a secret is replaced with by [`CheckSpec::redacted`].
pub const REDACTED: &str = "<redacted>";

// === impl CheckSpec ===

impl CheckSpec {
    /// Builds a spec from the short form used by `uptimectl monitor add KIND NAME TARGET`.
    /// Every other field takes its default.
    pub fn from_target(kind: &str, target: &str) -> Result<CheckSpec, SpecError> {
        let spec = match kind {
            "http" => CheckSpec::Http(HttpSpec { url: target.to_string(), ..HttpSpec::default() }),
            "tcp" => {
                let (host, port) = split_host_port(target, None)?;
                CheckSpec::Tcp(TcpSpec { host, port, ..TcpSpec::default() })
            }
            "icmp" => CheckSpec::Icmp(IcmpSpec { host: target.to_string(), ..IcmpSpec::default() }),
            "dns" => CheckSpec::Dns(DnsSpec { name: target.to_string(), ..DnsSpec::default() }),
            "tls" => {
                let (host, port) = split_host_port(target, Some(443))?;
                CheckSpec::Tls(TlsSpec { host, port, ..TlsSpec::default() })
            }
            other => {
                return Err(SpecError::new(
                    "kind",
                    format!("unknown check kind {other:?}; expected http, tcp, icmp, dns or tls"),
                ))
            }
        };
        spec.validate()?;
        Ok(spec)
    }

    pub fn kind(&self) -> &'static str {
        match self {
            CheckSpec::Http(_) => "http",
            CheckSpec::Tcp(_) => "tcp",
            CheckSpec::Icmp(_) => "icmp",
            CheckSpec::Dns(_) => "dns",
            CheckSpec::Tls(_) => "tls",
        }
    }

    /// The short form of what is probed, the inverse of [`CheckSpec::from_target`].
    pub fn target(&self) -> String {
        match self {
            CheckSpec::Http(s) => s.url.clone(),
            CheckSpec::Tcp(s) => join_host_port(&s.host, s.port),
            CheckSpec::Icmp(s) => s.host.clone(),
            CheckSpec::Dns(s) => s.name.clone(),
            CheckSpec::Tls(s) => join_host_port(&s.host, s.port),
        }
    }

    pub fn validate(&self) -> Result<(), SpecError> {
        match self {
            CheckSpec::Http(s) => s.validate(),
            CheckSpec::Tcp(s) => s.validate(),
            CheckSpec::Icmp(s) => s.validate(),
            CheckSpec::Dns(s) => s.validate(),
            CheckSpec::Tls(s) => s.validate(),
        }
    }

    /// The same spec with credentials replaced by [`REDACTED`], for showing to
    /// people: the log keeps the real values because every node needs them.
    pub fn redacted(&self) -> CheckSpec {
        match self {
            CheckSpec::Http(s) => CheckSpec::Http(s.redacted()),
            other => other.clone(),
        }
    }

    /// The `(host, port)` a check connects to, which the scheduler caps in-flight
    /// checks by, so one slow server cannot take every slot. ICMP has no port
    /// (0); a DNS check is keyed by the server it asks.
    pub fn endpoint(&self) -> (String, u16) {
        match self {
            CheckSpec::Http(s) => s.endpoint().unwrap_or_else(|| (s.url.clone(), 0)),
            CheckSpec::Tcp(s) => (s.host.to_ascii_lowercase(), s.port),
            CheckSpec::Icmp(s) => (s.host.to_ascii_lowercase(), 0),
            CheckSpec::Dns(s) => match s.server.as_deref().map(|srv| split_host_port(srv, Some(53))) {
                Some(Ok((host, port))) => (host, port),
                _ => ("system-resolver".to_string(), 53),
            },
            CheckSpec::Tls(s) => (s.host.to_ascii_lowercase(), s.port),
        }
    }
}

// === validation helpers ===

pub(crate) fn check_host(field: &'static str, host: &str) -> Result<(), SpecError> {
    if host.is_empty() {
        return Err(SpecError::new(field, "must not be empty"));
    }
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(SpecError::new(field, format!("{host:?} is not a host name or IP address")));
    }
    Ok(())
}

pub(crate) fn check_port(field: &'static str, port: u16) -> Result<(), SpecError> {
    if port == 0 {
        return Err(SpecError::new(field, "port 0 cannot be probed"));
    }
    Ok(())
}

/// Splits `host:port`, `[v6]:port` or, with a default port, a bare host or bare IPv6.
pub(crate) fn split_host_port(target: &str, default_port: Option<u16>) -> Result<(String, u16), SpecError> {
    let (host, port) = if let Some(rest) = target.strip_prefix('[') {
        let (host, after) =
            rest.split_once(']').ok_or_else(|| SpecError::new("target", format!("{target:?}: unclosed '['")))?;
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None => return Err(SpecError::new("target", format!("{target:?}: expected ':' after ']'"))),
            },
        }
    } else {
        match target.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            _ => (target, None),
        }
    };
    let port = match (port, default_port) {
        (Some(p), _) => p.parse::<u16>().map_err(|_| SpecError::new("port", format!("{p:?} is not a port number")))?,
        (None, Some(d)) => d,
        (None, None) => return Err(SpecError::new("target", format!("{target:?} needs a port (host:port)"))),
    };
    check_host("host", host)?;
    check_port("port", port)?;
    Ok((host.to_string(), port))
}

pub(crate) fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_forms_round_trip() {
        for (kind, target) in [
            ("http", "https://example.test/x?y=1"),
            ("tcp", "127.0.0.1:22"),
            ("tcp", "[::1]:5432"),
            ("icmp", "127.0.0.1"),
            ("icmp", "::1"),
            ("dns", "example.test"),
            ("tls", "example.test:8443"),
        ] {
            let spec = CheckSpec::from_target(kind, target).unwrap();
            assert_eq!(spec.kind(), kind);
            assert_eq!(spec.target(), target);
        }
        assert_eq!(CheckSpec::from_target("tls", "example.test").unwrap().target(), "example.test:443");
        assert_eq!(CheckSpec::from_target("tls", "[::1]").unwrap().target(), "[::1]:443");
    }

    #[test]
    fn bad_targets_name_the_field() {
        for (kind, target, field) in [
            ("http", "ftp://x", "url"),
            ("http", "http://", "url"),
            ("http", "http://a b/", "url"),
            ("tcp", "localhost", "target"),
            ("tcp", "localhost:99999", "port"),
            ("tcp", "localhost:0", "port"),
            ("tcp", "[::1", "target"),
            ("tcp", "bad host:80", "host"),
            ("icmp", "", "host"),
            ("icmp", "a..b", "host"),
            ("dns", "-x.test", "name"),
            ("tls", "x.test:", "port"),
            ("smtp", "x", "kind"),
        ] {
            let err = CheckSpec::from_target(kind, target).unwrap_err();
            assert_eq!(err.field, field, "{kind} {target}: {err}");
        }
    }

    #[test]
    fn from_target_never_panics_on_odd_input() {
        let odd =
            ["", ":", "[]", "[]:", "[:]:1", "::::", "\u{0}", "http://[", "https://:80", "é.test", &"a".repeat(5000)];
        for kind in ["http", "tcp", "icmp", "dns", "tls"] {
            for t in odd {
                let _ = CheckSpec::from_target(kind, t);
            }
        }
    }

    #[test]
    fn endpoints_key_the_scheduler() {
        let ep = |k, t| CheckSpec::from_target(k, t).unwrap().endpoint();
        assert_eq!(ep("http", "http://Example.test/x"), ("example.test".into(), 80));
        assert_eq!(ep("http", "https://example.test:8443"), ("example.test".into(), 8443));
        assert_eq!(ep("http", "https://[::1]/"), ("::1".into(), 443));
        assert_eq!(ep("tcp", "10.0.0.1:22"), ("10.0.0.1".into(), 22));
        assert_eq!(ep("icmp", "10.0.0.1"), ("10.0.0.1".into(), 0));
        assert_eq!(ep("dns", "example.test"), ("system-resolver".into(), 53));
    }

    #[test]
    fn redaction_hides_credentials_only() {
        let spec = CheckSpec::Http(HttpSpec {
            url: "http://x.test/".into(),
            auth: HttpAuth::Bearer { token: "s3cret".into() },
            headers: vec![Header { name: "Authorization".into(), value: "Basic abc".into() }],
            ..HttpSpec::default()
        });
        let shown = format!("{:?}", spec.redacted());
        assert!(!shown.contains("s3cret") && !shown.contains("Basic abc"), "{shown}");
        assert!(shown.contains("x.test"));
    }

    /// The log stores specs through bincode's serde mode, which cannot read
    /// internally tagged enums or skipped fields: every kind must survive it.
    #[test]
    fn every_kind_survives_bincode_and_json() {
        let specs = vec![
            CheckSpec::Http(HttpSpec {
                url: "https://x.test/health".into(),
                method: "POST".into(),
                headers: vec![Header { name: "X-A".into(), value: "1".into() }],
                body: "{}".into(),
                expect_status: vec![StatusRange::exact(200), StatusRange { min: 300, max: 308 }],
                body_contains: Some("ok".into()),
                body_regex: Some("^o+k$".into()),
                follow_redirects: false,
                max_redirects: 3,
                verify_tls: false,
                auth: HttpAuth::Basic { username: "u".into(), password: "p".into() },
                timeout_ms: Some(2_000),
            }),
            CheckSpec::Tcp(TcpSpec {
                host: "x.test".into(),
                port: 25,
                send: Some("EHLO x\r\n".into()),
                expect_banner: Some("250".into()),
            }),
            CheckSpec::Icmp(IcmpSpec {
                host: "::1".into(),
                count: 5,
                interval_ms: 100,
                max_loss_percent: 20,
                max_rtt_ms: Some(50),
            }),
            CheckSpec::Dns(DnsSpec {
                name: "x.test".into(),
                record_type: DnsRecordType::Txt,
                server: Some("127.0.0.1:5353".into()),
                expect: vec!["v=spf1 -all".into()],
            }),
            CheckSpec::Tls(TlsSpec {
                host: "x.test".into(),
                port: 443,
                sni: Some("y.test".into()),
                warn_days: 20,
                critical_days: 5,
                verify_chain: false,
            }),
        ];
        let cfg = bincode::config::standard();
        for spec in specs {
            spec.validate().unwrap();
            let bytes = bincode::serde::encode_to_vec(&spec, cfg).unwrap();
            let (back, _): (CheckSpec, usize) = bincode::serde::decode_from_slice(&bytes, cfg).unwrap();
            assert_eq!(back, spec);
            let json = serde_json::to_string(&spec).unwrap();
            assert_eq!(serde_json::from_str::<CheckSpec>(&json).unwrap(), spec);
        }
    }

    #[test]
    fn json_specs_may_leave_out_defaults() {
        let spec: CheckSpec = serde_json::from_str(r#"{"Http":{"url":"http://x.test/"}}"#).unwrap();
        let CheckSpec::Http(http) = &spec else { panic!("{spec:?}") };
        assert_eq!(http.method, "GET");
        assert!(http.follow_redirects && http.verify_tls);
        spec.validate().unwrap();
        let spec: CheckSpec = serde_json::from_str(r#"{"Tls":{"host":"x.test"}}"#).unwrap();
        assert_eq!(spec.target(), "x.test:443");
    }
}
