//! The storage conformance suite: one set of behavioural tests that every [`Store`] backend must
//! pass unchanged. Each case drives an [`Engine`] over the backend with a [`ManualClock`], so
//! time-based rules are checked by moving the clock, never by sleeping.
//!
//! A backend's test file provides a [`Harness`] and expands [`conformance_suite!`]:
//!
//! ```ignore
//! sluice_engine::conformance_suite!(my_harness());
//! ```

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::clock::ManualClock;
use crate::model::{MessageId, Placement, QueueConfigPatch};
use crate::{Engine, EngineError, EngineOptions, Publish, ReceiveOptions, Store};

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
        let clock = ManualClock::new(T0);
        let engine = Engine::new(
            h.open().await,
            Arc::new(clock.clone()),
            EngineOptions::default(),
        );
        engine.load_subscriptions().await.unwrap();
        engine.load_timers().await.unwrap();
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
        engine.load_subscriptions().await.unwrap();
        engine.load_timers().await.unwrap();
        Ctx {
            engine,
            clock: self.clock,
        }
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

fn receipt(d: &crate::Delivery) -> String {
    d.receipt.encode()
}

pub async fn publish_receive_ack(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    let id1 = c.send("q", "one").await;
    let id2 = c.send("q", "two").await;
    assert!(id1 < id2, "ids are time-ordered");
    let got = c.recv("q", 10, 30).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].message.body, b"one");
    assert_eq!(got[0].message.id.to_string(), id1);
    assert_eq!(got[0].message.receive_count, 1);
    let s = c.engine.stats("q").await.unwrap();
    assert_eq!(
        (s.ready, s.in_flight, s.published, s.received),
        (0, 2, 2, 2)
    );
    let res = c
        .engine
        .ack("q", &[receipt(&got[0]), receipt(&got[1])])
        .await
        .unwrap();
    assert!(res.iter().all(|r| r.is_ok()));
    let s = c.engine.stats("q").await.unwrap();
    assert_eq!((s.ready, s.in_flight, s.acked), (0, 0, 2));
    assert!(c.recv("q", 10, 30).await.is_empty());
}

pub async fn visibility_timeout_returns_message(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    c.send("q", "m").await;
    assert_eq!(c.recv("q", 1, 10).await.len(), 1);
    c.advance(9);
    assert!(c.recv("q", 1, 10).await.is_empty(), "still leased at 9 s");
    c.advance(2);
    let again = c.recv("q", 1, 10).await;
    assert_eq!(again.len(), 1, "visible again after the lease");
    assert_eq!(again[0].message.receive_count, 2);
    assert_eq!(c.engine.stats("q").await.unwrap().visibility_timeouts, 1);
}

pub async fn stale_receipt_is_an_error(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    c.send("q", "m").await;
    let first = c.recv("q", 1, 5).await.remove(0);
    c.advance(6);
    let second = c.recv("q", 1, 5).await.remove(0);
    assert_ne!(
        receipt(&first),
        receipt(&second),
        "each receive issues a fresh receipt"
    );
    let r = c.engine.ack("q", &[receipt(&first)]).await.unwrap();
    assert_eq!(r[0], Err(EngineError::StaleReceipt));
    // The message is still there, leased to the second receiver.
    assert_eq!(c.engine.stats("q").await.unwrap().in_flight, 1);
    assert_eq!(
        c.engine.ack("q", &[receipt(&second)]).await.unwrap()[0],
        Ok(())
    );
    assert_eq!(
        c.engine.ack("q", &[receipt(&second)]).await.unwrap()[0],
        Err(EngineError::MessageGone)
    );
    assert_eq!(
        c.engine
            .ack("q", &["not-a-receipt".to_string()])
            .await
            .unwrap()[0],
        Err(EngineError::InvalidReceipt)
    );
}

pub async fn expired_lease_receipt_is_stale(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    c.send("q", "m").await;
    let d = c.recv("q", 1, 5).await.remove(0);
    c.advance(5);
    assert_eq!(
        c.engine.ack("q", &[receipt(&d)]).await.unwrap()[0],
        Err(EngineError::StaleReceipt)
    );
}

pub async fn nack_now_and_with_delay(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    c.send("q", "a").await;
    c.send("q", "b").await;
    let got = c.recv("q", 2, 30).await;
    let r = c
        .engine
        .nack("q", &[receipt(&got[0])], 0, Placement::Back)
        .await
        .unwrap();
    assert_eq!(r[0], Ok(()));
    let r = c
        .engine
        .nack("q", &[receipt(&got[1])], 5, Placement::Back)
        .await
        .unwrap();
    assert_eq!(r[0], Ok(()));
    let s = c.engine.stats("q").await.unwrap();
    assert_eq!((s.ready, s.delayed, s.in_flight, s.nacked), (1, 1, 0, 2));
    assert_eq!(c.bodies("q", 10, 30).await, vec!["a"]);
    c.advance(5);
    let b = c.recv("q", 10, 30).await;
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].message.body, b"b");
    assert_eq!(b[0].message.receive_count, 2);
}

pub async fn nack_to_front_or_back(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    for b in ["a", "b", "c"] {
        c.send("q", b).await;
    }
    let a = c.recv("q", 1, 30).await.remove(0);
    c.engine
        .nack("q", &[receipt(&a)], 0, Placement::Front)
        .await
        .unwrap();
    let a = c.recv("q", 1, 30).await.remove(0);
    assert_eq!(a.message.body, b"a", "front placement comes out first");
    c.engine
        .nack("q", &[receipt(&a)], 0, Placement::Back)
        .await
        .unwrap();
    let all = c.recv("q", 3, 30).await;
    let bodies: Vec<&[u8]> = all.iter().map(|d| d.message.body.as_slice()).collect();
    assert_eq!(bodies, vec![&b"b"[..], b"c", b"a"]);
    // A delayed nack to the front comes back ahead of the others when its delay ends.
    let rest = [receipt(&all[1]), receipt(&all[2])];
    c.engine.nack("q", &rest, 0, Placement::Back).await.unwrap();
    c.engine
        .nack("q", &[receipt(&all[0])], 5, Placement::Front)
        .await
        .unwrap();
    assert_eq!(c.bodies("q", 1, 30).await, vec!["c"]);
    c.advance(5);
    assert_eq!(
        c.bodies("q", 1, 30).await,
        vec!["b"],
        "b returned to the front"
    );
}

