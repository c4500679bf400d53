use serde::{Deserialize, Serialize};

use crate::model::{Monitor, MonitorDraft};

/// The application payload of a log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The leader's wall clock when it proposed the entry, in Unix milliseconds.
    /// Apply uses `max(previous, at_ms)`, so a clock step back never moves state time back.
    pub at_ms: u64,
    pub command: Command,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    CreateMonitor(MonitorDraft),
    DeleteMonitor { id: u64 },
    SetSetting { key: String, value: String },
}

/// What apply answers for an entry. A refused command is an answer, not a storage
/// error: the entry stays in the log and is refused the same way on every node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Done,
    Monitor(Monitor),
    Deleted { id: u64 },
    Rejected(Rejection),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectCode {
    Invalid,
    NotFound,
    Conflict,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct Rejection {
    pub code: RejectCode,
    pub message: String,
    /// The input field at fault, when there is one.
    pub field: Option<String>,
}

impl Rejection {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        let message = format!("{field}: {}", message.into());
        Rejection { code: RejectCode::Invalid, message, field: Some(field) }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Rejection { code: RejectCode::NotFound, message: message.into(), field: None }
    }

    pub fn conflict(field: impl Into<String>, message: impl Into<String>) -> Self {
        Rejection { code: RejectCode::Conflict, message: message.into(), field: Some(field.into()) }
    }
}

const MAX_SETTING_BYTES: usize = 64 * 1024;

impl Command {
    /// Checks that need no state; apply repeats them.
    pub fn validate(&self) -> Result<(), Rejection> {
        match self {
            Command::CreateMonitor(draft) => draft.validate(),
            Command::DeleteMonitor { .. } => Ok(()),
            Command::SetSetting { key, value } => {
                if key.is_empty() || key.len() > 200 {
                    Err(Rejection::invalid("key", "must be 1 to 200 bytes"))
                } else if value.len() > MAX_SETTING_BYTES {
                    Err(Rejection::invalid("value", format!("longer than {MAX_SETTING_BYTES} bytes")))
                } else {
                    Ok(())
                }
            }
        }
    }
}
