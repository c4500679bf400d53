//! HTTP(S) checks: a fresh connection per check (so DNS, connect and TLS are
//! measured as a new visitor meets them), one HTTP/1.1 request with
//! `Connection: close`, redirects followed hop by hop.
//!
//! The body is read only when a match needs it, only until the match is
//! decided, and never past `Config::max_body_bytes`.

use std::time::Duration;

use bytes::Bytes;
use http::header::{
    HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONNECTION, CONTENT_ENCODING, HOST, LOCATION, USER_AGENT,
};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::time::{timeout_at, Instant};

use super::connect::{self, fail, Failure};

mod decode;
use super::Inner;
use crate::spec::{parse_url, resolve_location, Target};
use crate::{CheckError, Detail, Error, ErrorKind, HttpDetail, HttpSpec, Outcome, Phase, Phases, SpecError};

/// What one request/response exchange produced.
struct Answer {
    status: StatusCode,
    /// Set when the answer is a redirect the spec follows.
    location: Option<String>,
    /// Set when the body was checked.
    body: Option<BodyCheck>,
    /// The server sent `Retry-After`: it says it is shedding load for now.
    retry_after: bool,
}

/// What reading the body found.
struct BodyCheck {
    bytes: u64,
    /// Stopped at `max_body_bytes` before the end.
    capped: bool,
    contains: Option<bool>,
    regex: Option<bool>,
}

/// Per-check inputs that stay the same across hops.
struct Ctx<'a> {
    p: &'a Inner,
    spec: &'a HttpSpec,
    regex: Option<&'a regex::bytes::Regex>,
    deadline: Instant,
}

pub(super) async fn run(p: &Inner, spec: &HttpSpec, start: Instant, deadline: Instant) -> Result<Outcome, Error> {
    let first = parse_url(&spec.url)?;
    let method = Method::from_bytes(spec.method.as_bytes())
        .map_err(|_| SpecError { field: "method", message: format!("{:?} is not an HTTP method", spec.method) })?;
    let regex = spec.body_regex.as_deref().map(|r| p.regex(r)).transpose()?;
    let ctx = Ctx { p, spec, regex: regex.as_deref(), deadline };

    let mut phases = Phases::default();
    let mut detail = HttpDetail { final_url: spec.url.clone(), ..HttpDetail::default() };
    let mut target = first.clone();
    let mut method = method;
    let mut with_body = !spec.body.is_empty();
    let result = loop {
        // The spec's headers and credentials go only to the origin they were
        // configured for (curl drops Authorization and Cookie; a Host or an API
        // key header is as private), so another origin gets the prober's own.
        let same_origin = target.host == first.host && target.port == first.port && target.https == first.https;
        let answer = match hop(&ctx, &target, &method, with_body, same_origin, &mut phases, &mut detail).await {
            Ok(a) => a,
            Err(e) => break Err(e),
        };
        detail.status_code = Some(answer.status.as_u16());
        let Some(location) = answer.location else { break Ok(answer) };
        if detail.redirects >= spec.max_redirects {
            break Err(Failure::Target(fail(
                ErrorKind::Redirect,
                Phase::FirstByte,
                format!("more than {} redirect(s); the last pointed to {location:?}", spec.max_redirects),
            )));
        }
        let next = resolve_location(&target, &location);
        target = match parse_url(&next) {
            Ok(t) => t,
            Err(e) => {
                break Err(
                    fail(ErrorKind::Redirect, Phase::FirstByte, format!("redirect to an unusable URL: {e}")).into()
                )
            }
        };
        detail.redirects += 1;
        detail.final_url = next;
        // 303 always, and 301/302 after POST, turn into GET without a body (RFC 9110 §15.4).
        let s = answer.status.as_u16();
        if (s == 303 && method != Method::HEAD) || ((s == 301 || s == 302) && method == Method::POST) {
            method = Method::GET;
            with_body = false;
        }
    };
    phases.total = start.elapsed();
    let outcome = match result {
        Err(e) => e.outcome(phases.total)?,
        // See `Error::BodyTooLong` for why this is no verdict at all.
        Ok(Answer { body: Some(BodyCheck { capped: true, regex: Some(_), .. }), .. }) => {
            return Err(Error::BodyTooLong { limit: p.config.max_body_bytes })
        }
        Ok(answer) => judge(spec, &answer, phases.total),
    };
    Ok(outcome.with_phases(phases).with_detail(Detail::Http(detail)))
}

