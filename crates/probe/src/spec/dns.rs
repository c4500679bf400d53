use std::fmt;

use serde::{Deserialize, Serialize};

use super::{check_host, split_host_port, SpecError};

const MAX_EXPECT: usize = 32;

/// A DNS query and the answers it must include.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsSpec {
    /// The name to look up; queried as given (no search domains are appended,
    /// so the answer does not depend on the node's resolv.conf).
    pub name: String,
    pub record_type: DnsRecordType,
    /// `ip` or `ip:port` of the server to ask (`[v6]:port` for IPv6); the node's
    /// system resolvers when absent.
    pub server: Option<String>,
    /// Values every one of which must be among the answers, in the form
    /// [`DnsRecordType`] documents; empty accepts any non-empty answer.
    pub expect: Vec<String>,
}

/// Record types a DNS check can ask for, and how their answers are compared.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DnsRecordType {
    /// An IPv4 address, e.g. `192.0.2.1`.
    #[default]
    A,
    /// An IPv6 address in any form, compared as an address.
    #[serde(rename = "AAAA")]
    Aaaa,
    /// A name; case and a trailing dot are ignored.
    #[serde(rename = "CNAME")]
    Cname,
    /// The exchange name (`mail.example.test`) or `preference exchange` (`10 mail.example.test`).
    #[serde(rename = "MX")]
    Mx,
    /// The record's strings concatenated.
    #[serde(rename = "TXT")]
    Txt,
    /// A name, as for CNAME.
    #[serde(rename = "NS")]
    Ns,
}

/// Zones a resolver answers itself and never sends to a server (RFC 6761
/// §6.3 and §6.4, RFC 7686; hickory does so whatever it is configured to do):
/// a DNS check of a name in them would say nothing about the server.
const NEVER_ASKED: [&str; 5] = [
    "localhost",
    "invalid",
    "onion",
    "127.in-addr.arpa",
    "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa",
];

/// The special-use zone `name` falls in, if any.
fn never_asked(name: &str) -> Option<&'static str> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    NEVER_ASKED.into_iter().find(|zone| name == *zone || name.ends_with(&format!(".{zone}")))
}

impl DnsSpec {
    pub(crate) fn validate(&self) -> Result<(), SpecError> {
        check_host("name", &self.name)?;
        if let Some(zone) = never_asked(&self.name) {
            return Err(SpecError::new(
                "name",
                format!(
                    "{:?} is in the special-use zone {zone:?}, which resolvers answer themselves: \
                     its query is never sent to a server, so a DNS check of it proves nothing",
                    self.name
                ),
            ));
        }
        if let Some(server) = &self.server {
            let (host, _) = split_host_port(server, Some(53))
                .map_err(|e| SpecError::new("server", format!("{server:?}: {}", e.message)))?;
            if host.parse::<std::net::IpAddr>().is_err() {
                return Err(SpecError::new("server", format!("{server:?} must be an IP address, not a name")));
            }
        }
        if self.expect.len() > MAX_EXPECT {
            return Err(SpecError::new("expect", format!("more than {MAX_EXPECT} values")));
        }
        for v in &self.expect {
            let ok = match self.record_type {
                DnsRecordType::A => v.parse::<std::net::Ipv4Addr>().is_ok(),
                DnsRecordType::Aaaa => v.parse::<std::net::Ipv6Addr>().is_ok(),
                DnsRecordType::Cname | DnsRecordType::Ns => check_host("expect", v).is_ok(),
                DnsRecordType::Mx => {
                    let exchange =
                        v.split_once(' ').map_or(v.as_str(), |(p, e)| if p.parse::<u16>().is_ok() { e } else { v });
                    check_host("expect", exchange).is_ok()
                }
                DnsRecordType::Txt => v.len() <= 4096,
            };
            if !ok {
                return Err(SpecError::new("expect", format!("{v:?} is not a valid {} value", self.record_type)));
            }
        }
        Ok(())
    }
}

impl DnsRecordType {
    pub const ALL: [DnsRecordType; 6] = [
        DnsRecordType::A,
        DnsRecordType::Aaaa,
        DnsRecordType::Cname,
        DnsRecordType::Mx,
        DnsRecordType::Txt,
        DnsRecordType::Ns,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DnsRecordType::A => "A",
            DnsRecordType::Aaaa => "AAAA",
            DnsRecordType::Cname => "CNAME",
            DnsRecordType::Mx => "MX",
            DnsRecordType::Txt => "TXT",
            DnsRecordType::Ns => "NS",
        }
    }
}

impl std::str::FromStr for DnsRecordType {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DnsRecordType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| SpecError::new("record_type", format!("{s:?} is not one of A, AAAA, CNAME, MX, TXT, NS")))
    }
}

impl fmt::Display for DnsRecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bad_field_is_named() {
        let ok = DnsSpec { name: "x.test".into(), server: Some("[::1]:5353".into()), ..DnsSpec::default() };
        ok.validate().unwrap();
        for (spec, field) in [
            (DnsSpec { name: "a b".into(), ..ok.clone() }, "name"),
            (DnsSpec { server: Some("ns.example.test".into()), ..ok.clone() }, "server"),
            (DnsSpec { server: Some("127.0.0.1:0".into()), ..ok.clone() }, "server"),
            (DnsSpec { expect: vec!["::1".into()], ..ok.clone() }, "expect"),
            (DnsSpec { record_type: DnsRecordType::Aaaa, expect: vec!["1.2.3.4".into()], ..ok.clone() }, "expect"),
            (DnsSpec { record_type: DnsRecordType::Mx, expect: vec!["10 bad name".into()], ..ok.clone() }, "expect"),
        ] {
            assert_eq!(spec.validate().unwrap_err().field, field, "{spec:?}");
        }
        DnsSpec { record_type: DnsRecordType::Mx, expect: vec!["10 mx.test".into(), "mx2.test.".into()], ..ok }
            .validate()
            .unwrap();
    }

    #[test]
    fn record_types_parse_and_serialize_by_name() {
        for t in DnsRecordType::ALL {
            assert_eq!(t.as_str().to_lowercase().parse::<DnsRecordType>().unwrap(), t);
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{t}\""));
        }
        assert_eq!("SRV".parse::<DnsRecordType>().unwrap_err().field, "record_type");
    }
}
