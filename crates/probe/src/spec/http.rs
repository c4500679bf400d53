use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{SpecError, REDACTED};

/// Caps that keep one spec from bloating the replicated log or the prober.
const MAX_URL_LEN: usize = 2048;
const MAX_HEADERS: usize = 64;
const MAX_REQUEST_BODY: usize = 64 * 1024;
const MAX_NEEDLE_LEN: usize = 4096;
const MAX_REGEX_LEN: usize = 1024;
/// Compiled-program limit for `body_regex`: a pathological pattern is a spec
/// error, not a node that runs out of memory compiling it.
pub(crate) const REGEX_SIZE_LIMIT: usize = 1 << 20;
const MAX_REDIRECTS: u8 = 20;
/// Content codings the prober decodes before a body match; a spec may ask for
/// no other in `Accept-Encoding`.
pub(crate) const ACCEPTED_ENCODINGS: [&str; 5] = ["gzip", "x-gzip", "deflate", "br", "identity"];
const MIN_TIMEOUT_MS: u64 = 100;
const MAX_TIMEOUT_MS: u64 = 300_000;

/// An HTTP(S) request and what its answer must look like.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpSpec {
    /// Absolute `http` or `https` URL, without credentials (those go in `auth`,
    /// so the URL can be shown as the monitor's target).
    pub url: String,
    /// Request method, upper case.
    pub method: String,
    /// Extra request headers, in order; repeated names are sent repeatedly.
    pub headers: Vec<Header>,
    /// Request body; empty sends none.
    pub body: String,
    /// Status codes that count as up; empty means any 2xx. A 429, or a 503 with
    /// `Retry-After`, that is not listed counts as degraded rather than down: the
    /// server is there but shedding load. A bare 503 counts as down.
    pub expect_status: Vec<StatusRange>,
    /// The body must contain this text. The body is read only until it is found.
    pub body_contains: Option<String>,
    /// The body must match this regular expression (Rust `regex` syntax). It
    /// is run over the whole (decoded) body only: a body longer than the
    /// prober's `max_body_bytes` is not judged (`Error::BodyTooLong`).
    pub body_regex: Option<String>,
    /// Follow 301, 302, 303, 307 and 308 answers (up to `max_redirects`);
    /// when false, the redirect itself is the answer that is judged. An
    /// `expect_status` with a 3xx in it is never followed either: the redirect
    /// is what is expected. Headers and `auth` go to the URL's origin only,
    /// never to another origin a redirect points at.
    pub follow_redirects: bool,
    pub max_redirects: u8,
    /// Verify the server's certificate chain and name; false still speaks TLS
    /// but accepts any certificate (self-signed internal services).
    pub verify_tls: bool,
    pub auth: HttpAuth,
    /// A tighter total timeout for this check than the monitor's; the smaller wins.
    pub timeout_ms: Option<u64>,
}

/// One request header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// Credentials sent with the request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum HttpAuth {
    #[default]
    None,
    /// `Authorization: Basic base64(username:password)`.
    Basic { username: String, password: String },
    /// `Authorization: Bearer <token>`.
    Bearer { token: String },
}

/// An inclusive range of status codes; one code is `min == max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StatusRange {
    pub min: u16,
    pub max: u16,
}

/// A parsed, validated `url`: what the executor connects to and sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub https: bool,
    /// Host without IPv6 brackets, lower case.
    pub host: String,
    pub port: u16,
    /// `Host` header value: the authority as written (brackets, non-default port).
    pub authority: String,
    /// Origin-form request target, at least `/`.
    pub path_and_query: String,
}

// === impl HttpSpec ===

impl Default for HttpSpec {
    fn default() -> Self {
        HttpSpec {
            url: String::new(),
            method: "GET".to_string(),
            headers: Vec::new(),
            body: String::new(),
            expect_status: Vec::new(),
            body_contains: None,
            body_regex: None,
            follow_redirects: true,
            max_redirects: 5,
            verify_tls: true,
            auth: HttpAuth::None,
            timeout_ms: None,
        }
    }
}

