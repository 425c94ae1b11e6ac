//! Dead letters: the move over `max_receives`, redrive (all, or by id), and the dead-letter gauge.

#![allow(unused_imports)]

use super::*;

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
            .nack(
                "work",
                &[receipt(&c.engine, "work", &d)],
                0,
                Placement::Back,
            )
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
        e.nack("src", &[receipt(e, "src", &d)], 0, Placement::Back)
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
        .nack(
            "dl-src",
            &[receipt(&c.engine, "dl-src", &d)],
            0,
            Placement::Back,
        )
        .await
        .unwrap();
    assert_eq!(c.engine.stats("dl-src").await.unwrap().dead_lettered, 1);
    c.advance(61);
    c.engine.tick().await.unwrap();
    assert_eq!(c.engine.stats("dl-dead").await.unwrap().expired, 1);
    assert_eq!(c.engine.stats("dl-src").await.unwrap().dead_lettered, 0);
}
