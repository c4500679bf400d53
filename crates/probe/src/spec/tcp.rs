use serde::{Deserialize, Serialize};

use super::{check_host, check_port, SpecError};

const MAX_SEND: usize = 4096;
const MAX_BANNER: usize = 1024;

/// Connect to `host:port`; optionally send bytes and expect a banner.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TcpSpec {
    pub host: String,
    pub port: u16,
    /// Written once the connection is up (e.g. `"PING\r\n"`), before reading.
    pub send: Option<String>,
    /// Text the server's first bytes must contain (e.g. `"SSH-2.0"`); without it
    /// a completed connect is enough.
    pub expect_banner: Option<String>,
}

impl TcpSpec {
    pub(crate) fn validate(&self) -> Result<(), SpecError> {
        check_host("host", &self.host)?;
        check_port("port", self.port)?;
        if self.send.as_ref().is_some_and(|s| s.is_empty() || s.len() > MAX_SEND) {
            return Err(SpecError::new("send", format!("must be 1 to {MAX_SEND} bytes")));
        }
        if self.expect_banner.as_ref().is_some_and(|s| s.is_empty() || s.len() > MAX_BANNER) {
            return Err(SpecError::new("expect_banner", format!("must be 1 to {MAX_BANNER} bytes")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bad_field_is_named() {
        let ok = TcpSpec { host: "x.test".into(), port: 22, ..TcpSpec::default() };
        ok.validate().unwrap();
        for (spec, field) in [
            (TcpSpec { host: String::new(), ..ok.clone() }, "host"),
            (TcpSpec { port: 0, ..ok.clone() }, "port"),
            (TcpSpec { send: Some(String::new()), ..ok.clone() }, "send"),
            (TcpSpec { expect_banner: Some("x".repeat(MAX_BANNER + 1)), ..ok.clone() }, "expect_banner"),
        ] {
            assert_eq!(spec.validate().unwrap_err().field, field, "{spec:?}");
        }
    }
}
