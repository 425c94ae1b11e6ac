//! The storage conformance suite: one set of behavioural tests that every [`Store`] backend must
//! pass unchanged. Each case drives an [`Engine`] over the backend with a [`ManualClock`], so
//! time-based rules are checked by moving the clock, never by sleeping.
//!
//! Cases live by topic: `leases.rs`, `message_rules.rs`, `queues.rs`, `dead_letters.rs`, `restart.rs`, `fifo.rs`,
//! `push.rs`, `subscriptions.rs`, `endpoint_health.rs`, `timers.rs`. The suite is compiled only with the `test-support` feature, so it
//! never ships in the binary. A case that is not listed in [`conformance_suite!`] fails the
//! test `every_case_is_in_the_suite`.
//!
//! A backend's test file provides a [`Harness`] and expands [`conformance_suite!`]:
//!
//! ```ignore
//! sluice_engine::conformance_suite!(my_harness());
//! ```

mod dead_letters;
mod endpoint_health;
mod fifo;
mod leases;
mod message_rules;
mod push;
mod queues;
mod restart;
mod subscriptions;
mod timers;

pub use self::dead_letters::*;
pub use self::endpoint_health::*;
pub use self::fifo::*;
pub use self::leases::*;
pub use self::message_rules::*;
pub use self::push::*;
pub use self::queues::*;
pub use self::restart::*;
pub use self::subscriptions::*;
pub use self::timers::*;

pub(crate) use std::sync::Arc;
pub(crate) use std::time::Duration;

use async_trait::async_trait;

use crate::clock::ManualClock;
pub(crate) use crate::model::{MessageId, Placement, QueueConfigPatch};
pub(crate) use crate::{Engine, EngineError, EngineOptions, Publish, ReceiveOptions, Store};

/// Opens a backend on a private data set. `open` may be called again after the previous store
/// was closed and dropped: it must reopen the same data (a restart).
#[async_trait]
pub trait Harness: Send {
    async fn open(&mut self) -> Arc<dyn Store>;
}

pub const T0: i64 = 1_700_000_000_000;

pub struct Ctx {
    pub engine: Arc<Engine>,
    pub clock: ManualClock,
}