impl HttpSpec {
    pub(crate) fn validate(&self) -> Result<(), SpecError> {
        parse_url(&self.url)?;
        if self.method.is_empty() || self.method.len() > 16 || !self.method.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(SpecError::new("method", format!("{:?} is not an HTTP method", self.method)));
        }
        if self.headers.len() > MAX_HEADERS {
            return Err(SpecError::new("headers", format!("more than {MAX_HEADERS} headers")));
        }
        for (i, h) in self.headers.iter().enumerate() {
            let name = http::HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|_| SpecError::new("headers", format!("header {i}: {:?} is not a header name", h.name)))?;
            if http::HeaderValue::from_str(&h.value).is_err() {
                return Err(SpecError::new(
                    "headers",
                    format!("header {:?}: value is not a valid header value", h.name),
                ));
            }
            // The prober frames the request itself (one request, then close);
            // these would contradict that framing.
            if [http::header::CONNECTION, http::header::CONTENT_LENGTH, http::header::TRANSFER_ENCODING].contains(&name)
            {
                return Err(SpecError::new("headers", format!("{:?} is set by the prober", h.name)));
            }
            if name == http::header::ACCEPT_ENCODING {
                let unknown = h
                    .value
                    .split(',')
                    .map(|c| c.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
                    .find(|c| !c.is_empty() && !ACCEPTED_ENCODINGS.contains(&c.as_str()));
                if let Some(c) = unknown {
                    return Err(SpecError::new(
                        "headers",
                        format!("Accept-Encoding {c:?}: the prober decodes only {}", ACCEPTED_ENCODINGS.join(", ")),
                    ));
                }
            }
            if name == http::header::AUTHORIZATION && self.auth != HttpAuth::None {
                return Err(SpecError::new("headers", "an Authorization header and `auth` cannot both be given"));
            }
        }
        if self.body.len() > MAX_REQUEST_BODY {
            return Err(SpecError::new("body", format!("longer than {MAX_REQUEST_BODY} bytes")));
        }
        for r in &self.expect_status {
            r.validate()?;
        }
        if let Some(needle) = &self.body_contains {
            if needle.is_empty() || needle.len() > MAX_NEEDLE_LEN {
                return Err(SpecError::new("body_contains", format!("must be 1 to {MAX_NEEDLE_LEN} bytes")));
            }
        }
        if self.method == "HEAD" && self.reads_body() {
            let field = if self.body_contains.is_some() { "body_contains" } else { "body_regex" };
            return Err(SpecError::new(
                "method",
                format!("a HEAD answer has no body, so {field} could never match; use GET"),
            ));
        }
        if let Some(re) = &self.body_regex {
            if re.len() > MAX_REGEX_LEN {
                return Err(SpecError::new("body_regex", format!("longer than {MAX_REGEX_LEN} bytes")));
            }
            compile_regex(re).map_err(|e| SpecError::new("body_regex", e.to_string()))?;
        }
        if self.max_redirects > MAX_REDIRECTS {
            return Err(SpecError::new("max_redirects", format!("at most {MAX_REDIRECTS}")));
        }
        self.auth.validate()?;
        if let Some(t) = self.timeout_ms {
            if !(MIN_TIMEOUT_MS..=MAX_TIMEOUT_MS).contains(&t) {
                return Err(SpecError::new(
                    "timeout_ms",
                    format!("{t} ms is outside {MIN_TIMEOUT_MS}..={MAX_TIMEOUT_MS} ms"),
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn redacted(&self) -> HttpSpec {
        let mut s = self.clone();
        s.auth = match &s.auth {
            HttpAuth::None => HttpAuth::None,
            HttpAuth::Basic { username, .. } => {
                HttpAuth::Basic { username: username.clone(), password: REDACTED.to_string() }
            }
            HttpAuth::Bearer { .. } => HttpAuth::Bearer { token: REDACTED.to_string() },
        };
        for h in &mut s.headers {
            let n = h.name.to_ascii_lowercase();
            if n == "authorization"
                || n == "cookie"
                || n == "proxy-authorization"
                || n.contains("token")
                || n.contains("key")
            {
                h.value = REDACTED.to_string();
            }
        }
        s
    }

    pub(crate) fn endpoint(&self) -> Option<(String, u16)> {
        parse_url(&self.url).ok().map(|t| (t.host, t.port))
    }

    /// Whether `code` counts as up.
    pub fn expects(&self, code: u16) -> bool {
        if self.expect_status.is_empty() {
            (200..300).contains(&code)
        } else {
            self.expect_status.iter().any(|r| r.contains(code))
        }
    }

    /// Whether a redirect answer is followed: a 3xx that is expected is the
    /// answer itself (`--expect 301` could never pass otherwise).
    ///
    /// An explicit `follow_redirects: true` with a 3xx expectation cannot be
    /// refused here: the stored spec (bincode, fields in order) cannot tell it
    /// from the default, so the expectation wins.
    pub fn follows_redirects(&self) -> bool {
        self.follow_redirects && !self.expect_status.iter().any(|r| r.min <= 399 && r.max >= 300)
    }

    /// Whether the answer's body has to be read at all.
    pub(crate) fn reads_body(&self) -> bool {
        self.body_contains.is_some() || self.body_regex.is_some()
    }
}

pub(crate) fn compile_regex(re: &str) -> Result<regex::bytes::Regex, regex::Error> {
    regex::bytes::RegexBuilder::new(re).size_limit(REGEX_SIZE_LIMIT).build()
}

/// Parses and checks an `http`/`https` URL. Errors name the `url` field.
pub(crate) fn parse_url(url: &str) -> Result<Target, SpecError> {
    let bad = |why: &str| SpecError::new("url", format!("{url:?} {why}"));
    if url.len() > MAX_URL_LEN {
        return Err(SpecError::new("url", format!("longer than {MAX_URL_LEN} bytes")));
    }
    let https = if url.starts_with("https://") {
        true
    } else if url.starts_with("http://") {
        false
    } else {
        return Err(bad("is not an http:// or https:// URL"));
    };
    let uri: http::Uri = url.parse().map_err(|e| bad(&format!("is not a valid URL: {e}")))?;
    let authority = uri.authority().ok_or_else(|| bad("has no host"))?;
    if authority.as_str().contains('@') {
        return Err(bad("carries credentials; put them in `auth` instead"));
    }
    let host = authority.host();
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if bare.is_empty() {
        return Err(bad("has no host"));
    }
    if host.starts_with('[') {
        bare.parse::<std::net::Ipv6Addr>().map_err(|_| bad("has an invalid IPv6 address"))?;
    } else {
        super::check_host("url", bare).map_err(|_| bad("has an invalid host name"))?;
    }
    let port = match authority.port_u16() {
        Some(0) => return Err(bad("has port 0")),
        Some(p) => p,
        None if authority.as_str().ends_with(':') => return Err(bad("has an empty port")),
        None if https => 443,
        None => 80,
    };
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    let path_and_query =
        if path_and_query.starts_with('/') { path_and_query.to_string() } else { format!("/{path_and_query}") };
    Ok(Target {
        https,
        host: bare.to_ascii_lowercase(),
        port,
        authority: authority.as_str().to_string(),
        path_and_query,
    })
}

/// Resolves a `Location` header against the URL that answered, as a browser
/// would (absolute, scheme-relative, absolute-path and relative references).
/// Fragments are dropped: they never reach the server.
pub(crate) fn resolve_location(base: &Target, location: &str) -> String {
    let location = location.split('#').next().unwrap_or("");
    let scheme = if base.https { "https" } else { "http" };
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else if let Some(rest) = location.strip_prefix("//") {
        format!("{scheme}://{rest}")
    } else if location.starts_with('/') {
        format!("{scheme}://{}{location}", base.authority)
    } else if location.starts_with('?') {
        let path = base.path_and_query.split('?').next().unwrap_or("/");
        format!("{scheme}://{}{path}{location}", base.authority)
    } else {
        let path = base.path_and_query.split('?').next().unwrap_or("/");
        let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        let dir = if dir.is_empty() { "/" } else { dir };
        format!("{scheme}://{}{dir}{location}", base.authority)
    }
}

// === impl HttpAuth ===

impl HttpAuth {
    fn validate(&self) -> Result<(), SpecError> {
        match self {
            HttpAuth::None => Ok(()),
            HttpAuth::Basic { username, password } => {
                if username.contains(':') || username.chars().chain(password.chars()).any(char::is_control) {
                    return Err(SpecError::new("auth", "basic username must not contain ':' or control characters"));
                }
                Ok(())
            }
            HttpAuth::Bearer { token } => {
                if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(SpecError::new("auth", "bearer token must be non-empty visible ASCII"));
                }
                Ok(())
            }
        }
    }

    /// The `Authorization` header value, if any.
    pub(crate) fn header_value(&self) -> Option<String> {
        match self {
            HttpAuth::None => None,
            HttpAuth::Basic { username, password } => {
                Some(format!("Basic {}", base64(format!("{username}:{password}").as_bytes())))
            }
            HttpAuth::Bearer { token } => Some(format!("Bearer {token}")),
        }
    }
}

/// Standard base64 with padding (RFC 4648 §4), for Basic credentials only: a
/// dozen lines do not justify another dependency.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

// === impl StatusRange ===

impl StatusRange {
    pub const fn exact(code: u16) -> StatusRange {
        StatusRange { min: code, max: code }
    }

    pub fn contains(&self, code: u16) -> bool {
        (self.min..=self.max).contains(&code)
    }

    fn validate(&self) -> Result<(), SpecError> {
        if !(100..=599).contains(&self.min) || !(100..=599).contains(&self.max) {
            return Err(SpecError::new("expect_status", format!("{self} is not an HTTP status code (100-599)")));
        }
        if self.min > self.max {
            return Err(SpecError::new("expect_status", format!("{self}: the range is empty")));
        }
        Ok(())
    }

    /// Parses a comma-separated list such as `200`, `200-299,304` or `2xx,301`,
    /// the form the CLI and API take for "exact, range or one of".
    pub fn parse_list(list: &str) -> Result<Vec<StatusRange>, SpecError> {
        list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::parse).collect()
    }
}

impl FromStr for StatusRange {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad =
            || SpecError::new("expect_status", format!("{s:?} is not a status code, range (200-299) or class (2xx)"));
        let code = |t: &str| t.trim().parse::<u16>().map_err(|_| bad());
        let range = if let Some(class) = s.strip_suffix("xx").or_else(|| s.strip_suffix("XX")) {
            let c = code(class)?;
            StatusRange { min: c.saturating_mul(100), max: c.saturating_mul(100).saturating_add(99) }
        } else if let Some((lo, hi)) = s.split_once('-') {
            StatusRange { min: code(lo)?, max: code(hi)? }
        } else {
            StatusRange::exact(code(s)?)
        };
        range.validate()?;
        Ok(range)
    }
}

impl fmt::Display for StatusRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}-{}", self.min, self.max)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(f: impl FnOnce(&mut HttpSpec)) -> HttpSpec {
        let mut s = HttpSpec { url: "http://x.test/".into(), ..HttpSpec::default() };
        f(&mut s);
        s
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases: Vec<(HttpSpec, &str)> = vec![
            (spec(|s| s.url = "http://user:pw@x.test/".into()), "url"),
            (spec(|s| s.url = "http://x.test:0/".into()), "url"),
            (spec(|s| s.url = "http://[zz]/".into()), "url"),
            (spec(|s| s.url = format!("http://x.test/{}", "a".repeat(3000))), "url"),
            (spec(|s| s.method = "get".into()), "method"),
            (spec(|s| s.method = String::new()), "method"),
            (spec(|s| s.headers = vec![Header { name: "bad name".into(), value: "v".into() }]), "headers"),
            (spec(|s| s.headers = vec![Header { name: "X".into(), value: "a\nb".into() }]), "headers"),
            (spec(|s| s.headers = vec![Header { name: "Content-Length".into(), value: "1".into() }]), "headers"),
            (
                spec(|s| {
                    s.headers = vec![Header { name: "authorization".into(), value: "x".into() }];
                    s.auth = HttpAuth::Bearer { token: "t".into() };
                }),
                "headers",
            ),
            (spec(|s| s.body = "x".repeat(MAX_REQUEST_BODY + 1)), "body"),
            (spec(|s| s.expect_status = vec![StatusRange::exact(99)]), "expect_status"),
            (spec(|s| s.expect_status = vec![StatusRange { min: 300, max: 200 }]), "expect_status"),
            (spec(|s| s.body_contains = Some(String::new())), "body_contains"),
            (spec(|s| s.body_regex = Some("(".into())), "body_regex"),
            (spec(|s| s.body_regex = Some("a{1000}{1000}".into())), "body_regex"),
            (spec(|s| s.max_redirects = 50), "max_redirects"),
            (spec(|s| s.auth = HttpAuth::Basic { username: "a:b".into(), password: String::new() }), "auth"),
            (spec(|s| s.auth = HttpAuth::Bearer { token: "a b".into() }), "auth"),
            (spec(|s| s.timeout_ms = Some(5)), "timeout_ms"),
            (
                spec(|s| s.headers = vec![Header { name: "Accept-Encoding".into(), value: "gzip, zstd".into() }]),
                "headers",
            ),
            (
                spec(|s| {
                    s.method = "HEAD".into();
                    s.body_contains = Some("ok".into());
                }),
                "method",
            ),
        ];
        for (s, field) in cases {
            let err = s.validate().unwrap_err();
            assert_eq!(err.field, field, "{s:?}: {err}");
        }
    }

    #[test]
    fn a_3xx_expectation_is_never_followed() {
        for (expect, follows) in [("", true), ("200", true), ("301", false), ("200,3xx", false), ("200-399", false)] {
            let s = spec(|s| s.expect_status = StatusRange::parse_list(expect).unwrap());
            assert_eq!(s.follows_redirects(), follows, "{expect}");
        }
        let s = spec(|s| s.follow_redirects = false);
        assert!(!s.follows_redirects());
        let s = spec(|s| s.headers = vec![Header { name: "Accept-Encoding".into(), value: "gzip;q=1, br".into() }]);
        s.validate().unwrap();
    }

    #[test]
    fn urls_parse_into_targets() {
        let t = parse_url("https://Example.test:8443/a/b?c=d#frag").unwrap();
        assert_eq!(
            t,
            Target {
                https: true,
                host: "example.test".into(),
                port: 8443,
                authority: "Example.test:8443".into(),
                path_and_query: "/a/b?c=d".into(),
            }
        );
        let t = parse_url("http://[::1]").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.path_and_query.as_str()), ("::1", 80, "/"));
        assert_eq!(parse_url("http://x.test?q").unwrap().path_and_query, "/?q");
    }

    #[test]
    fn locations_resolve_like_a_browser() {
        let base = parse_url("https://a.test:8443/dir/page?x=1").unwrap();
        for (loc, want) in [
            ("http://b.test/", "http://b.test/"),
            ("//c.test/x", "https://c.test/x"),
            ("/root", "https://a.test:8443/root"),
            ("other", "https://a.test:8443/dir/other"),
            ("?y=2", "https://a.test:8443/dir/page?y=2"),
            ("/p#frag", "https://a.test:8443/p"),
        ] {
            assert_eq!(resolve_location(&base, loc), want, "{loc}");
        }
    }

    #[test]
    fn status_expectations() {
        let s = spec(|_| {});
        assert!(s.expects(200) && s.expects(299) && !s.expects(301) && !s.expects(503));
        let s = spec(|s| s.expect_status = StatusRange::parse_list("200, 301-302,4xx").unwrap());
        assert!(s.expects(200) && s.expects(302) && s.expects(404) && !s.expects(201) && !s.expects(500));
        for bad in ["abc", "6xx", "200-", "0", "1000"] {
            assert_eq!(StatusRange::parse_list(bad).unwrap_err().field, "expect_status", "{bad}");
        }
        assert_eq!(StatusRange::parse_list("200-299").unwrap()[0].to_string(), "200-299");
    }

    #[test]
    fn basic_auth_is_rfc4648_base64() {
        for (input, want) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg==")] {
            assert_eq!(base64(input.as_bytes()), want);
        }
        let auth = HttpAuth::Basic { username: "Aladdin".into(), password: "open sesame".into() };
        assert_eq!(auth.header_value().unwrap(), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
    }
}
