//! FIFO queues: group order and locking, deduplication, keyed publishes, the FIFO rules.

#![allow(unused_imports)]

use super::*;

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
    c.engine
        .ack("f.fifo", &[receipt(&c.engine, "f.fifo", &first)])
        .await
        .unwrap();
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
        .nack(
            "f.fifo",
            &[receipt(&c.engine, "f.fifo", &again)],
            0,
            Placement::Back,
        )
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
    let receipts: Vec<_> = got.iter().map(|d| receipt(e, "rows", d)).collect();
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
    c.subscribe("pushed", "a").await;
    for _ in 0..2 {
        e.publish_keyed("pushed", (0..2).map(msg).collect(), "g")
            .await
            .unwrap();
    }
    let got = c.lease("pushed", "a", 10).await;
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
    // A deduplication id is an idempotency key on any queue (message_rules.rs).
    assert!(std_dedup.is_ok());
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
