//! DNS checks: one query to the named server (or the configured ones),
//! uncached, with the answer compared to the expected values.

use std::net::{IpAddr, SocketAddr};

use hickory_resolver::proto::rr::{RData, RecordType};
use tokio::time::Instant;

use super::Inner;
use crate::spec::split_host_port;
use crate::{Detail, DnsDetail, DnsRecordType, DnsSpec, Error, ErrorKind, Outcome, Phase, SpecError};

pub(super) async fn run(p: &Inner, spec: &DnsSpec, start: Instant, deadline: Instant) -> Result<Outcome, Error> {
    let server = spec.server.as_deref().map(server_addr).transpose()?;
    let resolver = p.dns_check_resolver(server)?;
    // Fully qualified, so the node's search domains never change what is asked.
    let name = format!("{}.", spec.name.trim_end_matches('.'));
    let record_type = record_type(spec.record_type);
    let asked = match server {
        Some(s) => s.to_string(),
        None => "the configured resolvers".to_string(),
    };
    let lookup = match super::lookup(&resolver, &name, record_type, deadline).await {
        None => {
            return Ok(Outcome::down(
                ErrorKind::Timeout,
                Some(Phase::Dns),
                format!("no answer from {asked} for {name} {}", spec.record_type),
                start.elapsed(),
            ))
        }
        Some(Err(e)) if e.is_nx_domain() || e.is_no_records_found() => {
            let what = if e.is_nx_domain() { "does not exist (NXDOMAIN)" } else { "has no such records" };
            return Ok(Outcome::down(
                ErrorKind::DnsAnswer,
                Some(Phase::Dns),
                format!("{name} {} {what} at {asked}", spec.record_type),
                start.elapsed(),
            ));
        }
        Some(Err(e)) => {
            if let Some(local) = super::connect::local_dns_failure(&name, &e) {
                return local.outcome(start.elapsed());
            }
            return Ok(Outcome::down(
                ErrorKind::Dns,
                Some(Phase::Dns),
                format!("query {name} {} to {asked}: {e}", spec.record_type),
                start.elapsed(),
            ));
        }
        Some(Ok(lookup)) => lookup,
    };
    let mut answers: Vec<String> = lookup
        .answers()
        .iter()
        .filter(|r| r.record_type() == record_type)
        .filter_map(|r| format_rdata(&r.data))
        .collect();
    answers.sort();
    answers.dedup();
    let latency = start.elapsed();
    let missing: Vec<&String> =
        spec.expect.iter().filter(|e| !answers.iter().any(|a| matches(spec.record_type, e, a))).collect();
    let outcome = if answers.is_empty() {
        Outcome::down(
            ErrorKind::DnsAnswer,
            Some(Phase::Dns),
            format!("{name} {}: empty answer", spec.record_type),
            latency,
        )
    } else if !missing.is_empty() {
        Outcome::down(
            ErrorKind::DnsAnswer,
            Some(Phase::Dns),
            format!("{name} {}: expected {missing:?} among the answers {answers:?}", spec.record_type),
            latency,
        )
    } else {
        Outcome::up(latency)
    };
    Ok(outcome.with_detail(Detail::Dns(DnsDetail { answers })))
}

fn server_addr(server: &str) -> Result<SocketAddr, Error> {
    let bad = |m: String| Error::Spec(SpecError { field: "server", message: m });
    let (host, port) = split_host_port(server, Some(53)).map_err(|e| bad(e.message))?;
    let ip: IpAddr = host.parse().map_err(|_| bad(format!("{server:?} must be an IP address")))?;
    Ok(SocketAddr::new(ip, port))
}

fn record_type(t: DnsRecordType) -> RecordType {
    match t {
        DnsRecordType::A => RecordType::A,
        DnsRecordType::Aaaa => RecordType::AAAA,
        DnsRecordType::Cname => RecordType::CNAME,
        DnsRecordType::Mx => RecordType::MX,
        DnsRecordType::Txt => RecordType::TXT,
        DnsRecordType::Ns => RecordType::NS,
    }
}

/// An answer in the form `DnsRecordType` documents.
fn format_rdata(data: &RData) -> Option<String> {
    Some(match data {
        RData::A(a) => a.0.to_string(),
        RData::AAAA(a) => a.0.to_string(),
        RData::CNAME(n) => name(&n.0.to_string()),
        RData::NS(n) => name(&n.0.to_string()),
        RData::MX(mx) => format!("{} {}", mx.preference, name(&mx.exchange.to_string())),
        RData::TXT(txt) => txt.txt_data.iter().map(|s| String::from_utf8_lossy(s)).collect::<String>(),
        _ => return None,
    })
}

fn name(n: &str) -> String {
    n.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether the expected value `want` is the answer `got`.
fn matches(t: DnsRecordType, want: &str, got: &str) -> bool {
    match t {
        DnsRecordType::A | DnsRecordType::Aaaa => {
            want.parse::<IpAddr>().ok().is_some_and(|w| got.parse::<IpAddr>().ok() == Some(w))
        }
        DnsRecordType::Cname | DnsRecordType::Ns => name(want) == got,
        DnsRecordType::Mx => {
            let exchange = got.split_once(' ').map_or(got, |(_, e)| e);
            name(want) == exchange || {
                let (pref, ex) = want.split_once(' ').unwrap_or(("", want));
                got.split_once(' ').is_some_and(|(gp, ge)| gp == pref.trim() && ge == name(ex.trim()))
            }
        }
        DnsRecordType::Txt => want == got,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_values_compare_by_kind() {
        use DnsRecordType::*;
        for (t, want, got, hit) in [
            (A, "192.0.2.1", "192.0.2.1", true),
            (A, "192.0.2.1", "192.0.2.2", false),
            (Aaaa, "2001:DB8:0::1", "2001:db8::1", true),
            (Cname, "Target.Example.TEST.", "target.example.test", true),
            (Ns, "ns1.test", "ns2.test", false),
            (Mx, "mail.test", "10 mail.test", true),
            (Mx, "10 mail.test.", "10 mail.test", true),
            (Mx, "20 mail.test", "10 mail.test", false),
            (Txt, "v=spf1 -all", "v=spf1 -all", true),
            (Txt, "v=spf1", "v=spf1 -all", false),
        ] {
            assert_eq!(matches(t, want, got), hit, "{t} {want} vs {got}");
        }
    }
}
