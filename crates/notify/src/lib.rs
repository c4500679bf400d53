//! Notification channels.
//!
//! [`spec`] holds what the replicated state stores about a channel (always
//! built); the `send` feature adds rendering through templates and delivery
//! through the channel's real protocol.

pub mod alert;
pub mod spec;

pub use alert::{Alert, AlertKind, Fencing, MonitorInfo, NodeView};
pub use spec::{ChannelKind, ChannelSpec, Header, Invalid, SmtpSecurity, PAGERDUTY_EVENTS_URL, REDACTED};
