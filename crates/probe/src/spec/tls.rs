use serde::{Deserialize, Serialize};

use super::{check_host, check_port, SpecError};

/// A TLS handshake with `host:port` to read the leaf certificate's expiry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TlsSpec {
    pub host: String,
    pub port: u16,
    /// Server name sent in the handshake and checked against the certificate;
    /// defaults to `host` (an IP address host sends no SNI and is checked as an IP).
    pub sni: Option<String>,
    /// Degraded when the certificate expires within this many days.
    pub warn_days: u32,
    /// Down when the certificate expires within this many days.
    pub critical_days: u32,
    /// Also down when the chain does not verify (untrusted issuer, wrong name).
    /// False judges expiry alone, for self-signed internal endpoints.
    pub verify_chain: bool,
}

impl Default for TlsSpec {
    fn default() -> Self {
        // Let's Encrypt renews at 30 days left; 14 gives a failed renewal two
        // weeks of warning before 7 turns it into an outage.
        TlsSpec { host: String::new(), port: 443, sni: None, warn_days: 14, critical_days: 7, verify_chain: true }
    }
}

impl TlsSpec {
    pub(crate) fn validate(&self) -> Result<(), SpecError> {
        check_host("host", &self.host)?;
        check_port("port", self.port)?;
        if let Some(sni) = &self.sni {
            check_host("sni", sni)?;
        }
        if self.warn_days > 3650 {
            return Err(SpecError::new("warn_days", "at most 3650"));
        }
        if self.critical_days > self.warn_days {
            return Err(SpecError::new("critical_days", "must not exceed warn_days"));
        }
        Ok(())
    }

    /// The name the handshake sends and the certificate is checked against.
    pub fn server_name(&self) -> &str {
        self.sni.as_deref().unwrap_or(&self.host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bad_field_is_named() {
        let ok = TlsSpec { host: "x.test".into(), ..TlsSpec::default() };
        ok.validate().unwrap();
        for (spec, field) in [
            (TlsSpec { host: String::new(), ..ok.clone() }, "host"),
            (TlsSpec { port: 0, ..ok.clone() }, "port"),
            (TlsSpec { sni: Some("bad name".into()), ..ok.clone() }, "sni"),
            (TlsSpec { warn_days: 5000, ..ok.clone() }, "warn_days"),
            (TlsSpec { critical_days: 30, ..ok.clone() }, "critical_days"),
        ] {
            assert_eq!(spec.validate().unwrap_err().field, field, "{spec:?}");
        }
    }
}
