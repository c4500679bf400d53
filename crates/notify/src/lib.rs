//! Notification channels.
//!
//! [`spec`] holds what the replicated state stores about a channel (always
//! built); the `send` feature adds rendering through templates and delivery
//! through the channel's real protocol.
//!
//! # Layout
//!
//! - [`spec`]: [`ChannelSpec`], its validation and redaction.
//! - [`alert`]: [`Alert`], the variables a template sees, and [`Fencing`],
//!   the identity every delivery carries.
//! - `render` (feature `send`): [`check_templates`] and [`render()`], with each
//!   kind's default templates.
//! - `send` (feature `send`): [`deliver`] over a reusable [`Sender`]:
//!   webhook, SMTP, Slack, Discord, PagerDuty and ntfy.
//!
//! # Example
//!
//! ```no_run
//! # #[cfg(feature = "send")]
//! # async fn example(alert: uptime_notify::Alert) {
//! use uptime_notify::{deliver, ChannelKind, ChannelSpec, Fencing, Sender};
//!
//! let spec = ChannelSpec {
//!     kind: ChannelKind::Slack { url: "https://hooks.slack.com/services/T0/B0/XYZ".into() },
//!     subject: None,
//!     body: Some("{{ monitor.name }} is {{ verdict }}".into()),
//! };
//! spec.validate().unwrap();
//! uptime_notify::check_templates(&spec).unwrap();
//! let sender = Sender::new();
//! match deliver(&spec, &alert, &Fencing::new(alert.notification_id, 3, 1, 42), &sender).await {
//!     Ok(delivered) => println!("{}", delivered.detail),
//!     Err(e) if e.retryable => println!("retry later: {e}"),
//!     Err(e) => println!("refused: {e}"),
//! }
//! # }
//! ```

pub mod alert;
#[cfg(feature = "send")]
pub mod render;
#[cfg(feature = "send")]
pub mod send;
pub mod spec;

pub use alert::{Alert, AlertKind, Fencing, MonitorInfo, NodeView};
#[cfg(feature = "send")]
pub use render::{check_templates, render, Rendered};
#[cfg(feature = "send")]
pub use send::{deliver, post_json, truncate, verify_signature, Delivered, SendError, Sender};
pub use spec::{ChannelKind, ChannelSpec, Header, Invalid, SmtpSecurity, PAGERDUTY_EVENTS_URL, REDACTED};