/// One request on a fresh connection to `target`.
async fn hop(
    ctx: &Ctx<'_>,
    target: &Target,
    method: &Method,
    with_body: bool,
    send_auth: bool,
    phases: &mut Phases,
    detail: &mut HttpDetail,
) -> Result<Answer, Failure> {
    let p = ctx.p;
    let (addrs, dns) = connect::resolve(p, &target.host, ctx.deadline).await?;
    add(&mut phases.dns, dns);
    let (tcp, remote, took) = connect::connect(p, &addrs, target.port, ctx.deadline).await?;
    add(&mut phases.connect, Some(took));
    detail.remote = Some(remote);
    let req = request(ctx, target, method, with_body, send_auth)?;
    if target.https {
        let (tls, took) = connect::handshake(p.tls.http.clone(), tcp, &target.host, ctx.deadline).await?;
        add(&mut phases.tls, Some(took));
        if ctx.spec.verify_tls {
            let chain = tls.get_ref().1.peer_certificates().unwrap_or_default();
            p.tls.verify(chain, &target.host, p.now()).map_err(|e| {
                fail(ErrorKind::Certificate, Phase::Tls, format!("certificate of {}: {e}", target.host))
            })?;
        }
        Ok(exchange(ctx, TokioIo::new(tls), req, phases, detail).await?)
    } else {
        Ok(exchange(ctx, TokioIo::new(NoShutdown(tcp)), req, phases, detail).await?)
    }
}

/// A TCP stream whose write-side shutdown is a no-op. hyper shuts the write
/// side down once a `Connection: close` exchange ends, but the socket is closed
/// right after anyway, and `close` sends the FIN itself: one syscall fewer per
/// check. (TLS streams keep their shutdown, which sends `close_notify`.)
struct NoShutdown(tokio::net::TcpStream);

