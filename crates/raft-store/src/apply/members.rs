//! Membership: what leaves the verdicts when a node leaves the cluster.

use std::collections::BTreeSet;

use super::*;

impl Apply<'_> {
    /// Nodes `gone` left the membership: their observations leave every
    /// monitor's verdict and the per-node view, and every monitor is
    /// re-evaluated without them. Deterministic: it runs where the membership
    /// entry that drops them is applied, on every node alike.
    pub(crate) fn forget_nodes(&mut self, gone: &BTreeSet<u64>) -> Result<()> {
        if gone.is_empty() {
            return Ok(());
        }
        let keys: Vec<Vec<u8>> = self
            .scan::<Observation>(OBSERVATIONS, &[])?
            .into_iter()
            .filter(|(k, _)| k.len() >= 16 && gone.contains(&read_u64(&k[8..])))
            .map(|(k, _)| k)
            .collect();
        if keys.is_empty() {
            return Ok(());
        }
        for k in keys {
            self.del(OBSERVATIONS, &k)?;
        }
        self.reevaluate_all()
    }
}
