//! Several nodes on one shared store (Redis): follow what the others announce (wake long polls
//! for queues that got messages there, re-read subscriptions and schedules they changed), name
//! this node, and keep the list of nodes alive (a heartbeat in housekeeping).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::broadcast;

use super::Engine;

pub(super) struct Nodes {
    /// This node's identity and description.
    me: Mutex<Option<(String, String)>>,
    /// Descriptions of the nodes seen alive.
    alive: Mutex<Vec<String>>,
    /// When housekeeping last re-read shared settings.
    refreshed_at: AtomicI64,
}

impl Default for Nodes {
    fn default() -> Self {
        Nodes {
            me: Mutex::new(None),
            alive: Mutex::new(Vec::new()),
            refreshed_at: AtomicI64::new(i64::MIN / 2),
        }
    }
}

impl Engine {
    /// A shared store tells us what other nodes did: wake long polls for queues that got
    /// messages, and re-read subscriptions, schedules and timers when they changed.
    pub(super) fn follow_other_nodes(self: &Arc<Self>, mut rx: broadcast::Receiver<String>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(self);
        rt.spawn(async move {
            loop {
                let msg = rx.recv().await;
                let Some(engine) = weak.upgrade() else { return };
                match msg {
                    Ok(m) => {
                        if let Some(q) = m.strip_prefix("q:") {
                            engine.core.wake(q, 1);
                        } else if m.starts_with("meta:sub/") {
                            if let Err(e) = engine.push.reload().await {
                                tracing::warn!(error = %e, "could not re-read subscriptions");
                            }
                        } else if m.starts_with("meta:schedule/") {
                            if let Err(e) = engine.timers.load_schedules().await {
                                tracing::warn!(error = %e, "could not re-read schedules");
                            }
                        } else {
                            // The listener reconnected: wake-ups may have been missed.
                            engine.core.wake_all();
                            engine.refresh_shared().await;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        engine.core.wake_all();
                        engine.refresh_shared().await;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    /// Name this node for the others on a shared store (`id` unique, `info` a JSON description).
    pub fn set_node(&self, id: String, info: String) {
        *self.nodes.me.lock() = Some((id, info));
    }

    /// Descriptions (JSON) of the nodes alive on a shared store, this one included once it
    /// has ticked; empty for a store only this process uses.
    pub fn nodes(&self) -> Vec<String> {
        self.nodes.alive.lock().clone()
    }

    /// Re-read what other nodes may have changed: subscriptions, schedules, timers.
    pub async fn refresh_shared(&self) {
        if let Err(e) = self.push.reload().await {
            tracing::warn!(error = %e, "could not re-read subscriptions");
        }
        if let Err(e) = self.timers.load().await {
            tracing::warn!(error = %e, "could not re-read timers and schedules");
        }
    }

    /// Housekeeping on a shared store: catch announcements that were missed (every 10 s) and
    /// send this node's heartbeat.
    pub(super) async fn tick_shared(&self) {
        let now = self.now();
        let last = self.nodes.refreshed_at.load(Ordering::Relaxed);
        if now - last >= 10_000
            && self
                .nodes
                .refreshed_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.refresh_shared().await;
        }
        let me = self.nodes.me.lock().clone();
        if let Some((id, info)) = me {
            match self.core.store.heartbeat(&id, info, self.now()).await {
                Ok(alive) => *self.nodes.alive.lock() = alive,
                Err(e) => tracing::warn!(error = %e, "node heartbeat failed"),
            }
        }
    }
}
