//! Queues and messages: delays, retention, purge and delete, peek, bodies and attributes, limits, configuration updates.

#![allow(unused_imports)]

use super::*;

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

pub async fn purge_and_delete(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    for i in 0..5 {
        c.send("p", &i.to_string()).await;
    }
    let d = c.recv("p", 1, 30).await.remove(0);
    assert_eq!(c.engine.purge("p").await.unwrap(), 5);
    assert_eq!(
        c.engine
            .ack("p", &[receipt(&c.engine, "p", &d)])
            .await
            .unwrap()[0],
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

/// Publishing creates a missing queue only while fewer than `max_queues_on_use` queues exist
/// (the rest is kept for queues created on purpose), and never when the caller says so
/// (`IfMissing::Refuse`). A refused publish stores nothing and creates nothing.
pub async fn queues_created_on_use_leave_headroom(h: &mut dyn Harness) {
    let base = {
        let c = Ctx::new(h).await;
        let n = c.engine.store().queue_count().await.unwrap();
        c.engine.close().await.unwrap();
        n
    };
    let opts = EngineOptions {
        max_queues_on_use: Some(base + 2),
        ..Default::default()
    };
    let c = Ctx::with_options(h, opts).await;
    let one = |b: &str| {
        vec![Publish {
            body: b.as_bytes().to_vec(),
            ..Default::default()
        }]
    };
    let refused = c
        .engine
        .publish_if("nope", one("x"), crate::IfMissing::Refuse)
        .await;
    assert_eq!(refused, Err(EngineError::QueueNotFound("nope".into())));
    assert!(c.engine.queue_info("nope").await.is_err(), "not created");
    c.send("a", "1").await;
    c.send("b", "2").await;
    let full = c.engine.publish("c", one("3")).await;
    assert!(
        matches!(full, Err(EngineError::TooManyQueuesOnUse { limit, .. }) if limit == base + 2),
        "{full:?}"
    );
    assert!(c.engine.queue_info("c").await.is_err(), "not created");
    // Existing queues still take messages, and a queue made on purpose still fits.
    c.send("a", "4").await;
    c.engine
        .put_queue("made", QueueConfigPatch::default())
        .await
        .unwrap();
    c.send("made", "5").await;
    assert_eq!(c.engine.store().queue_count().await.unwrap(), base + 3);
    // Publishes racing to create queues on use never create more than the limit allows.
    c.engine.close().await.unwrap();
    drop(c);
    let racing = Ctx::with_options(
        h,
        EngineOptions {
            max_queues_on_use: Some(base + 3 + 4),
            ..Default::default()
        },
    )
    .await;
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let e = racing.engine.clone();
            tokio::spawn(async move { e.publish(&format!("race{i}"), one("r")).await.is_ok() })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        created += t.await.unwrap() as usize;
    }
    assert_eq!(created, 4, "exactly the room left was used");
    assert_eq!(
        racing.engine.store().queue_count().await.unwrap(),
        base + 3 + 4
    );
}

/// Creating, changing and deleting queues is durable: after a restart every queue is there
/// with its latest settings, deleted ones are gone, and a new queue never takes a deleted
/// queue's place (its old messages do not come back).
pub async fn queue_changes_survive_restart(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    for i in 0..20 {
        c.send(&format!("q{i}"), "m").await;
    }
    c.engine
        .put_queue(
            "q3",
            QueueConfigPatch {
                visibility_timeout_seconds: Some(7),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    c.engine.delete_queue("q5").await.unwrap();
    c.engine
        .put_queue("q5", QueueConfigPatch::default())
        .await
        .unwrap();
    let c = c.restart(h).await;
    let names: Vec<String> = c
        .engine
        .list_queues()
        .await
        .unwrap()
        .into_iter()
        .map(|(q, _)| q.name)
        .collect();
    assert_eq!(names.len(), 20, "{names:?}");
    let q3 = c.engine.queue_info("q3").await.unwrap();
    assert_eq!(q3.config.visibility_timeout_seconds, 7);
    assert_eq!(
        c.engine.stats("q5").await.unwrap().ready,
        0,
        "deleted stays deleted"
    );
    assert_eq!(c.engine.stats("q6").await.unwrap().ready, 1);
}
