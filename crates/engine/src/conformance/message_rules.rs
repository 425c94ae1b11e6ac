//! Queues beyond SQS: priorities, fair turns between message groups and their in-flight limit,
//! idempotent publish on any queue with a per-queue window, and per-message time to live.

#![allow(unused_imports)]

use super::*;
use crate::model::OnExpire;

/// A message with the given body and options.
fn msg(body: &str) -> Publish {
    Publish {
        body: body.as_bytes().to_vec(),
        ..Default::default()
    }
}

impl Ctx {
    async fn put(&self, q: &str, patch: QueueConfigPatch) {
        self.engine.put_queue(q, patch).await.unwrap();
    }
    async fn publish_all(&self, q: &str, batch: Vec<Publish>) -> Vec<crate::Published> {
        self.engine
            .publish_detailed(q, batch, crate::IfMissing::Create)
            .await
            .unwrap()
    }
    /// Bodies of `n` messages received one receive at a time (each acked).
    async fn take_one_by_one(&self, q: &str, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        for _ in 0..n {
            let Some(d) = self.recv(q, 1, 30).await.pop() else {
                break;
            };
            self.engine
                .ack(q, &[receipt(&self.engine, q, &d)])
                .await
                .unwrap();
            out.push(String::from_utf8(d.message.body).unwrap());
        }
        out
    }
}

pub async fn priorities_go_first_and_keep_publish_order(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    let with = |b: &str, p: Option<u8>| Publish {
        priority: p,
        ..msg(b)
    };
    c.publish_all(
        "p",
        vec![
            with("n1", None),
            with("h1", Some(9)),
            with("l1", Some(0)),
            with("h2", Some(9)),
            with("n2", Some(4)),
            with("m1", Some(6)),
        ],
    )
    .await;
    // One batched receive and one-at-a-time receives agree.
    assert_eq!(c.bodies("p", 3, 5).await, vec!["h1", "h2", "m1"]);
    c.advance(5);
    let got = c.take_one_by_one("p", 10).await;
    assert_eq!(got, vec!["h1", "h2", "m1", "n1", "n2", "l1"]);
    // A returned message goes back to its own priority, behind that priority's messages.
    c.publish_all("p", vec![with("x", Some(2)), with("y", Some(2))])
        .await;
    let d = c.recv("p", 1, 30).await.remove(0);
    assert_eq!(d.message.body, b"x");
    assert_eq!(d.message.priority, 2);
    c.publish_all("p", vec![with("top", Some(8))]).await;
    c.engine
        .nack("p", &[receipt(&c.engine, "p", &d)], 0, Placement::Back)
        .await
        .unwrap();
    assert_eq!(c.take_one_by_one("p", 5).await, vec!["top", "y", "x"]);
    // Out of range, and not on FIFO queues: refused, nothing stored.
    let err = c
        .engine
        .publish("p", vec![with("bad", Some(10))])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("priority"), "{err}");
    let err = c
        .engine
        .publish(
            "p.fifo",
            vec![Publish {
                group: Some("g".into()),
                dedup_id: Some("d".into()),
                ..with("f", Some(5))
            }],
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("priority"), "{err}");
    assert_eq!(c.engine.stats("p").await.unwrap().ready, 0);
}

