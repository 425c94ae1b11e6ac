//! Restarts: what survives closing and reopening the store (messages, receive counts, dead letters, deletions, settings, the archive).

#![allow(unused_imports)]

use super::*;

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
    c.engine
        .ack("keep", &[receipt(&c.engine, "keep", &got[0])])
        .await
        .unwrap(); // a gone
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
        .nack("src", &[receipt(&c.engine, "src", &d)], 0, Placement::Back)
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

pub async fn settings_and_archive_survive_restart(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    let st = c.engine.store();
    st.meta_put("a/1", Some("one".into())).await.unwrap();
    st.meta_put("a/2", Some("two".into())).await.unwrap();
    st.meta_put("b/1", Some("other".into())).await.unwrap();
    st.meta_put("a/2", None).await.unwrap();
    st.archive_put(&[(crate::MessageId(1), 1), (crate::MessageId(2), 2)])
        .await
        .unwrap();
    st.archive_put(&[(crate::MessageId(1), 3)]).await.unwrap();
    let c = c.restart(h).await;
    let st = c.engine.store();
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

/// Delayed messages keep what their index entry holds (priority, group, time to live, receive
/// count, first receive) across a restart, and come due in due order: hundreds of them made
/// in scrambled due order, so a compact delayed index spans several chunks.
pub async fn delayed_messages_keep_their_fields_and_order_across_restart(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    let publish = |body: &str, delay: u32, edit: fn(&mut Publish)| {
        let mut p = Publish {
            body: body.as_bytes().to_vec(),
            delay_seconds: Some(delay),
            ..Default::default()
        };
        edit(&mut p);
        let engine = c.engine.clone();
        async move { engine.publish("d", vec![p]).await.unwrap() }
    };
    // Received once, then put back with a delay: it keeps its receive count and first receive.
    c.send("d", "received").await;
    let first = c.recv("d", 1, 30).await.remove(0);
    c.engine
        .nack("d", &[receipt(&c.engine, "d", &first)], 15, Placement::Back)
        .await
        .unwrap();
    publish("grouped", 10, |p| p.group = Some("g".into())).await;
    publish("mortal", 20, |p| p.ttl_seconds = Some(3600)).await;
    publish("urgent", 30, |p| p.priority = Some(9)).await;
    // 600 more, due at 100..700 s in scrambled order (119 is prime to 600).
    for i in 0..600u32 {
        publish(&format!("n{i}"), 100 + (i * 119) % 600, |_| {}).await;
    }
    let c = c.restart(h).await;
    assert_eq!(c.engine.stats("d").await.unwrap().delayed, 604);
    let take = async |secs: u64| {
        c.advance(secs);
        let mut got = c.recv("d", 10, 3600).await;
        assert_eq!(got.len(), 1, "one message due after {secs} s more");
        let d = got.remove(0);
        c.engine
            .ack("d", &[receipt(&c.engine, "d", &d)])
            .await
            .unwrap();
        d.message
    };
    let m = take(10).await;
    assert_eq!(
        (&m.body[..], m.group.as_deref()),
        (&b"grouped"[..], Some("g"))
    );
    let m = take(5).await;
    assert_eq!(&m.body[..], b"received");
    assert_eq!(m.receive_count, 2);
    assert_eq!(m.first_received_at, first.message.first_received_at);
    let m = take(5).await;
    assert_eq!(&m.body[..], b"mortal");
    assert!(m.expires_at.is_some_and(|t| t > c.engine.now()));
    let m = take(10).await;
    assert_eq!((&m.body[..], m.priority), (&b"urgent"[..], 9));
    let mut order = Vec::new();
    order.push(take(70).await);
    for _ in 1..600 {
        order.push(take(1).await);
    }
    let want: Vec<String> = (0..600u32)
        .map(|k| format!("n{}", (0..600u32).find(|i| (i * 119) % 600 == k).unwrap()))
        .collect();
    let got: Vec<String> = order
        .iter()
        .map(|m| String::from_utf8(m.body.clone()).unwrap())
        .collect();
    assert_eq!(got, want);
    assert_eq!(c.engine.stats("d").await.unwrap().delayed, 0);
}
