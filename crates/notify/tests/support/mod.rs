//! Real receivers for the delivery tests, on loopback only: an HTTP(S) sink
//! and an SMTP server, plus the alerts and certificates they are fed.
//!
//! Every receiver records what it saw *before* it answers, and `deliver`
//! returns only after the answer, so a test reads the record right after
//! `deliver` without sleeping.

#![allow(dead_code)]

pub mod alerts;
pub mod http_sink;
pub mod mail;
pub mod smtp_server;
pub mod tls;

/// Aborts a spawned receiver when the test drops its handle.
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