impl Ctx {
    pub async fn new(h: &mut dyn Harness) -> Ctx {
        Self::with_options(h, EngineOptions::default()).await
    }
    pub async fn with_options(h: &mut dyn Harness, opts: EngineOptions) -> Ctx {
        let clock = ManualClock::new(T0);
        let engine = Engine::new(h.open().await, Arc::new(clock.clone()), opts);
        engine.load().await.unwrap();
        Ctx { engine, clock }
    }
    /// Close the store and open it again on the same data, keeping the clock.
    pub async fn restart(self, h: &mut dyn Harness) -> Ctx {
        self.engine.close().await.unwrap();
        drop(self.engine);
        let engine = Engine::new(
            h.open().await,
            Arc::new(self.clock.clone()),
            EngineOptions::default(),
        );
        engine.load().await.unwrap();
        Ctx {
            engine,
            clock: self.clock,
        }
    }
    /// The store under the engine (for cases that stage what a crash leaves behind).
    pub fn engine_store(&self) -> Arc<dyn Store> {
        self.engine.store().clone()
    }
    /// Wait (in real time, bounded) until `n` receives are long-polling.
    pub async fn wait_for_waiters(&self, n: usize) {
        for _ in 0..10_000 {
            if self.engine.waiting() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("no receive started waiting");
    }
    pub fn advance(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }
    pub async fn send(&self, q: &str, body: &str) -> String {
        self.engine
            .publish(
                q,
                vec![Publish {
                    body: body.as_bytes().to_vec(),
                    ..Default::default()
                }],
            )
            .await
            .unwrap()[0]
            .to_string()
    }
    pub async fn recv(&self, q: &str, n: usize, vis: u32) -> Vec<crate::Delivery> {
        self.engine
            .receive(
                q,
                ReceiveOptions {
                    max_messages: n,
                    wait_seconds: Some(0),
                    visibility_timeout_seconds: Some(vis),
                },
            )
            .await
            .unwrap()
    }
    pub async fn bodies(&self, q: &str, n: usize, vis: u32) -> Vec<String> {
        self.recv(q, n, vis)
            .await
            .into_iter()
            .map(|d| String::from_utf8(d.message.body).unwrap())
            .collect()
    }
}

/// A subscription to `url` with the defaults.
pub(crate) fn sub(url: &str) -> crate::push::Subscription {
    crate::push::Subscription::new(url)
}

impl Ctx {
    /// Subscribe `name` to queue `q` (creating both as needed).
    pub async fn subscribe(&self, q: &str, name: &str) {
        self.engine
            .push()
            .put(q, name, sub(&format!("http://{name}.example/hook")))
            .await
            .unwrap();
    }
    /// The number of the next attempt of copies `got` of subscription `name` of queue `q`.
    pub async fn next_attempt(&self, q: &str, name: &str, got: &[crate::Delivery]) -> u32 {
        let s = self.engine.push().reference(q, name).unwrap();
        self.engine.push().next_attempt(&s, got).await.unwrap().0
    }
    /// Lease up to `n` copies of subscription `name` of queue `q`.
    pub async fn lease(&self, q: &str, name: &str, n: usize) -> Vec<crate::Delivery> {
        let child = crate::push::child_queue(q, name);
        self.engine
            .push()
            .lease(&child, n, 30_000, 0)
            .await
            .unwrap()
    }
    /// Settle leased copies as a sender would after an answer: `outcome`, retried or
    /// throttled after `delay_ms`, failed with `reason`.
    pub async fn settle(
        &self,
        q: &str,
        name: &str,
        got: &[crate::Delivery],
        outcome: crate::push::Outcome,
        delay_ms: u64,
        reason: &str,
    ) -> crate::push::Settled {
        let push = self.engine.push();
        let s = push.reference(q, name).unwrap();
        let (attempt, decision) = self.answer(q, name, got, outcome, delay_ms, reason).await;
        push.settle(&s, got, &decision, attempt).await.unwrap()
    }
    /// The attempt a sender records, and the decision it settles, for an answer to `got`.
    pub async fn answer(
        &self,
        q: &str,
        name: &str,
        got: &[crate::Delivery],
        outcome: crate::push::Outcome,
        delay_ms: u64,
        reason: &str,
    ) -> (crate::push::Attempt, crate::push::Decision) {
        let push = self.engine.push();
        let s = push.reference(q, name).unwrap();
        let (number, throttled) = push.next_attempt(&s, got).await.unwrap();
        let attempt = crate::push::Attempt {
            at: self.engine.now(),
            queue: q.into(),
            subscription: name.into(),
            attempt: number,
            throttled: throttled + (outcome == crate::push::Outcome::Throttled) as u32,
            status: None,
            error: Some(reason.into()),
            duration_ms: 1,
            request: String::new(),
            response: String::new(),
            outcome,
            next_attempt_at: None,
            batch_size: got.len() as u32,
        };
        let decision = crate::push::Decision {
            outcome,
            delay_ms,
            reason: reason.into(),
        };
        (attempt, decision)
    }
}

/// The receipt a client of `engine` gets for delivery `d` of queue `q`.
pub(crate) fn receipt(engine: &Engine, q: &str, d: &crate::Delivery) -> String {
    engine.receipt(q, &d.receipt)
}

/// Expand the whole suite as `#[tokio::test]`s for a backend. `$harness` is an expression
/// building a fresh [`Harness`] (evaluated once per test).
#[macro_export]
macro_rules! conformance_suite {
    ($harness:expr) => {
        $crate::conformance_suite!(@cases $harness;
            publish_receive_ack, visibility_timeout_returns_message, stale_receipt_is_an_error,
            expired_lease_receipt_is_stale, nack_now_and_with_delay, nack_to_front_or_back,
            change_visibility_extends_and_releases, delayed_messages, dead_letter_and_redrive,
            redrive_by_id_moves_only_those, dead_letter_gauge_follows_retention,
            retention_drops_and_counts, long_poll_wakes_on_publish,
            long_poll_times_out_empty_and_wakes_on_delay_end, batch_ack_reports_each_receipt,
            purge_and_delete, peek_does_not_receive, bodies_and_attributes_round_trip,
            limits_are_enforced_and_nothing_is_stored, put_updates_config,
            restart_keeps_messages_and_receive_counts, restart_keeps_dead_letters,
            deleted_queue_stays_deleted_after_restart, fifo_groups_are_ordered_and_locked,
            fifo_deduplicates_within_five_minutes, fifo_rules, keyed_publish_stores_each_id_once,
            settings_and_archive_survive_restart, push_queue_fans_out_and_refuses_pull,
            answered_requests_settle_together,
            push_dead_letters_and_redrive_to_their_subscription, throttled_answers_are_not_attempts,
            delivery_history_survives_restart_bounded_per_message, delivery_counters_survive_restart,
            replay_sends_a_window_again, tallies_count_exactly_across_restarts,
            timers_fire_once_and_survive_restart, timer_calls_settle_together_in_one_batch,
            copies_sharing_an_id_survive_restart_independently,
            schedules_fire_once_and_count_missed, secret_rotation_survives_restart_and_put,
            filters_copy_only_matching_messages_and_count_the_rest,
            paused_queues_hand_out_nothing_until_resumed,
            schedules_catch_up_as_their_policy_says_after_downtime_and_pause,
            forged_receipts_settle_nothing, queues_created_on_use_leave_headroom,
            queue_changes_survive_restart, paused_subscriptions_lease_nothing_until_resumed,
            disabled_subscriptions_wait_and_keep_their_circuit_until_enabled,
            priorities_go_first_and_keep_publish_order,
            groups_take_turns_and_respect_their_in_flight_limit,
            idempotent_publish_on_any_queue_within_its_window,
            expired_messages_are_never_delivered, expiry_and_priorities_survive_restart,
            groups_are_held_to_their_rate, push_queues_pass_their_rules_to_the_copies,
            delayed_messages_keep_their_fields_and_order_across_restart);
    };
    (@cases $harness:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let mut h = $harness;
                $crate::conformance::$case(&mut h).await;
            }
        )*
    };
}

#[cfg(test)]
mod tests {
    /// Every `pub async fn CASE(h: &mut dyn Harness)` of a topic file is listed in the macro.
    #[test]
    fn every_case_is_in_the_suite() {
        let topics = [
            include_str!("dead_letters.rs"),
            include_str!("endpoint_health.rs"),
            include_str!("fifo.rs"),
            include_str!("leases.rs"),
            include_str!("message_rules.rs"),
            include_str!("push.rs"),
            include_str!("queues.rs"),
            include_str!("restart.rs"),
            include_str!("subscriptions.rs"),
            include_str!("timers.rs"),
        ];
        let this = include_str!("mod.rs");
        let listed = &this[this.find("@cases $harness;").expect("the case list")..];
        let mut cases = 0;
        for src in topics {
            for line in src.lines() {
                let Some(rest) = line.strip_prefix("pub async fn ") else {
                    continue;
                };
                let name = rest.split('(').next().unwrap_or_default();
                cases += 1;
                assert!(
                    listed
                        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .any(|w| w == name),
                    "conformance case {name} is not listed in conformance_suite!"
                );
            }
        }
        assert!(cases > 30, "found only {cases} cases");
    }
}
