//! Cluster settings.

use super::*;

pub async fn get_setting(cluster: &Cluster, key: String, linearizable: bool) -> Result<Setting, ApiError> {
    read_barrier(cluster, linearizable).await?;
    match cluster.reader().setting(&key)? {
        Some(value) => Ok(Setting { key, value }),
        None => Err(ApiError::not_found(format!("no setting {key:?}"))),
    }
}

pub async fn put_setting(cluster: &Cluster, key: String, value: String) -> Result<Setting, ApiError> {
    cluster.write(Command::SetSetting { key: key.clone(), value: value.clone() }).await?;
    Ok(Setting { key, value })
}
