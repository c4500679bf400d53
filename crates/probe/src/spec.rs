use serde::{Deserialize, Serialize};

/// A check that a spec describes, with its target. Kept free of serde features a
/// compact binary codec cannot read (no internal tags, no flattening), because the
/// replicated log stores it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckSpec {
    Http(HttpSpec),
    Tcp(TcpSpec),
    Icmp(IcmpSpec),
    Dns(DnsSpec),
    Tls(TlsSpec),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpSpec {
    /// Absolute `http` or `https` URL.
    pub url: String,
    /// Request method, upper case.
    pub method: String,
    /// Status codes that count as up; empty means any 2xx.
    pub expect_status: Vec<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpSpec {
    pub host: String,
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IcmpSpec {
    pub host: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsSpec {
    pub name: String,
    /// One of A, AAAA, CNAME, MX, TXT, NS.
    pub record_type: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsSpec {
    pub host: String,
    pub port: u16,
}

/// A spec that cannot be run, naming the field at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    pub field: &'static str,
    pub message: String,
}

impl SpecError {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        SpecError { field, message: message.into() }
    }
}

const DNS_RECORD_TYPES: [&str; 6] = ["A", "AAAA", "CNAME", "MX", "TXT", "NS"];

// === impl CheckSpec ===

impl CheckSpec {
    /// Builds a spec from the short form used by `uptimectl monitor add KIND NAME TARGET`.
    pub fn from_target(kind: &str, target: &str) -> Result<CheckSpec, SpecError> {
        let spec = match kind {
            "http" => CheckSpec::Http(HttpSpec {
                url: target.to_string(),
                method: "GET".to_string(),
                expect_status: Vec::new(),
            }),
            "tcp" => {
                let (host, port) = split_host_port(target, None)?;
                CheckSpec::Tcp(TcpSpec { host, port })
            }
            "icmp" => CheckSpec::Icmp(IcmpSpec { host: target.to_string() }),
            "dns" => CheckSpec::Dns(DnsSpec { name: target.to_string(), record_type: "A".to_string() }),
            "tls" => {
                let (host, port) = split_host_port(target, Some(443))?;
                CheckSpec::Tls(TlsSpec { host, port })
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
            CheckSpec::Http(s) => {
                let rest =
                    s.url.strip_prefix("http://").or_else(|| s.url.strip_prefix("https://")).ok_or_else(|| {
                        SpecError::new("url", format!("{:?} is not an http:// or https:// URL", s.url))
                    })?;
                let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
                if authority.is_empty() || authority.chars().any(char::is_whitespace) {
                    return Err(SpecError::new("url", format!("{:?} has no host", s.url)));
                }
                if s.method.is_empty() || !s.method.chars().all(|c| c.is_ascii_uppercase()) {
                    return Err(SpecError::new("method", format!("{:?} is not an HTTP method", s.method)));
                }
                if let Some(bad) = s.expect_status.iter().find(|c| !(100..=599).contains(*c)) {
                    return Err(SpecError::new("expect_status", format!("{bad} is not an HTTP status code")));
                }
            }
            CheckSpec::Tcp(s) => {
                check_host("host", &s.host)?;
                if s.port == 0 {
                    return Err(SpecError::new("port", "port 0 cannot be probed"));
                }
            }
            CheckSpec::Icmp(s) => check_host("host", &s.host)?,
            CheckSpec::Dns(s) => {
                check_host("name", &s.name)?;
                if !DNS_RECORD_TYPES.contains(&s.record_type.as_str()) {
                    return Err(SpecError::new(
                        "record_type",
                        format!("{:?} is not one of {}", s.record_type, DNS_RECORD_TYPES.join(", ")),
                    ));
                }
            }
            CheckSpec::Tls(s) => {
                check_host("host", &s.host)?;
                if s.port == 0 {
                    return Err(SpecError::new("port", "port 0 cannot be probed"));
                }
            }
        }
        Ok(())
    }
}

fn check_host(field: &'static str, host: &str) -> Result<(), SpecError> {
    if host.is_empty() {
        return Err(SpecError::new(field, "must not be empty"));
    }
    if host.len() > 253 || host.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(SpecError::new(field, format!("{host:?} is not a host name or address")));
    }
    Ok(())
}

/// Splits `host:port`, `[v6]:port` or, with a default port, a bare host.
fn split_host_port(target: &str, default_port: Option<u16>) -> Result<(String, u16), SpecError> {
    let (host, port) = if let Some(rest) = target.strip_prefix('[') {
        let (host, after) =
            rest.split_once(']').ok_or_else(|| SpecError::new("target", format!("{target:?}: unclosed '['")))?;
        (host, after.strip_prefix(':'))
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
    Ok((host.to_string(), port))
}

fn join_host_port(host: &str, port: u16) -> String {
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
            ("dns", "example.test"),
            ("tls", "example.test:8443"),
        ] {
            let spec = CheckSpec::from_target(kind, target).unwrap();
            assert_eq!(spec.kind(), kind);
            assert_eq!(spec.target(), target);
        }
        assert_eq!(CheckSpec::from_target("tls", "example.test").unwrap().target(), "example.test:443");
    }

    #[test]
    fn bad_targets_name_the_field() {
        for (kind, target, field) in [
            ("http", "ftp://x", "url"),
            ("http", "http://", "url"),
            ("tcp", "localhost", "target"),
            ("tcp", "localhost:99999", "port"),
            ("tcp", "localhost:0", "port"),
            ("icmp", "", "host"),
            ("smtp", "x", "kind"),
        ] {
            let err = CheckSpec::from_target(kind, target).unwrap_err();
            assert_eq!(err.field, field, "{kind} {target}: {err}");
        }
    }
}