impl tokio::io::AsyncRead for NoShutdown {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for NoShutdown {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

fn request(
    ctx: &Ctx<'_>,
    target: &Target,
    method: &Method,
    with_body: bool,
    send_auth: bool,
) -> Result<Request<Full<Bytes>>, CheckError> {
    let bad = |what: String| fail(ErrorKind::Protocol, Phase::FirstByte, what);
    let body = if with_body { Bytes::from(ctx.spec.body.clone()) } else { Bytes::new() };
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = method.clone();
    *req.uri_mut() = target.path_and_query.parse().map_err(|e| bad(format!("request target: {e}")))?;
    let h = req.headers_mut();
    h.insert(HOST, HeaderValue::from_str(&target.authority).map_err(|e| bad(format!("host header: {e}")))?);
    h.insert(USER_AGENT, HeaderValue::from_str(&ctx.p.config.user_agent).map_err(|e| bad(e.to_string()))?);
    h.insert(ACCEPT, HeaderValue::from_static("*/*"));
    // One request per connection: the server may close right after answering.
    h.insert(CONNECTION, HeaderValue::from_static("close"));
    let own_headers = if send_auth { ctx.spec.headers.as_slice() } else { &[] };
    for header in own_headers {
        let name = HeaderName::from_bytes(header.name.as_bytes()).map_err(|e| bad(format!("header name: {e}")))?;
        let value = HeaderValue::from_str(&header.value).map_err(|e| bad(format!("header value: {e}")))?;
        // The spec's Host, User-Agent and Accept replace the defaults; others add.
        if name == HOST || name == USER_AGENT || name == ACCEPT {
            h.insert(name, value);
        } else {
            h.append(name, value);
        }
    }
    if send_auth {
        if let Some(auth) = ctx.spec.auth.header_value() {
            h.insert(AUTHORIZATION, HeaderValue::from_str(&auth).map_err(|e| bad(format!("auth: {e}")))?);
        }
    }
    Ok(req)
}

/// Sends `req` over `io` and reads as much of the answer as the spec needs.
async fn exchange<T>(
    ctx: &Ctx<'_>,
    io: T,
    req: Request<Full<Bytes>>,
    phases: &mut Phases,
    detail: &mut HttpDetail,
) -> Result<Answer, CheckError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Full<Bytes>>(io)
        .await
        .map_err(|e| fail(ErrorKind::Protocol, Phase::FirstByte, describe(&e)))?;
    let work = async {
        let sent = Instant::now();
        let resp = timeout_at(ctx.deadline, sender.send_request(req))
            .await
            .map_err(|_| {
                fail(
                    ErrorKind::Timeout,
                    Phase::FirstByte,
                    format!("no response within {:?} of the request", sent.elapsed()),
                )
            })?
            .map_err(|e| fail(ErrorKind::Protocol, Phase::FirstByte, describe(&e)))?;
        add(&mut phases.first_byte, Some(sent.elapsed()));
        let status = resp.status();
        let retry_after = resp.headers().contains_key(http::header::RETRY_AFTER);
        let spec = ctx.spec;
        if spec.follows_redirects() && is_redirect(status) {
            if let Some(loc) = resp.headers().get(LOCATION) {
                let loc = String::from_utf8_lossy(loc.as_bytes()).into_owned();
                return Ok(Answer { status, location: Some(loc), body: None, retry_after });
            }
        }
        if !spec.expects(status.as_u16()) || !spec.reads_body() {
            return Ok(Answer { status, location: None, body: None, retry_after });
        }
        let decoder = match resp.headers().get(CONTENT_ENCODING).map(|v| decode::Decoder::new(v.as_bytes())) {
            None => decode::Decoder::identity(),
            Some(Ok(d)) => d,
            Some(Err(coding)) => {
                return Err(fail(
                    ErrorKind::Body,
                    Phase::Body,
                    format!("the body is encoded as {coding:?}, which was not asked for and cannot be decoded"),
                ))
            }
        };
        let body = read_body(ctx, resp.into_body(), decoder).await?;
        detail.body_bytes = body.bytes;
        Ok(Answer { status, location: None, body: Some(body), retry_after })
    };
    // The connection future does the socket I/O; poll it alongside the request
    // here instead of spawning a task per check. If it finishes first (the server
    // answered and closed), what it read is already buffered for `work`.
    let mut conn = std::pin::pin!(conn);
    let mut work = std::pin::pin!(work);
    tokio::select! {
        biased;
        answer = &mut work => answer,
        _ = &mut conn => work.await,
    }
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// Reads until every requested match is decided, the body ends, or the cap.
///
/// A `body_contains` is searched as bytes arrive, keeping only the overlap a
/// match could straddle. A `body_regex` is run once the body is complete; a
/// capped body gets no regex verdict (`Error::BodyTooLong`): on a prefix, `$`
/// or a greedy pattern could match what the whole body would not.
/// A compressed body (`Content-Encoding`) is decoded first: the caps and
/// matches apply to the decoded bytes, so a zip bomb stops at the cap.
async fn read_body(ctx: &Ctx<'_>, mut body: Incoming, mut decoder: decode::Decoder) -> Result<BodyCheck, CheckError> {
    let cap = ctx.p.config.max_body_bytes;
    let needle = ctx.spec.body_contains.as_deref().map(str::as_bytes);
    let finder = needle.map(memchr::memmem::Finder::new);
    let keep_all = ctx.regex.is_some();
    let mut buf: Vec<u8> = Vec::new();
    let mut seen: usize = 0;
    let mut found = false;
    let mut capped = false;
    loop {
        if (found || finder.is_none()) && !keep_all {
            break;
        }
        let frame = match timeout_at(ctx.deadline, body.frame()).await {
            Err(_) => {
                return Err(fail(ErrorKind::Timeout, Phase::Body, format!("body not complete after {seen} bytes")))
            }
            Ok(None) => (decoder.finish(cap - seen).map_err(|e| fail(ErrorKind::Protocol, Phase::Body, e))?, true),
            Ok(Some(Err(e))) => return Err(fail(ErrorKind::Protocol, Phase::Body, describe(&e))),
            Ok(Some(Ok(frame))) => {
                let Ok(data) = frame.into_data() else { continue };
                (decoder.feed(&data, cap - seen).map_err(|e| fail(ErrorKind::Protocol, Phase::Body, e))?, false)
            }
        };
        let (frame, eof) = frame;
        let take = frame.len().min(cap - seen);
        let data = &frame[..take];
        let searched_from = buf.len().saturating_sub(needle.map_or(0, |n| n.len().saturating_sub(1)));
        buf.extend_from_slice(data);
        seen += take;
        if let Some(f) = &finder {
            if !found && f.find(&buf[searched_from..]).is_some() {
                found = true;
            }
            if !keep_all {
                let overlap = f.needle().len().saturating_sub(1);
                let drop_to = buf.len().saturating_sub(overlap);
                buf.drain(..drop_to);
            }
        }
        // Capped only when bytes past the cap really exist: a body of exactly
        // `cap` bytes is whole, so reading on at the cap asks for one more frame.
        if take < frame.len() || decoder.is_capped() {
            capped = true;
            break;
        }
        if eof {
            break;
        }
    }
    Ok(BodyCheck {
        bytes: seen as u64,
        capped,
        contains: finder.map(|_| found),
        regex: ctx.regex.map(|re| re.is_match(&buf)),
    })
}

fn judge(spec: &HttpSpec, answer: &Answer, latency: Duration) -> Outcome {
    let code = answer.status.as_u16();
    let expected = || {
        if spec.expect_status.is_empty() {
            "2xx".to_string()
        } else {
            spec.expect_status.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
        }
    };
    if !spec.expects(code) {
        let msg =
            format!("status {} ({}), expected {}", code, answer.status.canonical_reason().unwrap_or("?"), expected());
        // Too Many Requests, and Service Unavailable with Retry-After: the server is
        // there and says it is shedding load for now, which is not the same as gone.
        // A bare 503 is what a dead backend behind a proxy looks like: down.
        return if code == 429 || (code == 503 && answer.retry_after) {
            Outcome::degraded(ErrorKind::Status, Some(Phase::FirstByte), msg, latency)
        } else {
            Outcome::down(ErrorKind::Status, Some(Phase::FirstByte), msg, latency)
        };
    }
    if let Some(body) = &answer.body {
        let within = if body.capped {
            format!("in the first {} bytes (the body is longer than the read limit)", body.bytes)
        } else {
            format!("in {} bytes", body.bytes)
        };
        if body.contains == Some(false) {
            let needle = spec.body_contains.as_deref().unwrap_or_default();
            return Outcome::down(
                ErrorKind::Body,
                Some(Phase::Body),
                format!("body does not contain {needle:?} {within}"),
                latency,
            );
        }
        if body.regex == Some(false) {
            let re = spec.body_regex.as_deref().unwrap_or_default();
            return Outcome::down(
                ErrorKind::Body,
                Some(Phase::Body),
                format!("body does not match /{re}/ {within}"),
                latency,
            );
        }
    }
    Outcome::up(latency)
}

fn add(slot: &mut Option<Duration>, d: Option<Duration>) {
    if let Some(d) = d {
        *slot = Some(slot.unwrap_or_default() + d);
    }
}

/// An error with its causes, since hyper's own message is often just
/// "connection closed before message completed".
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Status, StatusRange};

