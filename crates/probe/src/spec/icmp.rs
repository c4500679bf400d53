use serde::{Deserialize, Serialize};

use super::{check_host, SpecError};

/// Echo requests to `host`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IcmpSpec {
    pub host: String,
    /// Echo requests per check.
    pub count: u16,
    /// Gap between requests; they are not sent back to back, so one dropped
    /// burst does not read as total loss.
    pub interval_ms: u64,
    /// Down when more than this share of requests go unanswered.
    pub max_loss_percent: u8,
    /// Degraded when the mean round trip is slower than this.
    pub max_rtt_ms: Option<u64>,
}

impl Default for IcmpSpec {
    fn default() -> Self {
        // Three pings, one of which may be lost: a single dropped packet on a busy
        // link is not an outage.
        IcmpSpec { host: String::new(), count: 3, interval_ms: 200, max_loss_percent: 34, max_rtt_ms: None }
    }
}

impl IcmpSpec {
    pub(crate) fn validate(&self) -> Result<(), SpecError> {
        check_host("host", &self.host)?;
        if !(1..=100).contains(&self.count) {
            return Err(SpecError::new("count", "must be 1 to 100"));
        }
        if !(10..=10_000).contains(&self.interval_ms) {
            return Err(SpecError::new("interval_ms", "must be 10 to 10000 ms"));
        }
        if self.max_loss_percent > 100 {
            return Err(SpecError::new("max_loss_percent", "must be 0 to 100"));
        }
        if self.max_rtt_ms == Some(0) {
            return Err(SpecError::new("max_rtt_ms", "must be positive"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bad_field_is_named() {
        let ok = IcmpSpec { host: "127.0.0.1".into(), ..IcmpSpec::default() };
        ok.validate().unwrap();
        for (spec, field) in [
            (IcmpSpec { host: "a b".into(), ..ok.clone() }, "host"),
            (IcmpSpec { count: 0, ..ok.clone() }, "count"),
            (IcmpSpec { interval_ms: 1, ..ok.clone() }, "interval_ms"),
            (IcmpSpec { max_loss_percent: 101, ..ok.clone() }, "max_loss_percent"),
            (IcmpSpec { max_rtt_ms: Some(0), ..ok.clone() }, "max_rtt_ms"),
        ] {
            assert_eq!(spec.validate().unwrap_err().field, field, "{spec:?}");
        }
    }
}
