//! Cluster settings.

use super::*;

/// A cluster setting, `GET|PUT /api/v1/settings/{key}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setting {
    pub key: String,
    pub value: String,
}

/// The body of `PUT /api/v1/settings/{key}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingValue {
    pub value: String,
}