    #[test]
    fn decoders_stop_at_the_cap() {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&vec![0u8; 4 << 20]).unwrap();
        let bomb = e.finish().unwrap();
        let mut d = decode::Decoder::new(b"gzip").unwrap();
        let out = d.feed(&bomb, 1000).unwrap();
        assert_eq!(out.len(), 1000);
        assert!(d.is_capped());
        assert_eq!(decode::Decoder::new(b"zstd").err().as_deref(), Some("zstd"));
        assert!(decode::Decoder::new(b"identity").is_ok());
    }

    fn answer(code: u16) -> Answer {
        Answer { status: StatusCode::from_u16(code).unwrap(), location: None, body: None, retry_after: false }
    }

    #[test]
    fn statuses_judge_as_the_issue_says() {
        let default = HttpSpec { url: "http://x.test/".into(), ..HttpSpec::default() };
        let expects_503 = HttpSpec { expect_status: vec![StatusRange::exact(503)], ..default.clone() };
        for (spec, code, want) in [
            (&default, 200, Status::Up),
            (&default, 204, Status::Up),
            (&default, 301, Status::Down),
            (&default, 404, Status::Down),
            (&default, 500, Status::Down),
            (&default, 429, Status::Degraded),
            (&default, 503, Status::Down),
            (&expects_503, 503, Status::Up),
            (&expects_503, 200, Status::Down),
            (&expects_503, 429, Status::Degraded),
        ] {
            let o = judge(spec, &answer(code), Duration::ZERO);
            assert_eq!(o.status, want, "{code} with {:?}: {o}", spec.expect_status);
        }
        let overloaded = Answer { retry_after: true, ..answer(503) };
        assert_eq!(judge(&default, &overloaded, Duration::ZERO).status, Status::Degraded);
    }

    #[test]
    fn body_failures_say_what_was_read() {
        let spec = HttpSpec { url: "http://x.test/".into(), body_contains: Some("ok".into()), ..HttpSpec::default() };
        let mut a = answer(200);
        a.body = Some(BodyCheck { bytes: 1024, capped: true, contains: Some(false), regex: None });
        let o = judge(&spec, &a, Duration::ZERO);
        assert_eq!(o.error_kind(), Some(ErrorKind::Body));
        assert!(o.error.unwrap().message.contains("first 1024 bytes"));
    }
}