pub async fn groups_take_turns_and_respect_their_in_flight_limit(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    let grouped = |b: String, g: &str| Publish {
        group: Some(g.to_string()),
        ..msg(&b)
    };
    // One big tenant first, then three small ones and some messages without a group.
    c.publish_all(
        "fair",
        (0..200)
            .map(|i| grouped(format!("big{i}"), "big"))
            .collect(),
    )
    .await;
    for g in ["s1", "s2", "s3"] {
        c.publish_all(
            "fair",
            (0..3).map(|i| grouped(format!("{g}-{i}"), g)).collect(),
        )
        .await;
    }
    c.publish_all("fair", vec![msg("plain0"), msg("plain1")])
        .await;
    // Five groups (the ungrouped messages count as one): within the first 15 receives every
    // small group's three messages and both plain ones came out.
    let first = c.take_one_by_one("fair", 15).await;
    let small = first.iter().filter(|b| b.starts_with('s')).count();
    let plain = first.iter().filter(|b| b.starts_with("plain")).count();
    assert_eq!((small, plain), (9, 2), "{first:?}");
    // Order inside a group holds.
    let s1: Vec<&String> = first.iter().filter(|b| b.starts_with("s1")).collect();
    assert_eq!(s1, vec!["s1-0", "s1-1", "s1-2"]);
    let big: Vec<&String> = first.iter().filter(|b| b.starts_with("big")).collect();
    assert_eq!(big, vec!["big0", "big1", "big2", "big3"]);
    // A batched receive takes turns too.
    c.publish_all("fair", vec![grouped("late".into(), "late")])
        .await;
    let batch = c.bodies("fair", 2, 30).await;
    assert!(batch.contains(&"late".to_string()), "{batch:?}");
    assert_eq!(
        c.recv("fair", 1, 30).await[0].message.group.as_deref(),
        Some("big")
    );

    // In-flight limit per group: two leased messages of a group at most.
    c.put(
        "cap",
        QueueConfigPatch {
            max_in_flight_per_group: Some(Some(2)),
            ..Default::default()
        },
    )
    .await;
    c.publish_all(
        "cap",
        (0..5).map(|i| grouped(format!("a{i}"), "a")).collect(),
    )
    .await;
    c.publish_all("cap", vec![grouped("b0".into(), "b"), msg("n0"), msg("n1")])
        .await;
    let got = c.recv("cap", 10, 30).await;
    let bodies: Vec<String> = got
        .iter()
        .map(|d| String::from_utf8(d.message.body.clone()).unwrap())
        .collect();
    assert_eq!(
        bodies.iter().filter(|b| b.starts_with('a')).count(),
        2,
        "{bodies:?}"
    );
    assert!(bodies.contains(&"b0".to_string()) && bodies.contains(&"n1".to_string()));
    assert!(
        c.recv("cap", 10, 30).await.is_empty(),
        "group a is at its limit"
    );
    // Settling one of a's messages frees one place, and wakes a receive waiting for it.
    let engine = c.engine.clone();
    let waiting = tokio::spawn(async move {
        engine
            .receive(
                "cap",
                ReceiveOptions {
                    max_messages: 10,
                    wait_seconds: Some(20),
                    visibility_timeout_seconds: Some(30),
                },
            )
            .await
            .unwrap()
    });
    c.wait_for_waiters(1).await;
    let a0 = got.iter().find(|d| d.message.body == b"a0").unwrap();
    c.engine
        .ack("cap", &[receipt(&c.engine, "cap", a0)])
        .await
        .unwrap();
    let woke = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the ack woke the waiting receive")
        .unwrap();
    let woke: Vec<&[u8]> = woke.iter().map(|d| d.message.body.as_slice()).collect();
    assert_eq!(woke, vec![&b"a2"[..]]);
    // Expired leases free places as well (everything leased returns; two of a's go out).
    c.advance(31);
    let back = c.bodies("cap", 10, 30).await;
    assert_eq!(back.len(), 5, "{back:?}");
    assert_eq!(back.iter().filter(|b| b.starts_with('a')).count(), 2);
    // Lifting the limit lets the rest out.
    c.put(
        "cap",
        QueueConfigPatch {
            max_in_flight_per_group: Some(None),
            ..Default::default()
        },
    )
    .await;
    assert!(!c.recv("cap", 10, 30).await.is_empty());
    // Not on FIFO queues, and within range.
    for (q, n) in [("capf.fifo", 2), ("cap0", 0)] {
        let err = c
            .engine
            .put_queue(
                q,
                QueueConfigPatch {
                    max_in_flight_per_group: Some(Some(n)),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("max_in_flight_per_group"), "{err}");
    }
}

pub async fn idempotent_publish_on_any_queue_within_its_window(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    let keyed = |b: &str, k: &str| Publish {
        dedup_id: Some(k.to_string()),
        ..msg(b)
    };
    let first = c.publish_all("idem", vec![keyed("one", "k1")]).await[0];
    assert!(!first.duplicate);
    // A repeat (even with another body) stores nothing and answers the first id.
    let again = c.publish_all("idem", vec![keyed("other", "k1")]).await[0];
    assert_eq!((again.id, again.duplicate), (first.id, true));
    // Per entry in a batch, including a repeat inside the batch itself.
    let batch = c
        .publish_all(
            "idem",
            vec![
                keyed("two", "k2"),
                keyed("one again", "k1"),
                keyed("two again", "k2"),
            ],
        )
        .await;
    assert_eq!(
        batch.iter().map(|p| p.duplicate).collect::<Vec<_>>(),
        vec![false, true, true]
    );
    assert_eq!(batch[2].id, batch[0].id);
    assert_eq!(c.engine.stats("idem").await.unwrap().ready, 2);
    assert_eq!(c.engine.stats("idem").await.unwrap().published, 2);
    // Remembered across a restart; the default window is 5 minutes.
    let c = c.restart(h).await;
    assert!(c.publish_all("idem", vec![keyed("x", "k1")]).await[0].duplicate);
    c.advance(301);
    assert!(!c.publish_all("idem", vec![keyed("x", "k1")]).await[0].duplicate);
    // A queue may keep keys up to a day.
    c.put(
        "day",
        QueueConfigPatch {
            dedup_window_seconds: Some(86_400),
            ..Default::default()
        },
    )
    .await;
    let d1 = c.publish_all("day", vec![keyed("a", "order-7")]).await[0];
    c.advance(20 * 3600);
    let c = c.restart(h).await;
    let d2 = c.publish_all("day", vec![keyed("b", "order-7")]).await[0];
    assert_eq!((d2.id, d2.duplicate), (d1.id, true));
    c.advance(4 * 3600 + 1);
    assert!(!c.publish_all("day", vec![keyed("c", "order-7")]).await[0].duplicate);
    for w in [0, 86_401] {
        let err = c
            .engine
            .put_queue(
                "day",
                QueueConfigPatch {
                    dedup_window_seconds: Some(w),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("dedup_window_seconds"), "{err}");
    }
}

pub async fn expired_messages_are_never_delivered(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    let ttl = |b: &str, s: u32| Publish {
        ttl_seconds: Some(s),
        ..msg(b)
    };
    c.publish_all(
        "ttl",
        vec![ttl("short", 10), ttl("long", 100), msg("forever")],
    )
    .await;
    let peeked = c.engine.peek("ttl", 10).await.unwrap();
    let short = peeked.iter().find(|m| m.body == b"short").unwrap();
    assert_eq!(short.expires_at, Some(T0 + 10_000));
    c.advance(10);
    assert_eq!(c.take_one_by_one("ttl", 10).await, vec!["long", "forever"]);
    assert_eq!(c.engine.stats("ttl").await.unwrap().expired, 1);
    // In flight when its time ends: it is not delivered again (the lease may still be acked
    // until then, but a nack or an expired lease drops it).
    c.publish_all("ttl", vec![ttl("leased", 20)]).await;
    let d = c.recv("ttl", 1, 60).await.remove(0);
    c.advance(21);
    // Either answer is fine here (a receipt whose message expired may be refused).
    let _ = c
        .engine
        .nack("ttl", &[receipt(&c.engine, "ttl", &d)], 0, Placement::Back)
        .await;
    assert!(c.recv("ttl", 10, 30).await.is_empty());
    // Delayed past its end: never ready.
    c.publish_all(
        "ttl",
        vec![Publish {
            delay_seconds: Some(30),
            ..ttl("late", 10)
        }],
    )
    .await;
    c.advance(31);
    assert!(c.recv("ttl", 10, 30).await.is_empty());
    let s = c.engine.stats("ttl").await.unwrap();
    assert_eq!((s.expired, s.ready, s.delayed, s.in_flight), (3, 0, 0, 0));
    // The queue's default time to live, and dead-lettering instead of dropping.
    c.put("ttl-dlq", QueueConfigPatch::default()).await;
    c.put(
        "ttl",
        QueueConfigPatch {
            default_ttl_seconds: Some(Some(5)),
            max_receives: Some(Some(5)),
            dead_letter_queue: Some(Some("ttl-dlq".into())),
            on_expire: Some(OnExpire::DeadLetter),
            ..Default::default()
        },
    )
    .await;
    c.publish_all("ttl", vec![msg("defaulted"), ttl("own", 60)])
        .await;
    c.advance(6);
    assert_eq!(c.take_one_by_one("ttl", 10).await, vec!["own"]);
    // A dead letter has no time to live: it waits in the dead-letter queue, across restarts.
    let c = c.restart(h).await;
    c.advance(3600);
    assert_eq!(c.bodies("ttl-dlq", 10, 30).await, vec!["defaulted"]);
    let s = c.engine.stats("ttl").await.unwrap();
    assert_eq!((s.expired, s.dead_lettered_total), (4, 1));
    // Limits.
    for (t, at) in [(Some(0), None), (None, Some(T0 - 1))] {
        let err = c
            .engine
            .publish(
                "ttl",
                vec![Publish {
                    ttl_seconds: t,
                    expires_at: at,
                    ..msg("bad")
                }],
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("ttl_seconds") || err.to_string().contains("expires_at"));
    }
    let err = c
        .engine
        .put_queue(
            "ttl2",
            QueueConfigPatch {
                on_expire: Some(OnExpire::DeadLetter),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("on_expire"), "{err}");
}

pub async fn expiry_and_priorities_survive_restart(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    c.publish_all(
        "keep",
        vec![
            Publish {
                ttl_seconds: Some(50),
                ..msg("ttl")
            },
            Publish {
                priority: Some(7),
                group: Some("g".into()),
                ..msg("high")
            },
            msg("normal"),
        ],
    )
    .await;
    let c = c.restart(h).await;
    let peeked = c.engine.peek("keep", 10).await.unwrap();
    let high = peeked.iter().find(|m| m.body == b"high").unwrap();
    assert_eq!((high.priority, high.group.as_deref()), (7, Some("g")));
    assert_eq!(c.take_one_by_one("keep", 1).await, vec!["high"]);
    c.advance(50);
    let c = c.restart(h).await;
    assert_eq!(c.take_one_by_one("keep", 10).await, vec!["normal"]);
    assert_eq!(c.engine.stats("keep").await.unwrap().expired, 1);
}

pub async fn groups_are_held_to_their_rate(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    let grouped = |b: String, g: &str| Publish {
        group: Some(g.to_string()),
        ..msg(&b)
    };
    c.put(
        "rated",
        QueueConfigPatch {
            group_rate_per_second: Some(Some(2)),
            ..Default::default()
        },
    )
    .await;
    c.publish_all(
        "rated",
        (0..10).map(|i| grouped(format!("a{i}"), "a")).collect(),
    )
    .await;
    c.publish_all(
        "rated",
        vec![
            grouped("b0".into(), "b"),
            grouped("b1".into(), "b"),
            grouped("b2".into(), "b"),
            msg("plain"),
        ],
    )
    .await;
    // A burst of two per group (messages without a group are not limited).
    let got = c.bodies("rated", 10, 60).await;
    assert_eq!(got.len(), 5, "{got:?}");
    assert_eq!(got.iter().filter(|b| b.starts_with('a')).count(), 2);
    assert_eq!(got.iter().filter(|b| b.starts_with('b')).count(), 2);
    assert!(c.recv("rated", 10, 60).await.is_empty());
    // Half a second brings each group one token.
    c.clock.advance(Duration::from_millis(500));
    let got = c.bodies("rated", 10, 60).await;
    assert_eq!(got, vec!["a2", "b2"]);
    // A long poll waits for the next token, not for its deadline.
    let engine = c.engine.clone();
    let waiting = tokio::spawn(async move {
        engine
            .receive(
                "rated",
                ReceiveOptions {
                    max_messages: 10,
                    wait_seconds: Some(20),
                    visibility_timeout_seconds: Some(60),
                },
            )
            .await
            .unwrap()
    });
    c.wait_for_waiters(1).await;
    c.clock.advance(Duration::from_millis(500));
    let got = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the long poll ended when a token came")
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message.body, b"a3");
    // Lifting the limit lets the rest out.
    c.put(
        "rated",
        QueueConfigPatch {
            group_rate_per_second: Some(None),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(c.bodies("rated", 10, 60).await.len(), 6);
    for (q, n) in [("rated.fifo", 2), ("rated", 0)] {
        let err = c
            .engine
            .put_queue(
                q,
                QueueConfigPatch {
                    group_rate_per_second: Some(Some(n)),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("group_rate_per_second"), "{err}");
    }
}

pub async fn push_queues_pass_their_rules_to_the_copies(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    c.subscribe("hooks", "a").await;
    c.put(
        "hooks",
        QueueConfigPatch {
            dedup_window_seconds: Some(3600),
            default_ttl_seconds: Some(Some(7200)),
            ..Default::default()
        },
    )
    .await;
    let keyed = |b: &str| Publish {
        dedup_id: Some("evt-1".into()),
        priority: Some(7),
        ..msg(b)
    };
    let first = c.publish_all("hooks", vec![keyed("one")]).await[0];
    c.advance(1800);
    let again = c.publish_all("hooks", vec![keyed("two")]).await[0];
    assert_eq!((again.id, again.duplicate), (first.id, true));
    let got = c.lease("hooks", "a", 10).await;
    assert_eq!(got.len(), 1);
    let m = &got[0].message;
    assert_eq!((m.body.as_slice(), m.priority), (&b"one"[..], 7));
    assert_eq!(m.expires_at, Some(T0 + 7_200_000));
    // A subscription made after the change takes the window too.
    c.subscribe("hooks", "b").await;
    c.advance(1000);
    assert!(c.publish_all("hooks", vec![keyed("three")]).await[0].duplicate);
}
