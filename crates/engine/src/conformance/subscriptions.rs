//! A subscription's own settings that the store must keep: a signing secret's rotation state,
//! message filters with their `filtered` counter, and the pause of a push queue's consumption.

use super::*;
use crate::push::{Rotation, SecretKind};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub async fn secret_rotation_survives_restart_and_put(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    let push = c.engine.push();
    let mut s = sub("http://a.example/hook");
    s.signing_secret = Some(SECRET.into());
    push.put("orders", "a", s).await.unwrap();
    let done = push
        .rotate_secret("orders", "a", Rotation::default())
        .await
        .unwrap();
    let new = done.generated.expect("generated");
    assert!(new.starts_with("whsec_") && new != SECRET);
    let in_force = |c: &Ctx| {
        let s = c.engine.push().get("orders", "a").unwrap();
        let v: Vec<String> = s
            .secrets_in_force(c.engine.now())
            .into_iter()
            .map(String::from)
            .collect();
        v
    };
    assert_eq!(in_force(&c), vec![new.clone(), SECRET.to_string()]);
    // Durable: a restart keeps both, and the grace period's end.
    let c = c.restart(h).await;
    assert_eq!(in_force(&c), vec![new.clone(), SECRET.to_string()]);
    // Replacing the subscription with the same secret keeps the rotation going.
    let mut same = sub("http://a.example/other");
    same.signing_secret = Some(new.clone());
    c.engine
        .push()
        .put("orders", "a", same.clone())
        .await
        .unwrap();
    assert_eq!(in_force(&c), vec![new.clone(), SECRET.to_string()]);
    // The old secret stops signing after 24 h.
    c.advance(24 * 3600 - 1);
    assert_eq!(in_force(&c).len(), 2);
    c.advance(1);
    assert_eq!(in_force(&c), vec![new.clone()]);
    // To an ed25519 key: generated, kept apart from the old one for a given grace.
    let done = c
        .engine
        .push()
        .rotate_secret(
            "orders",
            "a",
            Rotation {
                kind: Some(SecretKind::Ed25519),
                grace_seconds: Some(60),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let key = done.generated.unwrap();
    assert!(key.starts_with("whsk_"));
    assert_eq!(in_force(&c), vec![key.clone(), new.clone()]);
    // A replacement with another secret ends the rotation.
    same.signing_secret = Some(SECRET.into());
    c.engine.push().put("orders", "a", same).await.unwrap();
    assert_eq!(in_force(&c), vec![SECRET.to_string()]);
    // A given secret with no grace switches at once; bad input names its field.
    let given = Rotation {
        secret: Some(new.clone()),
        grace_seconds: Some(0),
        ..Default::default()
    };
    c.engine
        .push()
        .rotate_secret("orders", "a", given)
        .await
        .unwrap();
    let c = c.restart(h).await;
    assert_eq!(in_force(&c), vec![new.clone()]);
    let bad = Rotation {
        secret: Some("whsk_AAAA".into()),
        ..Default::default()
    };
    let e = c.engine.push().rotate_secret("orders", "a", bad).await;
    assert!(e.unwrap_err().to_string().starts_with("secret:"));
    assert!(matches!(
        c.engine
            .push()
            .rotate_secret("orders", "nope", Rotation::default())
            .await,
        Err(EngineError::NotFound { .. })
    ));
}

fn with_attrs(body: &str, attrs: &[(&str, &str)]) -> Publish {
    Publish {
        body: body.as_bytes().to_vec(),
        attributes: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

pub async fn filters_copy_only_matching_messages_and_count_the_rest(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    let e = &c.engine;
    let push = e.push();
    let mut eu = sub("http://a.example/hook");
    eu.filter = Some(
        crate::push::filter::FilterPolicy::parse(serde_json::json!({
            "region": ["eu", {"prefix": "eu-"}],
            "total": [{"numeric": [">=", 100]}],
        }))
        .unwrap(),
    );
    push.put("orders", "eu", eu.clone()).await.unwrap();
    let mut created = sub("http://b.example/hook");
    created.event_types = vec!["order.created".into()];
    push.put("orders", "created", created).await.unwrap();
    c.subscribe("orders", "all").await;
    let batch = vec![
        with_attrs(
            "m1",
            &[
                ("region", "eu-west"),
                ("total", "150"),
                ("event-type", "order.created"),
            ],
        ),
        with_attrs("m2", &[("region", "us"), ("total", "500")]),
        with_attrs("m3", &[("event-type", "order.created"), ("total", "1")]),
        with_attrs("m4", &[("region", "eu"), ("total", "99.5")]),
    ];
    let ids = e.publish("orders", batch).await.unwrap();
    assert_eq!(ids.len(), 4);
    let bodies = |got: Vec<crate::Delivery>| -> Vec<String> {
        got.into_iter()
            .map(|d| String::from_utf8(d.message.body).unwrap())
            .collect()
    };
    assert_eq!(bodies(c.lease("orders", "eu", 10).await), vec!["m1"]);
    assert_eq!(
        bodies(c.lease("orders", "created", 10).await),
        vec!["m1", "m3"]
    );
    assert_eq!(bodies(c.lease("orders", "all", 10).await).len(), 4);
    let filtered = |c: &Ctx, name: &str| {
        let push = c.engine.push().clone();
        let child = crate::push::child_queue("orders", name);
        async move { push.child_stats(&child).await.unwrap().filtered }
    };
    assert_eq!(filtered(&c, "eu").await, 3);
    assert_eq!(filtered(&c, "created").await, 2);
    assert_eq!(filtered(&c, "all").await, 0);
    // A message no subscription selects is accepted and stored nowhere.
    push.put("solo", "eu", eu).await.unwrap();
    let id = e
        .publish("solo", vec![with_attrs("nobody", &[("region", "us")])])
        .await
        .unwrap()[0];
    assert!(c.lease("solo", "eu", 10).await.is_empty());
    assert!(id.0 != 0);
    // The counters survive a restart, and reset with the others.
    let c = c.restart(h).await;
    assert_eq!(filtered(&c, "eu").await, 3);
    assert_eq!(filtered(&c, "created").await, 2);
    let s = c.engine.push().get("orders", "eu").unwrap();
    assert!(
        s.filter.is_some(),
        "the filter is stored with the subscription"
    );
    c.engine.push().reset_stats("orders", "eu").await.unwrap();
    assert_eq!(filtered(&c, "eu").await, 0);
    let c = c.restart(h).await;
    assert_eq!(filtered(&c, "eu").await, 0);
    assert_eq!(filtered(&c, "created").await, 2);
}

pub async fn paused_queues_hand_out_nothing_until_resumed(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    let e = &c.engine;
    c.send("work", "m1").await;
    let info = e.pause_queue("work").await.unwrap();
    assert_eq!(info.config.paused_at, Some(T0));
    c.advance(5);
    assert_eq!(
        e.pause_queue("work").await.unwrap().config.paused_at,
        Some(T0),
        "pausing again keeps the first moment"
    );
    c.send("work", "m2").await;
    assert!(c.recv("work", 10, 30).await.is_empty(), "paused: nothing");
    // A configuration change keeps the pause.
    let patch = QueueConfigPatch {
        visibility_timeout_seconds: Some(5),
        ..Default::default()
    };
    e.put_queue("work", patch).await.unwrap();
    // A push queue: its subscriptions lease nothing, a new one starts paused too.
    c.subscribe("hooks", "a").await;
    e.pause_queue("hooks").await.unwrap();
    c.send("hooks", "p1").await;
    c.subscribe("hooks", "b").await;
    c.send("hooks", "p2").await;
    assert!(c.lease("hooks", "a", 10).await.is_empty());
    assert!(c.lease("hooks", "b", 10).await.is_empty());
    // A crash between the copy queue's mark and the queue's is repaired at start.
    let child = crate::push::child_queue("hooks", "a");
    let store = e.push().child_stats(&child).await.unwrap();
    assert_eq!(store.ready, 2);
    let mut cfg = c
        .engine_store()
        .get_queue(&child)
        .await
        .unwrap()
        .unwrap()
        .config;
    cfg.paused_at = None;
    c.engine_store().put_queue(&child, cfg, T0).await.unwrap();
    let c = c.restart(h).await;
    let e = &c.engine;
    assert!(e
        .queue_info("work")
        .await
        .unwrap()
        .config
        .paused_at
        .is_some());
    assert_eq!(
        e.queue_info("work")
            .await
            .unwrap()
            .config
            .visibility_timeout_seconds,
        5
    );
    assert!(
        c.recv("work", 10, 30).await.is_empty(),
        "still paused after a restart"
    );
    assert!(
        c.lease("hooks", "a", 10).await.is_empty(),
        "the copy queue's mark repaired"
    );
    let stats = e.stats("work").await.unwrap();
    assert_eq!(
        (stats.ready, stats.received),
        (2, 0),
        "nothing was received"
    );
    e.resume_queue("work").await.unwrap();
    assert_eq!(c.bodies("work", 10, 30).await, vec!["m1", "m2"]);
    e.resume_queue("hooks").await.unwrap();
    assert_eq!(c.lease("hooks", "a", 10).await.len(), 2);
    assert_eq!(c.lease("hooks", "b", 10).await.len(), 1);
    assert!(matches!(
        e.pause_queue("nope").await,
        Err(EngineError::QueueNotFound(_))
    ));
}
