//! ICMP echo checks through surge-ping: one socket per address family, shared
//! by every check, opened on first use.
//!
//! surge-ping opens an unprivileged ICMP datagram socket first (Linux allows
//! it to groups within `net.ipv4.ping_group_range`) and a raw socket second
//! (root or `CAP_NET_RAW`). When neither is allowed the check returns
//! [`Error::IcmpUnavailable`] naming both fixes: the node cannot ping, which
//! says nothing about the target.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use surge_ping::{Client, PingIdentifier, PingSequence, SurgeError, ICMP};
use tokio::sync::OnceCell;
use tokio::time::{sleep_until, timeout_at, Instant};

use super::connect;
use super::Inner;
use crate::error::local;
use crate::{Detail, Error, ErrorKind, IcmpDetail, IcmpSpec, LocalCause, Outcome, Phase};

#[derive(Default)]
pub(super) struct Sockets {
    v4: OnceCell<Client>,
    v6: OnceCell<Client>,
    /// Sequence numbers, unique across concurrent checks: on a datagram socket
    /// the kernel owns the identifier, so replies are told apart by
    /// (address, sequence) alone.
    seq: AtomicU16,
}

impl Sockets {
    /// The shared client for the family; a failed open is retried next time,
    /// so fixing the sysctl needs no restart.
    async fn client(&self, v6: bool) -> Result<Client, Error> {
        let cell = if v6 { &self.v6 } else { &self.v4 };
        cell.get_or_try_init(|| async { open(v6) }).await.cloned()
    }

    fn next_seq(&self) -> u16 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }
}

fn open(v6: bool) -> Result<Client, Error> {
    let kind = if v6 { ICMP::V6 } else { ICMP::V4 };
    let config = surge_ping::Config::builder().kind(kind).build();
    match Client::new(&config) {
        Ok(client) => {
            tracing::info!(socket = ?client.get_socket().get_type(), ipv6 = v6, "opened ICMP socket");
            Ok(client)
        }
        Err(e) => Err(Error::IcmpUnavailable { message: unavailable_message(&e, ping_group_range().as_deref()) }),
    }
}

