//! TCP checks: connect; optionally send bytes and look for a banner.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{timeout_at, Instant};

use super::connect::{self, fail, Failure};
use super::Inner;
use crate::{Detail, Error, ErrorKind, Outcome, Phase, Phases, TcpDetail, TcpSpec};

/// Longest banner kept in the outcome: enough to recognise a server, small
/// enough to ship in every report.
const BANNER_SHOWN: usize = 256;

pub(super) async fn run(p: &Inner, spec: &TcpSpec, start: Instant, deadline: Instant) -> Result<Outcome, Error> {
    let mut phases = Phases::default();
    let mut detail = TcpDetail::default();
    let result = probe(p, spec, deadline, &mut phases, &mut detail).await;
    phases.total = start.elapsed();
    let outcome = match result {
        Ok(()) => Outcome::up(phases.total),
        Err(e) => e.outcome(phases.total)?,
    };
    Ok(outcome.with_phases(phases).with_detail(Detail::Tcp(detail)))
}

async fn probe(
    p: &Inner,
    spec: &TcpSpec,
    deadline: Instant,
    phases: &mut Phases,
    detail: &mut TcpDetail,
) -> Result<(), Failure> {
    let (addrs, dns) = connect::resolve(p, &spec.host, deadline).await?;
    phases.dns = dns;
    let (mut stream, remote, took) = connect::connect(p, &addrs, spec.port, deadline).await?;
    phases.connect = Some(took);
    detail.remote = Some(remote);
    let asked = Instant::now();
    if let Some(send) = &spec.send {
        timeout_at(deadline, stream.write_all(send.as_bytes()))
            .await
            .map_err(|_| fail(ErrorKind::Timeout, Phase::Body, "sending timed out"))?
            .map_err(|e| fail(ErrorKind::Io, Phase::Body, format!("sending to {remote}: {e}")))?;
    }
    let Some(expect) = &spec.expect_banner else { return Ok(()) };
    let finder = memchr::memmem::Finder::new(expect.as_bytes());
    let cap = p.config.max_banner_bytes;
    let mut buf = Vec::with_capacity(cap.min(1024));
    let mut chunk = [0u8; 1024];
    let found = loop {
        let want = chunk.len().min(cap - buf.len());
        let n = match timeout_at(deadline, stream.read(&mut chunk[..want])).await {
            Err(_) => {
                detail.banner = Some(shown(&buf));
                return Err(Failure::Target(fail(
                    ErrorKind::Timeout,
                    Phase::Body,
                    format!("no banner containing {expect:?} before the timeout; got {:?}", shown(&buf)),
                )));
            }
            Ok(Err(e)) => return Err(fail(ErrorKind::Io, Phase::Body, format!("reading from {remote}: {e}")).into()),
            Ok(Ok(n)) => n,
        };
        if phases.first_byte.is_none() && n > 0 {
            phases.first_byte = Some(asked.elapsed());
        }
        buf.extend_from_slice(&chunk[..n]);
        let hit = finder.find(&buf).is_some();
        if hit || n == 0 || buf.len() >= cap {
            break hit;
        }
    };
    detail.banner = Some(shown(&buf));
    if found {
        Ok(())
    } else {
        Err(fail(ErrorKind::Banner, Phase::Body, format!("banner {:?} does not contain {expect:?}", shown(&buf)))
            .into())
    }
}

fn shown(buf: &[u8]) -> String {
    let s = String::from_utf8_lossy(buf);
    s.chars().take(BANNER_SHOWN).collect()
}
