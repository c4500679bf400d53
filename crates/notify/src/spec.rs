//! A channel as the replicated state stores it: plain structs and externally
//! tagged enums only, because the store encodes them with bincode.

use serde::{Deserialize, Serialize};

/// What a secret reads as on every read path.
pub const REDACTED: &str = "<redacted>";

const MAX_URL: usize = 2048;
const MAX_TEXT: usize = 256;
const MAX_HEADERS: usize = 32;
const MAX_RECIPIENTS: usize = 50;
/// Templates are short documents; a big one is a mistake.
pub const MAX_TEMPLATE: usize = 16 * 1024;

/// A refused field: `field` names the input at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

fn invalid(field: &str, message: impl Into<String>) -> Invalid {
    Invalid { field: field.to_string(), message: message.into() }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelSpec {
    pub kind: ChannelKind,
    /// Subject (email) or title (ntfy, Slack heading) template; None = the kind's default.
    pub subject: Option<String>,
    /// Body template; None = the kind's default.
    pub body: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub name: String,
    pub value: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SmtpSecurity {
    /// No TLS: only for a relay on the same host or network.
    Plain,
    /// Plain connect, then STARTTLS (required, not opportunistic).
    StartTls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
}

impl SmtpSecurity {
    pub fn as_str(self) -> &'static str {
        match self {
            SmtpSecurity::Plain => "plain",
            SmtpSecurity::StartTls => "starttls",
            SmtpSecurity::Tls => "tls",
        }
    }

    pub fn parse(s: &str) -> Option<SmtpSecurity> {
        match s {
            "plain" | "none" => Some(SmtpSecurity::Plain),
            "starttls" => Some(SmtpSecurity::StartTls),
            "tls" | "smtps" => Some(SmtpSecurity::Tls),
            _ => None,
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            SmtpSecurity::Plain => 25,
            SmtpSecurity::StartTls => 587,
            SmtpSecurity::Tls => 465,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChannelKind {
    /// JSON POST; `secret` signs the body (HMAC-SHA256) in a header.
    Webhook { url: String, headers: Vec<Header>, secret: Option<String> },
    Smtp {
        host: String,
        port: u16,
        security: SmtpSecurity,
        username: Option<String>,
        password: Option<String>,
        from: String,
        to: Vec<String>,
    },
    /// Slack incoming webhook (the URL is the secret).
    Slack { url: String },
    /// Discord webhook (the URL is the secret).
    Discord { url: String },
    /// PagerDuty Events API v2. `url` defaults to PagerDuty's enqueue endpoint.
    PagerDuty { routing_key: String, url: String },
    /// ntfy: `url` is the topic URL (`https://ntfy.sh/mytopic`); `token` an access token.
    Ntfy { url: String, token: Option<String>, priority: Option<u8> },
}

/// PagerDuty's Events API v2 endpoint.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

impl ChannelKind {
    pub fn name(&self) -> &'static str {
        match self {
            ChannelKind::Webhook { .. } => "webhook",
            ChannelKind::Smtp { .. } => "smtp",
            ChannelKind::Slack { .. } => "slack",
            ChannelKind::Discord { .. } => "discord",
            ChannelKind::PagerDuty { .. } => "pagerduty",
            ChannelKind::Ntfy { .. } => "ntfy",
        }
    }
}

/// An http(s) URL with a host, at most [`MAX_URL`] bytes.
pub fn check_url(field: &str, url: &str) -> Result<(), Invalid> {
    if url.len() > MAX_URL {
        return Err(invalid(field, format!("longer than {MAX_URL} bytes")));
    }
    let uri: http::Uri = url.parse().map_err(|_| invalid(field, format!("{url:?} is not a URL")))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(invalid(field, "must be an http:// or https:// URL")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid(field, "must name a host"));
    }
    Ok(())
}

fn check_text(field: &str, value: &str, max: usize) -> Result<(), Invalid> {
    if value.trim().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(invalid(field, format!("longer than {max} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// `local@domain`, no spaces or angle brackets (a display name is not accepted here).
fn check_address(field: &str, value: &str) -> Result<(), Invalid> {
    check_text(field, value, MAX_TEXT)?;
    let ok = value
        .split_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty() && !domain.contains('@'))
        && !value.chars().any(|c| c.is_whitespace() || c == '<' || c == '>' || c == ',');
    if !ok {
        return Err(invalid(field, format!("{value:?} is not an email address (user@example.com)")));
    }
    Ok(())
}

/// An HTTP header name (RFC 9110 token) and a value without control characters.
fn check_header(h: &Header) -> Result<(), Invalid> {
    if http::HeaderName::from_bytes(h.name.as_bytes()).is_err() {
        return Err(invalid("headers", format!("{:?} is not a header name", h.name)));
    }
    let reserved = ["content-type", "content-length", "host", "idempotency-key", "x-uptime-fencing-token"];
    if reserved.contains(&h.name.to_ascii_lowercase().as_str()) || h.name.to_ascii_lowercase().starts_with("x-uptime-")
    {
        return Err(invalid("headers", format!("{} is set by the dispatcher and cannot be overridden", h.name)));
    }
    if h.value.len() > MAX_URL || http::HeaderValue::from_str(&h.value).is_err() {
        return Err(invalid("headers", format!("the value of {} is not a valid header value", h.name)));
    }
    Ok(())
}

impl ChannelSpec {
    /// Checks that need nothing but the spec; the store runs them again in apply.
    /// Template syntax is checked where templates are rendered (the `send` feature).
    pub fn validate(&self) -> Result<(), Invalid> {
        for (field, t) in [("subject", &self.subject), ("body", &self.body)] {
            if let Some(t) = t {
                if t.len() > MAX_TEMPLATE {
                    return Err(invalid(field, format!("template longer than {MAX_TEMPLATE} bytes")));
                }
            }
        }
        match &self.kind {
            ChannelKind::Webhook { url, headers, secret } => {
                check_url("url", url)?;
                if headers.len() > MAX_HEADERS {
                    return Err(invalid("headers", format!("at most {MAX_HEADERS}")));
                }
                headers.iter().try_for_each(check_header)?;
                if let Some(s) = secret {
                    check_text("secret", s, MAX_TEXT)?;
                }
            }
            ChannelKind::Smtp { host, port, username, password, from, to, .. } => {
                check_text("host", host, MAX_TEXT)?;
                if host.contains(['/', ' ', '@']) {
                    return Err(invalid("host", format!("{host:?} is not a host name")));
                }
                if *port == 0 {
                    return Err(invalid("port", "must be 1 to 65535"));
                }
                match (username, password) {
                    (Some(u), Some(p)) => {
                        check_text("username", u, MAX_TEXT)?;
                        check_text("password", p, MAX_TEXT)?;
                    }
                    (None, None) => {}
                    (Some(_), None) => return Err(invalid("password", "a username needs a password")),
                    (None, Some(_)) => return Err(invalid("username", "a password needs a username")),
                }
                check_address("from", from)?;
                if to.is_empty() {
                    return Err(invalid("to", "name at least one recipient"));
                }
                if to.len() > MAX_RECIPIENTS {
                    return Err(invalid("to", format!("at most {MAX_RECIPIENTS} recipients")));
                }
                for t in to {
                    check_address("to", t)?;
                }
            }
            ChannelKind::Slack { url } | ChannelKind::Discord { url } => check_url("url", url)?,
            ChannelKind::PagerDuty { routing_key, url } => {
                check_text("routing_key", routing_key, MAX_TEXT)?;
                check_url("url", url)?;
            }
            ChannelKind::Ntfy { url, token, priority } => {
                check_url("url", url)?;
                if let Some(t) = token {
                    check_text("token", t, MAX_TEXT)?;
                }
                if let Some(p) = priority {
                    if !(1..=5).contains(p) {
                        return Err(invalid("priority", "ntfy priorities are 1 (min) to 5 (max)"));
                    }
                }
            }
        }
        Ok(())
    }

    /// The spec with every secret replaced by [`REDACTED`]: what every read path
    /// shows. Slack and Discord webhook URLs are secrets themselves, so only
    /// their scheme and host remain; a webhook URL's query and user info go too.
    pub fn redacted(&self) -> ChannelSpec {
        let mut out = self.clone();
        match &mut out.kind {
            ChannelKind::Webhook { url, headers, secret } => {
                *url = redact_url(url, false);
                for h in headers {
                    if sensitive_header(&h.name) {
                        h.value = REDACTED.into();
                    }
                }
                if secret.is_some() {
                    *secret = Some(REDACTED.into());
                }
            }
            ChannelKind::Smtp { password, .. } => {
                if password.is_some() {
                    *password = Some(REDACTED.into());
                }
            }
            ChannelKind::Slack { url } | ChannelKind::Discord { url } => *url = redact_url(url, true),
            ChannelKind::PagerDuty { routing_key, .. } => *routing_key = REDACTED.into(),
            ChannelKind::Ntfy { token, .. } => {
                if token.is_some() {
                    *token = Some(REDACTED.into());
                }
            }
        }
        out
    }

    /// Every secret value in the spec, so a caller can scrub them from an error
    /// text a dependency produced (a URL echoed back, for example).
    pub fn secrets(&self) -> Vec<String> {
        let mut out = Vec::new();
        match &self.kind {
            ChannelKind::Webhook { url, headers, secret } => {
                out.extend(url_secret_parts(url));
                out.extend(headers.iter().filter(|h| sensitive_header(&h.name)).map(|h| h.value.clone()));
                out.extend(secret.clone());
            }
            ChannelKind::Smtp { password, .. } => out.extend(password.clone()),
            ChannelKind::Slack { url } | ChannelKind::Discord { url } => {
                if let Ok(uri) = url.parse::<http::Uri>() {
                    if let Some(pq) = uri.path_and_query() {
                        if pq.as_str().len() > 1 {
                            out.push(pq.as_str().to_string());
                        }
                    }
                }
                out.push(url.clone());
            }
            ChannelKind::PagerDuty { routing_key, .. } => out.push(routing_key.clone()),
            ChannelKind::Ntfy { token, .. } => out.extend(token.clone()),
        }
        out.retain(|s| s.len() >= 4);
        out
    }
}

/// Headers whose values are credentials.
pub fn sensitive_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "authorization"
        || n == "proxy-authorization"
        || n == "cookie"
        || n.contains("token")
        || n.contains("secret")
        || n.contains("key")
        || n.contains("auth")
        || n.contains("password")
}

fn url_secret_parts(url: &str) -> Vec<String> {
    let Ok(uri) = url.parse::<http::Uri>() else { return vec![url.to_string()] };
    let mut out = Vec::new();
    if let Some(q) = uri.query() {
        out.push(q.to_string());
    }
    if let Some(auth) = uri.authority() {
        if let Some((userinfo, _)) = auth.as_str().rsplit_once('@') {
            out.push(userinfo.to_string());
        }
    }
    out
}

/// `whole`: only scheme and host remain (the path is the secret). Otherwise the
/// user info and the query are replaced.
fn redact_url(url: &str, whole: bool) -> String {
    let Ok(uri) = url.parse::<http::Uri>() else { return REDACTED.into() };
    let scheme = uri.scheme_str().unwrap_or("https");
    let host = uri.host().unwrap_or("");
    let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
    if whole {
        return format!("{scheme}://{host}{port}/{REDACTED}");
    }
    let path = uri.path();
    let query = if uri.query().is_some() { format!("?{REDACTED}") } else { String::new() };
    let user = match uri.authority().map(|a| a.as_str().contains('@')) {
        Some(true) => format!("{REDACTED}@"),
        _ => String::new(),
    };
    format!("{scheme}://{user}{host}{port}{path}{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook(url: &str) -> ChannelSpec {
        ChannelSpec {
            kind: ChannelKind::Webhook {
                url: url.into(),
                headers: vec![Header { name: "Authorization".into(), value: "Bearer s3cret-value".into() }],
                secret: Some("hmac-key".into()),
            },
            subject: None,
            body: None,
        }
    }

    #[test]
    fn redaction_removes_every_secret() {
        let spec = webhook("https://user:pw@hooks.example.com/in?token=abcdef");
        spec.validate().unwrap();
        let shown = format!("{:?}", spec.redacted());
        for s in ["s3cret-value", "hmac-key", "abcdef", "user:pw"] {
            assert!(!shown.contains(s), "{s} leaked in {shown}");
        }
        assert!(shown.contains("hooks.example.com/in"), "{shown}");
        let slack = ChannelSpec {
            kind: ChannelKind::Slack { url: "https://hooks.slack.com/services/T0/B0/XYZ".into() },
            subject: None,
            body: None,
        };
        assert!(!format!("{:?}", slack.redacted()).contains("XYZ"));
        assert!(slack.secrets().iter().any(|s| s.contains("XYZ")));
    }

    #[test]
    fn bad_specs_name_the_field() {
        let cases: Vec<(ChannelKind, &str)> = vec![
            (ChannelKind::Webhook { url: "ftp://x".into(), headers: vec![], secret: None }, "url"),
            (ChannelKind::Webhook { url: "not a url".into(), headers: vec![], secret: None }, "url"),
            (
                ChannelKind::Webhook {
                    url: "http://x".into(),
                    headers: vec![Header { name: "Idempotency-Key".into(), value: "1".into() }],
                    secret: None,
                },
                "headers",
            ),
            (
                ChannelKind::Smtp {
                    host: "".into(),
                    port: 25,
                    security: SmtpSecurity::Plain,
                    username: None,
                    password: None,
                    from: "a@b".into(),
                    to: vec!["c@d".into()],
                },
                "host",
            ),
            (
                ChannelKind::Smtp {
                    host: "mail".into(),
                    port: 25,
                    security: SmtpSecurity::Plain,
                    username: None,
                    password: None,
                    from: "a@b".into(),
                    to: vec![],
                },
                "to",
            ),
            (
                ChannelKind::Smtp {
                    host: "mail".into(),
                    port: 25,
                    security: SmtpSecurity::Plain,
                    username: Some("u".into()),
                    password: None,
                    from: "a@b".into(),
                    to: vec!["c@d".into()],
                },
                "password",
            ),
            (ChannelKind::PagerDuty { routing_key: " ".into(), url: PAGERDUTY_EVENTS_URL.into() }, "routing_key"),
            (ChannelKind::Ntfy { url: "https://ntfy.sh/t".into(), token: None, priority: Some(9) }, "priority"),
        ];
        for (kind, field) in cases {
            let spec = ChannelSpec { kind, subject: None, body: None };
            assert_eq!(spec.validate().unwrap_err().field, field, "{spec:?}");
        }
    }
}
