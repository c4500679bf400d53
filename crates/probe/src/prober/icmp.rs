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

use surge_ping::{Client, PingIdentifier, PingSequence, ICMP};
use tokio::sync::OnceCell;
use tokio::time::{sleep_until, timeout_at, Instant};

use super::connect;
use super::Inner;
use crate::{Detail, Error, ErrorKind, IcmpDetail, IcmpSpec, Outcome, Phase};

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
    // deadline, so a late reply to an early request still counts.
    let pings = (0..spec.count).map(|i| {
        let send_at = start + interval * u32::from(i);
        let (client, payload) = (&client, &payload);
        let seq = PingSequence(p.icmp.next_seq());
        async move {
            if send_at >= deadline {
                return None;
            }
            sleep_until(send_at).await;
            let mut pinger = client.pinger(ip, ident).await;
            pinger.timeout(deadline.saturating_duration_since(Instant::now()));
            Some(timeout_at(deadline, pinger.ping(seq, payload)).await.ok().and_then(Result::ok).map(|(_, rtt)| rtt))
        }
    });
    let results = futures::future::join_all(pings).await;
    let latency = start.elapsed();
    let sent = results.iter().filter(|r| r.is_some()).count();
    let rtts: Vec<Duration> = results.into_iter().flatten().flatten().collect();
    let detail = detail(sent, &rtts);
    Ok(judge(spec, ip, detail, latency).with_detail(Detail::Icmp(detail)))
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

fn judge(spec: &IcmpSpec, ip: IpAddr, d: IcmpDetail, latency: Duration) -> Outcome {
    // Requests the deadline cut off before sending count as lost: the spec
    // asked for them.
    let asked = u32::from(spec.count);
    let lost = asked - u32::from(d.received).min(asked);
    let loss_pct = lost * 100 / asked.max(1);
    if d.received == 0 {
        return Outcome::down(
            ErrorKind::PacketLoss,
            Some(Phase::Total),
            format!("no echo reply from {ip} ({asked} sent)"),
            latency,
        );
    }
    if loss_pct > u32::from(spec.max_loss_percent) {
        return Outcome::down(
            ErrorKind::PacketLoss,
            Some(Phase::Total),
            format!("{loss_pct}% loss to {ip} ({lost} of {asked}), limit {}%", spec.max_loss_percent),
            latency,
        );
    }
    if let (Some(max), Some(avg)) = (spec.max_rtt_ms, d.rtt_avg) {
        if avg > Duration::from_millis(max) {
            return Outcome::degraded(
                ErrorKind::Slow,
                Some(Phase::Total),
                format!("mean round trip to {ip} {avg:?}, limit {max} ms"),
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
    }

    #[test]
    fn the_unavailable_message_names_both_fixes() {
        let e = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let m = unavailable_message(&e, Some("1 0"));
        assert!(m.contains("net.ipv4.ping_group_range") && m.contains("CAP_NET_RAW") && m.contains("\"1 0\""), "{m}");
    }
}