pub async fn change_visibility_extends_and_releases(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    c.send("q", "m").await;
    let d = c.recv("q", 1, 10).await.remove(0);
    c.advance(8);
    c.engine
        .change_visibility("q", &receipt(&d), 60)
        .await
        .unwrap();
    c.advance(30);
    assert!(
        c.recv("q", 1, 10).await.is_empty(),
        "the heartbeat extended the lease"
    );
    assert_eq!(c.engine.ack("q", &[receipt(&d)]).await.unwrap()[0], Ok(()));
    c.send("q", "n").await;
    let d = c.recv("q", 1, 60).await.remove(0);
    c.engine
        .change_visibility("q", &receipt(&d), 0)
        .await
        .unwrap();
    assert_eq!(
        c.recv("q", 1, 60).await.len(),
        1,
        "timeout 0 releases at once"
    );
    assert_eq!(
        c.engine.change_visibility("q", &receipt(&d), 30).await,
        Err(EngineError::StaleReceipt)
    );
}

pub async fn delayed_messages(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    c.engine
        .publish(
            "q",
            vec![Publish {
                body: b"later".to_vec(),
                delay_seconds: Some(60),
                ..Default::default()
            }],
        )
        .await
        .unwrap();
    let s = c.engine.stats("q").await.unwrap();
    assert_eq!((s.ready, s.delayed), (0, 1));
    assert!(c.recv("q", 1, 30).await.is_empty());
    c.advance(59);
    assert!(c.recv("q", 1, 30).await.is_empty());
    c.advance(1);
    assert_eq!(c.bodies("q", 1, 30).await, vec!["later"]);
    // Queue default delay applies when the message names none; a year is allowed.
    c.engine
        .put_queue(
            "d",
            QueueConfigPatch {
                delay_seconds: Some(10),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    c.send("d", "x").await;
    assert_eq!(c.engine.stats("d").await.unwrap().delayed, 1);
    c.engine
        .publish(
            "d",
            vec![Publish {
                body: b"y".to_vec(),
                delay_seconds: Some(365 * 24 * 3600),
                ..Default::default()
            }],
        )
        .await
        .unwrap();
    c.advance(10);
    assert_eq!(c.bodies("d", 10, 30).await, vec!["x"]);
}

pub async fn dead_letter_and_redrive(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    let (info, created) = c
        .engine
        .put_queue(
            "work",
            QueueConfigPatch {
                max_receives: Some(Some(2)),
                dead_letter_queue: Some(Some("work-dlq".into())),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(created);
    assert_eq!(info.config.max_receives, Some(2));
    assert!(
        c.engine.get_queue("work-dlq").await.is_ok(),
        "DLQ created on demand"
    );
    c.send("work", "poison").await;
    for _ in 0..2 {
        assert_eq!(c.recv("work", 1, 10).await.len(), 1);
        c.advance(11);
    }
    assert!(
        c.recv("work", 1, 10).await.is_empty(),
        "moved after 2 receives"
    );
    let s = c.engine.stats("work").await.unwrap();
    assert_eq!((s.dead_lettered, s.dead_lettered_total), (1, 1));
    let peeked = c.engine.peek("work-dlq", 10).await.unwrap();
    assert_eq!(peeked.len(), 1);
    assert_eq!(peeked[0].dead_letter_source.as_deref(), Some("work"));
    assert_eq!(peeked[0].receive_count, 2, "history kept");
    // A nack past the limit dead-letters too.
    c.send("work", "nacked").await;
    for i in 0..2 {
        let d = c.recv("work", 1, 10).await.remove(0);
        c.engine
            .nack("work", &[receipt(&d)], 0, Placement::Back)
            .await
            .unwrap();
        assert_eq!(c.engine.stats("work").await.unwrap().dead_lettered, i + 1);
    }
    assert_eq!(c.engine.redrive("work-dlq", None).await.unwrap(), 2);
    let s = c.engine.stats("work").await.unwrap();
    assert_eq!((s.ready, s.dead_lettered, s.redriven), (2, 0, 2));
    let back = c.recv("work", 10, 10).await;
    assert_eq!(back.len(), 2);
    assert!(
        back.iter().all(|d| d.message.receive_count == 1),
        "fresh receive count"
    );
    assert!(back.iter().all(|d| d.message.dead_letter_source.is_none()));
    // Redrive named on the source queue pulls its dead letters back too.
    c.advance(11);
    c.advance(11);
    let _ = c.recv("work", 10, 10).await;
    c.advance(11);
    assert_eq!(c.engine.stats("work").await.unwrap().dead_lettered, 2);
    assert_eq!(c.engine.redrive("work", None).await.unwrap(), 2);
    assert_eq!(c.engine.stats("work-dlq").await.unwrap().ready, 0);
}

pub async fn redrive_by_id_moves_only_those(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    let e = &c.engine;
    e.put_queue(
        "src",
        QueueConfigPatch {
            max_receives: Some(Some(1)),
            dead_letter_queue: Some(Some("src-dlq".into())),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    for body in ["a", "b", "c"] {
        c.send("src", body).await;
        let d = c.recv("src", 1, 10).await.remove(0);
        e.nack("src", &[receipt(&d)], 0, Placement::Back)
            .await
            .unwrap();
    }
    let dead = e.peek("src-dlq", 10).await.unwrap();
    assert_eq!(dead.len(), 3);
    let b = dead.iter().find(|m| m.body == b"b").unwrap().id;
    // An id that is not a dead letter there moves nothing; the others stay put.
    assert_eq!(e.redrive_ids("src-dlq", &[MessageId(42)]).await.unwrap(), 0);
    assert_eq!(e.redrive_ids("src-dlq", &[b]).await.unwrap(), 1);
    assert_eq!(c.bodies("src", 10, 10).await, vec!["b"]);
    assert_eq!(e.peek("src-dlq", 10).await.unwrap().len(), 2);
    // Named on the source queue, the same.
    let a = dead.iter().find(|m| m.body == b"a").unwrap().id;
    assert_eq!(e.redrive_ids("src", &[a, b]).await.unwrap(), 1);
    assert_eq!(e.stats("src").await.unwrap().dead_lettered, 1);
    assert!(e.redrive_ids("src", &[]).await.is_err(), "ids: 1-1000");
}

pub async fn retention_drops_and_counts(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    c.engine
        .put_queue(
            "r",
            QueueConfigPatch {
                retention_seconds: Some(60),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    c.send("r", "old").await;
    c.advance(30);
    c.send("r", "new").await;
    c.advance(31);
    c.engine.tick().await.unwrap();
    let s = c.engine.stats("r").await.unwrap();
    assert_eq!((s.ready, s.expired), (1, 1));
    assert_eq!(c.bodies("r", 10, 30).await, vec!["new"]);
}

/// A dead letter dropped by its dead-letter queue's retention (in housekeeping) no longer
/// counts as its source's dead letter.
pub async fn dead_letter_gauge_follows_retention(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    c.engine
        .put_queue(
            "dl-src",
            QueueConfigPatch {
                max_receives: Some(Some(1)),
                dead_letter_queue: Some(Some("dl-dead".into())),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    c.engine
        .put_queue(
            "dl-dead",
            QueueConfigPatch {
                retention_seconds: Some(60),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    c.send("dl-src", "poison").await;
    let d = c.recv("dl-src", 1, 10).await.remove(0);
    c.engine
        .nack("dl-src", &[receipt(&d)], 0, Placement::Back)
        .await
        .unwrap();
    assert_eq!(c.engine.stats("dl-src").await.unwrap().dead_lettered, 1);
    c.advance(61);
    c.engine.tick().await.unwrap();
    assert_eq!(c.engine.stats("dl-dead").await.unwrap().expired, 1);
    assert_eq!(c.engine.stats("dl-src").await.unwrap().dead_lettered, 0);
}

pub async fn long_poll_wakes_on_publish(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    c.engine
        .put_queue("lp", QueueConfigPatch::default())
        .await
        .unwrap();
    let e = c.engine.clone();
    let waiter = tokio::spawn(async move {
        e.receive(
            "lp",
            ReceiveOptions {
                max_messages: 5,
                wait_seconds: Some(20),
                visibility_timeout_seconds: None,
            },
        )
        .await
    });
    // Let the waiter park (the clock does not move, so only a publish can wake it).
    c.wait_for_waiters(1).await;
    assert!(!waiter.is_finished(), "nothing to receive yet");
    c.send("lp", "hello").await;
    let got = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the publish woke the long poll")
        .unwrap()
        .unwrap();
    assert_eq!(got.len(), 1);
}

pub async fn long_poll_times_out_empty_and_wakes_on_delay_end(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    c.engine
        .put_queue("lp", QueueConfigPatch::default())
        .await
        .unwrap();
    let e = c.engine.clone();
    let opts = ReceiveOptions {
        max_messages: 1,
        wait_seconds: Some(20),
        visibility_timeout_seconds: None,
    };
    let o2 = opts.clone();
    let waiter = tokio::spawn(async move { e.receive("lp", o2).await });
    c.wait_for_waiters(1).await;
    c.advance(20);
    let got = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("deadline reached")
        .unwrap()
        .unwrap();
    assert!(got.is_empty());

    c.engine
        .publish(
            "lp",
            vec![Publish {
                body: b"soon".to_vec(),
                delay_seconds: Some(5),
                ..Default::default()
            }],
        )
        .await
        .unwrap();
    let e = c.engine.clone();
    let waiter = tokio::spawn(async move { e.receive("lp", opts).await });
    c.wait_for_waiters(1).await;
    assert!(!waiter.is_finished());
    c.advance(5);
    let got = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the delay end woke the long poll")
        .unwrap()
        .unwrap();
    assert_eq!(got.len(), 1);
}

pub async fn batch_ack_reports_each_receipt(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    c.send("q", "a").await;
    c.send("q", "b").await;
    let got = c.recv("q", 2, 30).await;
    let res = c
        .engine
        .ack(
            "q",
            &[
                receipt(&got[0]),
                "garbage".into(),
                receipt(&got[1]),
                receipt(&got[0]),
            ],
        )
        .await
        .unwrap();
    assert_eq!(res[0], Ok(()));
    assert_eq!(res[1], Err(EngineError::InvalidReceipt));
    assert_eq!(res[2], Ok(()));
    assert_eq!(res[3], Err(EngineError::MessageGone));
    // A receipt of another queue is not valid here.
    c.send("other", "x").await;
    let o = c.recv("other", 1, 30).await.remove(0);
    assert_eq!(
        c.engine.ack("q", &[receipt(&o)]).await.unwrap()[0],
        Err(EngineError::MessageGone)
    );
}

pub async fn purge_and_delete(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    for i in 0..5 {
        c.send("p", &i.to_string()).await;
    }
    let d = c.recv("p", 1, 30).await.remove(0);
    assert_eq!(c.engine.purge("p").await.unwrap(), 5);
    assert_eq!(
        c.engine.ack("p", &[receipt(&d)]).await.unwrap()[0],
        Err(EngineError::MessageGone)
    );
    c.send("p", "after").await;
    assert_eq!(c.bodies("p", 10, 30).await, vec!["after"]);
    c.engine.delete_queue("p").await.unwrap();
    assert!(matches!(
        c.engine.get_queue("p").await,
        Err(EngineError::QueueNotFound(_))
    ));
    assert!(matches!(
        c.engine.delete_queue("p").await,
        Err(EngineError::QueueNotFound(_))
    ));
    assert!(matches!(
        c.engine.receive("p", ReceiveOptions::default()).await,
        Err(EngineError::QueueNotFound(_))
    ));
    // Recreated: empty.
    c.engine
        .put_queue("p", QueueConfigPatch::default())
        .await
        .unwrap();
    assert_eq!(c.engine.stats("p").await.unwrap().ready, 0);
}

pub async fn peek_does_not_receive(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    c.send("q", "ready").await;
    c.send("q", "leased").await;
    c.engine
        .publish(
            "q",
            vec![Publish {
                body: b"delayed".to_vec(),
                delay_seconds: Some(100),
                ..Default::default()
            }],
        )
        .await
        .unwrap();
    let d = c.recv("q", 1, 30).await.remove(0);
    assert_eq!(d.message.body, b"ready");
    let p = c.engine.peek("q", 10).await.unwrap();
    let bodies: Vec<&[u8]> = p.iter().map(|m| m.body.as_slice()).collect();
    assert_eq!(bodies, vec![&b"leased"[..], b"delayed", b"ready"]);
    assert_eq!(p[0].state, crate::MessageState::Ready);
    assert_eq!(p[1].state, crate::MessageState::Delayed);
    assert_eq!(p[2].state, crate::MessageState::InFlight);
    assert_eq!(
        c.engine.stats("q").await.unwrap().received,
        1,
        "peek is not a receive"
    );
    assert_eq!(c.engine.peek("q", 1).await.unwrap().len(), 1);
}

pub async fn bodies_and_attributes_round_trip(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    let body: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let mut attrs = crate::Attributes::new();
    attrs.insert("trace-id".into(), "abc123".into());
    attrs.insert("ünïcode".into(), "✓".into());
    c.engine
        .publish(
            "bin",
            vec![Publish {
                body: body.clone(),
                attributes: attrs.clone(),
                ..Default::default()
            }],
        )
        .await
        .unwrap();
    let d = c.recv("bin", 1, 30).await.remove(0);
    assert_eq!(d.message.body, body);
    assert_eq!(d.message.attributes, attrs);
    assert_eq!(d.message.enqueued_at, T0);
}

pub async fn limits_are_enforced_and_nothing_is_stored(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    c.engine
        .put_queue(
            "small",
            QueueConfigPatch {
                max_message_bytes: Some(10),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let big = Publish {
        body: vec![b'x'; 11],
        ..Default::default()
    };
    let ok = Publish {
        body: vec![b'x'; 10],
        ..Default::default()
    };
    assert_eq!(
        c.engine.publish("small", vec![ok, big]).await,
        Err(EngineError::MessageTooLarge {
            size: 11,
            limit: 10
        })
    );
    assert_eq!(
        c.engine.stats("small").await.unwrap().ready,
        0,
        "a batch is all or nothing"
    );
    for bad in ["", "has space", "dot.dot", &"x".repeat(81), ".fifo"] {
        assert!(
            matches!(
                c.engine.put_queue(bad, QueueConfigPatch::default()).await,
                Err(EngineError::InvalidQueueName { .. })
            ),
            "{bad:?}"
        );
    }
    assert!(c
        .engine
        .put_queue(&"x".repeat(80), QueueConfigPatch::default())
        .await
        .is_ok());
    assert!(c
        .engine
        .put_queue("orders.fifo", QueueConfigPatch::default())
        .await
        .is_ok());
    let bad_cfg = [
        QueueConfigPatch {
            visibility_timeout_seconds: Some(43_201),
            ..Default::default()
        },
        QueueConfigPatch {
            retention_seconds: Some(14 * 24 * 3600 + 1),
            ..Default::default()
        },
        QueueConfigPatch {
            max_message_bytes: Some(2 * 1024 * 1024),
            ..Default::default()
        },
        QueueConfigPatch {
            max_receives: Some(Some(3)),
            ..Default::default()
        },
        QueueConfigPatch {
            max_receives: Some(Some(3)),
            dead_letter_queue: Some(Some("self".into())),
            ..Default::default()
        },
    ];
    for p in bad_cfg {
        assert!(
            matches!(
                c.engine.put_queue("self", p.clone()).await,
                Err(EngineError::InvalidArgument { .. })
            ),
            "{p:?}"
        );
    }
    assert!(
        c.engine.get_queue("self").await.is_err(),
        "nothing created by a rejected PUT"
    );
    let r = c
        .engine
        .receive(
            "small",
            ReceiveOptions {
                max_messages: 101,
                ..Default::default()
            },
        )
        .await;
    assert!(
        matches!(r, Err(EngineError::InvalidArgument { ref field, .. }) if field == "max_messages")
    );
    let r = c
        .engine
        .receive(
            "small",
            ReceiveOptions {
                wait_seconds: Some(21),
                ..Default::default()
            },
        )
        .await;
    assert!(
        matches!(r, Err(EngineError::InvalidArgument { ref field, .. }) if field == "wait_seconds")
    );
}

pub async fn put_updates_config(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    let (_, created) = c
        .engine
        .put_queue("c", QueueConfigPatch::default())
        .await
        .unwrap();
    assert!(created);
    c.advance(1);
    let (info, created) = c
        .engine
        .put_queue(
            "c",
            QueueConfigPatch {
                visibility_timeout_seconds: Some(5),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(info.config.visibility_timeout_seconds, 5);
    assert_eq!(
        info.config.retention_seconds, 345_600,
        "other fields keep their value"
    );
    assert!(info.updated_at > info.created_at);
    c.send("c", "m").await;
    c.engine
        .receive("c", ReceiveOptions::default())
        .await
        .unwrap();
    c.advance(5);
    assert_eq!(
        c.recv("c", 1, 5).await.len(),
        1,
        "the queue's visibility timeout applied"
    );
    let names: Vec<String> = c
        .engine
        .list_queues()
        .await
        .unwrap()
        .into_iter()
        .map(|(q, _)| q.name)
        .collect();
    assert_eq!(names, vec!["c"]);
}

pub async fn restart_keeps_messages_and_receive_counts(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    c.engine
        .put_queue(
            "keep",
            QueueConfigPatch {
                visibility_timeout_seconds: Some(100),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    for b in ["a", "b", "c", "d"] {
        c.send("keep", b).await;
    }
    c.engine
        .publish(
            "keep",
            vec![Publish {
                body: b"delayed".to_vec(),
                delay_seconds: Some(50),
                ..Default::default()
            }],
        )
        .await
        .unwrap();
    let got = c.recv("keep", 2, 100).await; // a, b in flight
    c.engine.ack("keep", &[receipt(&got[0])]).await.unwrap(); // a gone
    let c = c.restart(h).await;
    let s = c.engine.stats("keep").await.unwrap();
    assert_eq!(
        (s.ready + s.in_flight, s.delayed),
        (3, 1),
        "b, c, d and the delayed one"
    );
    // A backend may keep leases across a restart (Redis: other nodes hold them) or forget them
    // (embedded); either way b is visible again once its lease would have ended.
    c.advance(40);
    assert_eq!(c.engine.stats("keep").await.unwrap().delayed, 1);
    c.advance(60);
    c.engine.tick().await.unwrap();
    let s = c.engine.stats("keep").await.unwrap();
    assert_eq!((s.ready, s.delayed, s.in_flight), (4, 0, 0));
    let again = c.recv("keep", 10, 100).await;
    let mut seen: Vec<(String, u32)> = again
        .iter()
        .map(|d| {
            (
                String::from_utf8(d.message.body.clone()).unwrap(),
                d.message.receive_count,
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("b".into(), 2),
            ("c".into(), 1),
            ("d".into(), 1),
            ("delayed".into(), 1)
        ]
    );
    assert_eq!(
        c.engine
            .get_queue("keep")
            .await
            .unwrap()
            .0
            .config
            .visibility_timeout_seconds,
        100
    );
}

pub async fn restart_keeps_dead_letters(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    c.engine
        .put_queue(
            "src",
            QueueConfigPatch {
                max_receives: Some(Some(1)),
                dead_letter_queue: Some(Some("dlq".into())),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    c.send("src", "bad").await;
    let d = c.recv("src", 1, 10).await.remove(0);
    c.engine
        .nack("src", &[receipt(&d)], 0, Placement::Back)
        .await
        .unwrap();
    c.send("src", "purged").await;
    c.engine.purge("src").await.unwrap();
    let c = c.restart(h).await;
    assert_eq!(c.engine.stats("src").await.unwrap().dead_lettered, 1);
    assert_eq!(
        c.engine.stats("src").await.unwrap().ready,
        0,
        "the purge survived"
    );
    assert_eq!(c.engine.redrive("dlq", None).await.unwrap(), 1);
    let c = c.restart(h).await;
    let back = c.recv("src", 10, 10).await;
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].message.receive_count, 1);
}

pub async fn deleted_queue_stays_deleted_after_restart(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    c.send("gone", "x").await;
    c.engine.delete_queue("gone").await.unwrap();
    c.send("gone", "fresh").await; // auto-created anew
    let c = c.restart(h).await;
    assert_eq!(c.bodies("gone", 10, 10).await, vec!["fresh"]);
}

async fn fifo_send(
    c: &Ctx,
    q: &str,
    body: &str,
    group: &str,
    dedup: Option<&str>,
) -> crate::Result<String> {
    c.engine
        .publish(
            q,
            vec![Publish {
                body: body.as_bytes().to_vec(),
                group: Some(group.to_string()),
                dedup_id: dedup.map(|d| d.to_string()),
                ..Default::default()
            }],
        )
        .await
        .map(|ids| ids[0].to_string())
}

async fn fifo_queue(c: &Ctx, name: &str) {
    c.engine
        .put_queue(
            name,
            QueueConfigPatch {
                content_based_deduplication: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
}

pub async fn fifo_groups_are_ordered_and_locked(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    fifo_queue(&c, "f.fifo").await;
    for (b, g) in [("a1", "A"), ("a2", "A"), ("b1", "B"), ("a3", "A")] {
        fifo_send(&c, "f.fifo", b, g, None).await.unwrap();
    }
    let first = c.recv("f.fifo", 1, 30).await.remove(0);
    assert_eq!(first.message.body, b"a1");
    assert_eq!(first.message.group.as_deref(), Some("A"));
    assert_eq!(
        c.bodies("f.fifo", 10, 30).await,
        vec!["b1"],
        "group A is held while a1 is in flight"
    );
    assert!(c.recv("f.fifo", 10, 30).await.is_empty());
    c.engine.ack("f.fifo", &[receipt(&first)]).await.unwrap();
    // One receive may take several messages of a group, in order.
    let batch = c.recv("f.fifo", 10, 5).await;
    let bodies: Vec<&[u8]> = batch.iter().map(|d| d.message.body.as_slice()).collect();
    assert_eq!(bodies, vec![&b"a2"[..], b"a3"]);
    // Lease expiry and nack return them in publish order.
    c.advance(5);
    let again = c.recv("f.fifo", 1, 30).await.remove(0);
    assert_eq!(again.message.body, b"a2");
    assert_eq!(again.message.receive_count, 2);
    c.engine
        .nack("f.fifo", &[receipt(&again)], 0, Placement::Back)
        .await
        .unwrap();
    assert_eq!(c.bodies("f.fifo", 10, 30).await, vec!["a2", "a3"]);
}

pub async fn fifo_deduplicates_within_five_minutes(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    fifo_queue(&c, "d.fifo").await;
    let one = fifo_send(&c, "d.fifo", "x", "g", Some("dedup-1"))
        .await
        .unwrap();
    let two = fifo_send(&c, "d.fifo", "other body", "g", Some("dedup-1"))
        .await
        .unwrap();
    assert_eq!(one, two, "a repeat answers with the first message's id");
    let three = fifo_send(&c, "d.fifo", "same", "g", None).await.unwrap();
    let four = fifo_send(&c, "d.fifo", "same", "g", None).await.unwrap();
    assert_eq!(three, four, "content-based deduplication");
    assert_eq!(c.engine.stats("d.fifo").await.unwrap().ready, 2);
    c.advance(5 * 60 + 1);
    c.engine.tick().await.unwrap();
    let five = fifo_send(&c, "d.fifo", "x", "g", Some("dedup-1"))
        .await
        .unwrap();
    assert_ne!(one, five, "the window is over");
    // Dedup survives a restart inside the window.
    let c = c.restart(h).await;
    let six = fifo_send(&c, "d.fifo", "x", "g", Some("dedup-1"))
        .await
        .unwrap();
    assert_eq!(five, six);
    let bodies = c.bodies("d.fifo", 10, 30).await;
    assert_eq!(
        bodies,
        vec!["x", "same", "x"],
        "one group, in publish order"
    );
}

pub async fn keyed_publish_stores_each_id_once(h: &mut dyn Harness) {
    use crate::model::MessageId;
    use crate::KeyedPublish;
    let c = Ctx::new(h).await;
    let e = &c.engine;
    let msg = |i: u128| KeyedPublish {
        id: MessageId(0x1000 + i),
        body: format!("row {i}").into_bytes(),
        attributes: Default::default(),
    };
    let first = e
        .publish_keyed("rows", (0..3).map(msg).collect(), "g")
        .await
        .unwrap();
    assert_eq!(
        first,
        vec![MessageId(0x1000), MessageId(0x1001), MessageId(0x1002)]
    );
    // A producer repeating an overlapping batch (a crash before its checkpoint) adds only new ids.
    e.publish_keyed("rows", (1..5).map(msg).collect(), "g")
        .await
        .unwrap();
    assert_eq!(e.stats("rows").await.unwrap().ready, 5);
    // Delivered and acked, then repeated: still once (the window outlives the message).
    let got = c.recv("rows", 10, 30).await;
    assert_eq!(got.len(), 5);
    let receipts: Vec<_> = got.iter().map(receipt).collect();
    e.ack("rows", &receipts).await.unwrap();
    let c = c.restart(h).await;
    let e = &c.engine;
    e.publish_keyed("rows", (0..5).map(msg).collect(), "g")
        .await
        .unwrap();
    assert_eq!(
        e.stats("rows").await.unwrap().ready,
        0,
        "deduplicated after a restart"
    );
    // A push queue: each subscription's copy is deduplicated too, under the same id.
    e.put_subscription("pushed", "a", sub("http://a.example/x"))
        .await
        .unwrap();
    for _ in 0..2 {
        e.publish_keyed("pushed", (0..2).map(msg).collect(), "g")
            .await
            .unwrap();
    }
    let child = crate::push::child_queue("pushed", "a");
    let got = e.push_receive(&child, 10, 30_000, 0).await.unwrap();
    let ids: Vec<_> = got.iter().map(|d| d.message.id).collect();
    assert_eq!(ids, vec![MessageId(0x1000), MessageId(0x1001)]);
    // FIFO: every row in the one group, in order.
    e.publish_keyed("rows.fifo", (0..3).map(msg).collect(), "file-1")
        .await
        .unwrap();
    let got = c.recv("rows.fifo", 10, 30).await;
    let bodies: Vec<_> = got.iter().map(|d| d.message.body.clone()).collect();
    assert_eq!(
        bodies,
        vec![b"row 0".to_vec(), b"row 1".to_vec(), b"row 2".to_vec()]
    );
    assert!(got
        .iter()
        .all(|d| d.message.group.as_deref() == Some("file-1")));
    // Limits still hold.
    let big = KeyedPublish {
        id: MessageId(1),
        body: vec![b'x'; 2 * 1024 * 1024],
        attributes: Default::default(),
    };
    assert!(matches!(
        e.publish_keyed("rows", vec![big], "g").await,
        Err(EngineError::MessageTooLarge { .. })
    ));
}

pub async fn fifo_rules(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    c.engine
        .put_queue("r.fifo", QueueConfigPatch::default())
        .await
        .unwrap();
    let no_group = c
        .engine
        .publish(
            "r.fifo",
            vec![Publish {
                body: b"x".to_vec(),
                dedup_id: Some("d".into()),
                ..Default::default()
            }],
        )
        .await;
    assert!(
        matches!(no_group, Err(EngineError::InvalidArgument { ref field, .. }) if field == "message_group_id")
    );
    let no_dedup = fifo_send(&c, "r.fifo", "x", "g", None).await;
    assert!(
        matches!(no_dedup, Err(EngineError::InvalidArgument { ref field, .. }) if field == "deduplication_id")
    );
    assert!(fifo_send(&c, "r.fifo", "x", "g", Some("d")).await.is_ok());
    let std_dedup = c
        .engine
        .publish(
            "standard",
            vec![Publish {
                body: b"x".to_vec(),
                dedup_id: Some("d".into()),
                ..Default::default()
            }],
        )
        .await;
    assert!(matches!(
        std_dedup,
        Err(EngineError::InvalidArgument { .. })
    ));
    let bad = c
        .engine
        .put_queue(
            "standard",
            QueueConfigPatch {
                content_based_deduplication: Some(true),
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(bad, Err(EngineError::InvalidArgument { .. })));
}

pub async fn settings_and_archive_survive_restart(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    let st = &c.engine.store;
    st.meta_put("a/1", Some("one".into())).await.unwrap();
    st.meta_put("a/2", Some("two".into())).await.unwrap();
    st.meta_put("b/1", Some("other".into())).await.unwrap();
    st.meta_put("a/2", None).await.unwrap();
    st.archive_put(&[(crate::MessageId(1), 1), (crate::MessageId(2), 2)])
        .await
        .unwrap();
    st.archive_put(&[(crate::MessageId(1), 3)]).await.unwrap();
    let c = c.restart(h).await;
    let st = &c.engine.store;
    assert_eq!(
        st.meta_list("a/").await.unwrap(),
        vec![("a/1".to_string(), "one".to_string())]
    );
    let arch: std::collections::HashMap<_, _> =
        st.archive_list().await.unwrap().into_iter().collect();
    assert_eq!(
        arch.get(&crate::MessageId(1)),
        Some(&3),
        "a later entry wins"
    );
    assert_eq!(arch.get(&crate::MessageId(2)), Some(&2));
}

fn sub(url: &str) -> crate::push::Subscription {
    crate::push::Subscription::new(url)
}

pub async fn push_queue_fans_out_and_refuses_pull(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    let e = &c.engine;
    e.put_subscription("orders", "a", sub("http://a.example/x"))
        .await
        .unwrap();
    let (_, created) = e
        .put_subscription("orders", "b", sub("http://b.example/x"))
        .await
        .unwrap();
    assert!(created);
    assert!(e.is_push("orders"));
    let id = c.send("orders", "hello").await;
    match e.receive("orders", ReceiveOptions::default()).await {
        Err(EngineError::PushQueue(_)) => {}
        other => panic!("pull receive on a push queue: {other:?}"),
    }
    let names: Vec<String> = e
        .queue_infos()
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.name)
        .collect();
    assert_eq!(names, vec!["orders"], "internal queues are hidden");
    for s in ["a", "b"] {
        let child = crate::push::child_queue("orders", s);
        let got = e.push_receive(&child, 10, 30_000, 0).await.unwrap();
        assert_eq!(got.len(), 1, "subscription {s} has its own copy");
        assert_eq!(got[0].message.id.to_string(), id, "same id (webhook-id)");
        if s == "a" {
            e.push_done(&child, &got).await.unwrap();
        } else {
            e.push_retry(&child, &got, 5_000).await.unwrap();
            assert!(e
                .push_receive(&child, 10, 30_000, 0)
                .await
                .unwrap()
                .is_empty());
            c.advance(5);
            let again = e.push_receive(&child, 10, 30_000, 0).await.unwrap();
            assert_eq!(again[0].message.receive_count, 2);
        }
    }
    // Subscriptions survive a restart; deleting one drops its copies.
    let c = c.restart(h).await;
    let e = &c.engine;
    assert_eq!(e.subscriptions("orders").await.unwrap().len(), 2);
    e.delete_subscription("orders", "b").await.unwrap();
    assert!(e.subscription("orders", "b").is_err());
    e.delete_subscription("orders", "a").await.unwrap();
    assert!(!e.is_push("orders"));
    c.send("orders", "pull again").await;
    assert_eq!(c.bodies("orders", 10, 30).await, vec!["pull again"]);
}

pub async fn push_dead_letters_and_redrive_to_their_subscription(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    let e = &c.engine;
    // Published before the subscriptions exist: drained into them.
    c.send("jobs", "early").await;
    e.put_subscription("jobs", "a", sub("http://a.example/x"))
        .await
        .unwrap();
    e.put_subscription("jobs", "b", sub("http://b.example/x"))
        .await
        .unwrap();
    assert_eq!(e.drain_push_queue("jobs").await.unwrap(), 1);
    let (ca, cb) = (
        crate::push::child_queue("jobs", "a"),
        crate::push::child_queue("jobs", "b"),
    );
    let got = e.push_receive(&ca, 10, 30_000, 0).await.unwrap();
    assert_eq!(got.len(), 1);
    let dlq = e
        .push_dead_letter("jobs", "a", &ca, &got, 3, "HTTP 404")
        .await
        .unwrap();
    assert_eq!(dlq, "jobs-dlq");
    let dead = e.peek("jobs-dlq", 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].attributes.get("sluice-message-id").unwrap(),
        &got[0].message.id.to_string(),
        "the dead letter has an id of its own and names the original"
    );
    assert_eq!(dead[0].attributes.get("sluice-subscription").unwrap(), "a");
    assert_eq!(dead[0].attributes.get("sluice-error").unwrap(), "HTTP 404");
    assert!(e.push_receive(&ca, 10, 30_000, 0).await.unwrap().is_empty());
    // b still has its copy; a redrive sends the dead letter back to a only. (A redrive by an id
    // that is not there moves nothing and leaves the dead letter in place.)
    assert_eq!(
        e.redrive_ids("jobs-dlq", &[got[0].message.id])
            .await
            .unwrap(),
        0
    );
    assert_eq!(e.peek("jobs-dlq", 10).await.unwrap().len(), 1);
    assert_eq!(e.redrive_ids("jobs-dlq", &[dead[0].id]).await.unwrap(), 1);
    let back = e.push_receive(&ca, 10, 30_000, 0).await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(
        back[0].message.id, got[0].message.id,
        "redriven under its original id"
    );
    assert!(!back[0].message.attributes.contains_key("sluice-error"));
    assert_eq!(e.push_receive(&cb, 10, 30_000, 0).await.unwrap().len(), 1);
    assert!(e.peek("jobs-dlq", 10).await.unwrap().is_empty());
    // Purging a push queue drops the undelivered copies too.
    assert_eq!(e.purge("jobs").await.unwrap(), 2);
    assert_eq!(e.child_stats(&cb).await.unwrap().in_flight, 0);
    // Deleting the queue deletes its subscriptions.
    e.delete_queue("jobs").await.unwrap();
    assert!(!e.is_push("jobs"));
    assert!(e.all_subscriptions().is_empty());
}

pub async fn copies_sharing_an_id_survive_restart_independently(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    let e = &c.engine;
    for s in ["a", "b", "c"] {
        e.put_subscription("fan", s, sub("http://x.example/"))
            .await
            .unwrap();
    }
    let id = c.send("fan", "m").await;
    let (ca, cb, cc) = (
        crate::push::child_queue("fan", "a"),
        crate::push::child_queue("fan", "b"),
        crate::push::child_queue("fan", "c"),
    );
    let a = e.push_receive(&ca, 1, 30_000, 0).await.unwrap();
    e.push_done(&ca, &a).await.unwrap();
    let b = e.push_receive(&cb, 1, 30_000, 0).await.unwrap();
    e.push_dead_letter("fan", "b", &cb, &b, 1, "HTTP 410")
        .await
        .unwrap();
    let cg = e.push_receive(&cc, 1, 30_000, 0).await.unwrap();
    e.push_retry(&cc, &cg, 600_000).await.unwrap();
    let c = c.restart(h).await;
    let e = &c.engine;
    assert!(
        e.push_receive(&ca, 1, 30_000, 0).await.unwrap().is_empty(),
        "a's copy was delivered"
    );
    assert_eq!(
        e.child_stats(&cc).await.unwrap().delayed,
        1,
        "c's retry is still pending"
    );
    let dead = e.peek("fan-dlq", 10).await.unwrap();
    assert_eq!(dead.len(), 1, "b's dead letter survived");
    assert_eq!(dead[0].attributes.get("sluice-message-id").unwrap(), &id);
    // And store-level moves of a shared id (a dead-letter move and a redrive) stay separate.
    e.redrive("fan", None).await.unwrap();
    let c = c.restart(h).await;
    let e = &c.engine;
    assert_eq!(e.push_receive(&cb, 1, 30_000, 0).await.unwrap().len(), 1);
    assert_eq!(e.child_stats(&cc).await.unwrap().delayed, 1);
}

pub async fn timers_fire_once_and_survive_restart(h: &mut dyn Harness) {
    use crate::timers::{TimerSpec, TimerStatus, SUCCEEDED, TIMER_QUEUE};
    let c = Ctx::new(h).await;
    let e = &c.engine;
    let mut spec = TimerSpec::http("http://example.com/hook");
    spec.due_at = T0 + 10_000;
    let id = e.create_timer(spec.clone(), None).await.unwrap();
    let cancel_me = e.create_timer(spec.clone(), None).await.unwrap();
    assert_eq!(e.timer(id).unwrap().status, TimerStatus::Scheduled);
    assert_eq!(e.timer(id).unwrap().due_at, Some(T0 + 10_000));
    assert!(e
        .push_receive(TIMER_QUEUE, 10, 30_000, 0)
        .await
        .unwrap()
        .is_empty());
    e.cancel_timer(cancel_me).await.unwrap();
    assert_eq!(e.timer(cancel_me).unwrap().status, TimerStatus::Cancelled);
    // Restart before it is due: still pending, still cancelled.
    let c = c.restart(h).await;
    let e = &c.engine;
    assert_eq!(e.timer(id).unwrap().status, TimerStatus::Scheduled);
    assert_eq!(e.timer(cancel_me).unwrap().status, TimerStatus::Cancelled);
    c.advance(10);
    let due = e.push_receive(TIMER_QUEUE, 10, 30_000, 0).await.unwrap();
    assert_eq!(due.len(), 2);
    let spec: TimerSpec = serde_json::from_slice(&due[0].message.body).unwrap();
    assert_eq!(spec.url.as_deref(), Some("http://example.com/hook"));
    for d in &due {
        let code = e.timer_outcome(d.message.id).unwrap_or(SUCCEEDED);
        e.finish_timer(d, code).await.unwrap();
    }
    assert_eq!(e.timer(id).unwrap().status, TimerStatus::Succeeded);
    assert!(matches!(
        e.cancel_timer(id).await,
        Err(EngineError::Conflict(_))
    ));
    assert!(matches!(
        e.cancel_timer(crate::MessageId(42)).await,
        Err(EngineError::NotFound { .. })
    ));
    let c = c.restart(h).await;
    let e = &c.engine;
    assert_eq!(e.timer(id).unwrap().status, TimerStatus::Succeeded);
    assert_eq!(e.timer(cancel_me).unwrap().status, TimerStatus::Cancelled);
    assert!(e
        .push_receive(TIMER_QUEUE, 10, 30_000, 0)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(e.timer_counts(), (0, 2));
}

pub async fn schedules_fire_once_and_count_missed(h: &mut dyn Harness) {
    use crate::timers::{firing_id, Schedule, TimerSpec, TIMER_QUEUE};
    let c = Ctx::new(h).await;
    let e = &c.engine;
    let mut target = TimerSpec::http("http://example.com/cron");
    target.url = None;
    target.queue = Some("ticks".into());
    target.body = Some("tick".into());
    let s = Schedule {
        cron: "*/10 * * * * *".into(),
        timezone: "UTC".into(),
        target,
        created_at: 0,
        updated_at: 0,
        last_fired: None,
        fired: 0,
        missed: 0,
    };
    e.put_schedule("every10", s).await.unwrap();
    assert_eq!(e.fire_schedules().await.unwrap(), Some(T0 + 10_000));
    c.advance(10);
    assert_eq!(e.fire_schedules().await.unwrap(), Some(T0 + 20_000));
    assert_eq!(
        e.fire_schedules().await.unwrap(),
        Some(T0 + 20_000),
        "no double fire"
    );
    assert!(e.timer(firing_id("every10", T0 + 10_000)).is_some());
    let c = c.restart(h).await;
    let e = &c.engine;
    // Down for 35 s: the latest missed firing fires once, two are counted as missed.
    c.advance(35);
    e.fire_schedules().await.unwrap();
    let s = e.schedule("every10").unwrap();
    assert_eq!((s.fired, s.missed), (2, 2));
    assert_eq!(s.last_fired, Some(T0 + 40_000));
    let fired = e.push_receive(TIMER_QUEUE, 10, 30_000, 0).await.unwrap();
    assert_eq!(fired.len(), 2);
    e.delete_schedule("every10").await.unwrap();
    assert!(e.schedule("every10").is_err());
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
            push_dead_letters_and_redrive_to_their_subscription, timers_fire_once_and_survive_restart,
            copies_sharing_an_id_survive_restart_independently,
            schedules_fire_once_and_count_missed);
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