fn ping_group_range() -> Option<String> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range")
        .ok()
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Says why no ICMP socket opened and the two ways to fix it.
fn unavailable_message(e: &std::io::Error, range: Option<&str>) -> String {
    let range = range.map_or_else(String::new, |r| format!(" (it is \"{r}\")"));
    format!(
        "{}: neither an unprivileged ICMP datagram socket nor a raw socket is permitted. \
         Either allow unprivileged ping for the node's group with \
         `sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"`{range}, \
         or grant the binary CAP_NET_RAW (`setcap cap_net_raw+ep uptime-node`, \
         or AmbientCapabilities=CAP_NET_RAW in its systemd unit)",
        e.to_string().lines().last().unwrap_or_default()
    )
}

pub(super) async fn run(p: &Inner, spec: &IcmpSpec, start: Instant, deadline: Instant) -> Result<Outcome, Error> {
    let ip: IpAddr = match connect::resolve(p, &spec.host, deadline).await {
        Ok((addrs, _)) => addrs[0],
        Err(e) => return e.outcome(start.elapsed()),
    };
    let client = p.icmp.client(ip.is_ipv6()).await?;
    let payload = vec![0u8; p.config.icmp_payload_bytes];
    let interval = Duration::from_millis(spec.interval_ms);
    let ident = PingIdentifier(p.icmp.next_seq());
    // Requests go out `interval` apart and each waits for its reply until the
    // deadline, so a late reply to an early request still counts. A request
    // is sent only while at least one `interval` is left for its reply (the
    // first always is): one the timeout leaves no room for is not sent, and
    // not lost either.
    let pings = (0..spec.count).map(|i| {
        let send_at = start + interval * u32::from(i);
        let (client, payload) = (&client, &payload);
        let seq = PingSequence(p.icmp.next_seq());
        async move {
            if i > 0 && deadline.saturating_duration_since(send_at) < interval {
                return Ping::NotSent;
            }
            sleep_until(send_at).await;
            let mut pinger = client.pinger(ip, ident).await;
            pinger.timeout(deadline.saturating_duration_since(Instant::now()));
            match timeout_at(deadline, pinger.ping(seq, payload)).await {
                Ok(Ok((_, rtt))) => Ping::Answered(rtt),
                Ok(Err(SurgeError::IOError(e))) => match LocalCause::of(&e, true) {
                    Some(cause) => Ping::Local(local(cause, format_args!("sending an ICMP echo request to {ip}"), &e)),
                    None => Ping::Lost,
                },
                _ => Ping::Lost,
            }
        }
    });
    let mut sent = 0;
    let mut rtts = Vec::new();
    for ping in futures::future::join_all(pings).await {
        match ping {
            Ping::NotSent => {}
            Ping::Lost => sent += 1,
            Ping::Answered(rtt) => {
                sent += 1;
                rtts.push(rtt);
            }
            Ping::Local(e) => return Err(e),
        }
    }
    let detail = detail(sent, &rtts);
    // The latency of a ping check is the echo round trip, not how long the
    // check waited between requests.
    let latency = detail.rtt_avg.unwrap_or_else(|| start.elapsed());
    Ok(judge(spec, ip, detail, latency).with_detail(Detail::Icmp(detail)))
}

/// What became of one echo request.
enum Ping {
    /// The timeout left no room for it.
    NotSent,
    Lost,
    Answered(Duration),
    /// This node could not send it (no permission, no buffer space).
    Local(Error),
}

fn detail(sent: usize, rtts: &[Duration]) -> IcmpDetail {
    let n = u32::try_from(rtts.len()).unwrap_or(u32::MAX);
    IcmpDetail {
        sent: u16::try_from(sent).unwrap_or(u16::MAX),
        received: u16::try_from(rtts.len()).unwrap_or(u16::MAX),
        rtt_min: rtts.iter().min().copied(),
        rtt_max: rtts.iter().max().copied(),
        rtt_avg: (n > 0).then(|| rtts.iter().sum::<Duration>() / n),
    }
}

/// Loss is over the requests sent: one the timeout left no room for was never
/// asked of the target.
fn judge(spec: &IcmpSpec, ip: IpAddr, d: IcmpDetail, latency: Duration) -> Outcome {
    let sent = u32::from(d.sent);
    let lost = sent - u32::from(d.received).min(sent);
    let loss_pct = lost * 100 / sent.max(1);
    let rtt = || match (d.rtt_min, d.rtt_avg, d.rtt_max) {
        (Some(min), Some(avg), Some(max)) => format!("; round trip min/avg/max {min:?}/{avg:?}/{max:?}"),
        _ => String::new(),
    };
    if d.received == 0 {
        return Outcome::down(
            ErrorKind::PacketLoss,
            Some(Phase::Total),
            format!("no echo reply from {ip} ({sent} sent)"),
            latency,
        );
    }
    if loss_pct > u32::from(spec.max_loss_percent) {
        return Outcome::down(
            ErrorKind::PacketLoss,
            Some(Phase::Total),
            format!("{loss_pct}% loss to {ip} ({lost} of {sent} sent), limit {}%{}", spec.max_loss_percent, rtt()),
            latency,
        );
    }
    if let (Some(max), Some(avg)) = (spec.max_rtt_ms, d.rtt_avg) {
        if avg > Duration::from_millis(max) {
            return Outcome::degraded(
                ErrorKind::Slow,
                Some(Phase::Total),
                format!("mean round trip to {ip} {avg:?}, limit {max} ms{}", rtt()),
                latency,
            );
        }
    }
    Outcome::up(latency)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Status;

    #[test]
    fn loss_and_rtt_decide_the_status() {
        let spec = IcmpSpec {
            host: "127.0.0.1".into(),
            count: 3,
            max_loss_percent: 34,
            max_rtt_ms: Some(10),
            ..IcmpSpec::default()
        };
        let ms = Duration::from_millis;
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for (rtts, want) in [
            (vec![ms(1), ms(2), ms(3)], Status::Up),
            (vec![ms(1), ms(2)], Status::Up),
            (vec![ms(1)], Status::Down),
            (vec![], Status::Down),
            (vec![ms(20), ms(30), ms(1)], Status::Degraded),
        ] {
            let o = judge(&spec, ip, detail(3, &rtts), Duration::ZERO);
            assert_eq!(o.status, want, "{rtts:?}: {o}");
        }
        // Two of the three fitted in the timeout, both answered: no loss.
        let o = judge(&spec, ip, detail(2, &[ms(1), ms(2)]), Duration::ZERO);
        assert_eq!(o.status, Status::Up, "{o}");
        let o = judge(&spec, ip, detail(2, &[ms(1)]), Duration::ZERO);
        assert!(o.error.unwrap().message.contains("50% loss to 127.0.0.1 (1 of 2 sent)"));
    }

    #[test]
    fn the_unavailable_message_names_both_fixes() {
        let e = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let m = unavailable_message(&e, Some("1 0"));
        assert!(m.contains("net.ipv4.ping_group_range") && m.contains("CAP_NET_RAW") && m.contains("\"1 0\""), "{m}");
    }
}
