//! Where a subscription's circuit ([`Circuit`], the rule is `breaker.rs`) is stored: a setting
//! of its own, `circuit/QUEUE/NAME`, apart from the subscription's (`sub/QUEUE/NAME`), so a
//! change of circuit never counts as a change of settings (which restarts the lane). Written
//! on each change of state only (opened, a probe failed, closed), never per request.

use crate::error::Result;

use super::breaker::Circuit;
use super::Push;

fn circuit_key(queue: &str, name: &str) -> String {
    format!("circuit/{queue}/{name}")
}

impl Push {
    /// The stored circuit of a subscription (closed if none was stored), a probe that was out
    /// counted as not answered.
    pub async fn circuit(&self, queue: &str, name: &str) -> Result<Circuit> {
        let key = circuit_key(queue, name);
        // The prefix may match longer names too: the key must match exactly.
        for (k, v) in self.core.store.meta_list(&key).await? {
            if k == key {
                return Ok(serde_json::from_str::<Circuit>(&v)
                    .map(Circuit::restored)
                    .unwrap_or_else(|e| {
                        tracing::error!(key, error = %e, "ignoring an unreadable circuit");
                        Circuit::default()
                    }));
            }
        }
        Ok(Circuit::default())
    }

    /// Store a subscription's circuit (durable on return); a closed one is forgotten.
    pub async fn save_circuit(&self, queue: &str, name: &str, c: &Circuit) -> Result<()> {
        let value = (*c != Circuit::default())
            .then(|| serde_json::to_string(c).expect("circuit serializes"));
        self.core
            .store
            .meta_put(&circuit_key(queue, name), value)
            .await
    }

    pub(super) async fn forget_circuit(&self, queue: &str, name: &str) -> Result<()> {
        self.save_circuit(queue, name, &Circuit::default()).await
    }
}
