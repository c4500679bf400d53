//! Times as the API shows them.

/// Unix milliseconds as RFC 3339 (UTC, millisecond precision).
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
}
