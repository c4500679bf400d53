//! Idempotent writes: a keyed command is applied once per key within a window of state time.

use super::*;

/// The first answer to a keyed write (`Command::Idempotent`).
#[derive(Serialize, Deserialize)]
pub(crate) struct Remembered {
    pub(crate) at_ms: u64,
    /// SHA-256 of the command's encoding: the same key with another command is refused.
    fingerprint: [u8; 32],
    pub(crate) response: Response,
}

pub(super) fn request_time_key(at_ms: u64, key: &str) -> Vec<u8> {
    let mut k = at_ms.to_be_bytes().to_vec();
    k.extend_from_slice(key.as_bytes());
    k
}

impl Apply<'_> {
    /// Applies `command` once per `key` (see `Command::Idempotent`).
    pub(super) fn idempotent(&mut self, key: &str, command: &Command) -> Result<Response> {
        let fingerprint: [u8; 32] = Sha256::digest(codec::encode(command)?).into();
        if let Some(seen) = self.get::<Remembered>(REQUESTS, key.as_bytes())? {
            if self.now < seen.at_ms.saturating_add(IDEMPOTENCY_WINDOW_MS) {
                if seen.fingerprint == fingerprint {
                    return Ok(seen.response);
                }
                return reject(Rejection::conflict(
                    "idempotency_key",
                    "this key was used for a different request; use a new key per request",
                ));
            }
            self.forget_request(key, seen.at_ms)?;
        }
        let response = self.command(command)?;
        let remembered = Remembered { at_ms: self.now, fingerprint, response: response.clone() };
        self.put(REQUESTS, key.as_bytes(), &remembered)?;
        self.put_raw(REQUEST_TIMES, &request_time_key(self.now, key), &[])?;
        Ok(response)
    }

    pub(super) fn forget_request(&mut self, key: &str, at_ms: u64) -> Result<()> {
        self.del(REQUESTS, key.as_bytes())?;
        self.del(REQUEST_TIMES, &request_time_key(at_ms, key))?;
        Ok(())
    }

    /// Forgets keys older than the window: the table stays as small as the
    /// keyed write rate times the window.
    pub(super) fn expire_requests(&mut self) -> Result<()> {
        let cutoff = self.now.saturating_sub(IDEMPOTENCY_WINDOW_MS);
        let expired: Vec<Vec<u8>> = {
            let t = &self.tables[ix(REQUEST_TIMES)];
            let mut keys = Vec::new();
            for row in t.range::<&[u8]>(..cutoff.to_be_bytes().as_slice()).map_err(db)? {
                let (k, _) = row.map_err(db)?;
                keys.push(k.value().to_vec());
            }
            keys
        };
        for k in expired {
            self.del(REQUEST_TIMES, &k)?;
            self.del(REQUESTS, &k[8..])?;
        }
        Ok(())
    }
}
