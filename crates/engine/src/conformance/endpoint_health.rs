//! A subscription's health and state that the store must keep: its owner's pause (a paused
//! subscription's copies are not leased, across restarts, whatever its queue does), its
//! circuit (stored apart from its settings), and its disabling and enabling.

use super::*;

pub async fn paused_subscriptions_lease_nothing_until_resumed(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    c.subscribe("hooks", "a").await;
    c.subscribe("hooks", "b").await;
    let push = c.engine.push();
    let s = push.pause("hooks", "a").await.unwrap();
    assert_eq!(s.paused_at, Some(T0));
    c.advance(5);
    assert_eq!(
        push.pause("hooks", "a").await.unwrap().paused_at,
        Some(T0),
        "pausing again keeps the first moment"
    );
    c.send("hooks", "m1").await;
    c.send("hooks", "m2").await;
    assert!(
        c.lease("hooks", "a", 10).await.is_empty(),
        "paused: nothing"
    );
    assert_eq!(c.lease("hooks", "b", 10).await.len(), 2, "others go on");
    // A replacement of the settings keeps the pause.
    push.put("hooks", "a", sub("http://a.example/other"))
        .await
        .unwrap();
    assert_eq!(push.get("hooks", "a").unwrap().paused_at, Some(T0));
    assert!(c.lease("hooks", "a", 10).await.is_empty());
    // The queue's own pause and resume leave the subscription's pause in force.
    c.engine.pause_queue("hooks").await.unwrap();
    c.engine.resume_queue("hooks").await.unwrap();
    assert!(c.lease("hooks", "a", 10).await.is_empty());
    // Durable; a crash between the subscription's mark and its copy queue's is repaired.
    let child = crate::push::child_queue("hooks", "a");
    let store = c.engine_store();
    let mut cfg = store.get_queue(&child).await.unwrap().unwrap().config;
    cfg.paused_at = None;
    store.put_queue(&child, cfg, T0).await.unwrap();
    drop(store);
    let c = c.restart(h).await;
    let push = c.engine.push();
    assert_eq!(push.get("hooks", "a").unwrap().paused_at, Some(T0));
    assert!(
        c.lease("hooks", "a", 10).await.is_empty(),
        "still paused after a restart"
    );
    let stats = push.child_stats(&child).await.unwrap();
    assert_eq!(
        (stats.ready, stats.received),
        (2, 0),
        "the copies wait, never received"
    );
    // Resumed: everything is there, first attempts.
    let s = push.resume("hooks", "a").await.unwrap();
    assert_eq!(s.paused_at, None);
    let got = c.lease("hooks", "a", 10).await;
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|d| d.message.receive_count == 1));
    // A paused queue's subscription resumed on its own stays held by the queue.
    c.engine.pause_queue("hooks").await.unwrap();
    push.pause("hooks", "b").await.unwrap();
    push.resume("hooks", "b").await.unwrap();
    c.send("hooks", "m3").await;
    assert!(c.lease("hooks", "b", 10).await.is_empty());
    c.engine.resume_queue("hooks").await.unwrap();
    let got = c.lease("hooks", "b", 10).await;
    assert!(
        got.iter().any(|d| d.message.body == b"m3"),
        "resumed with its queue"
    );
}

pub async fn disabled_subscriptions_wait_and_keep_their_circuit_until_enabled(h: &mut dyn Harness) {
    use crate::push::breaker::{Circuit, CircuitState};
    let c = Ctx::new(h).await;
    c.subscribe("hooks", "a").await;
    c.subscribe("hooks", "ab").await;
    let push = c.engine.push();
    // An open circuit is stored apart from the settings, exactly under its own name.
    let open = Circuit {
        state: CircuitState::Open,
        consecutive_failures: 20,
        failing_since: Some(T0 - 60_000),
        opened_at: Some(T0),
        next_probe_at: Some(T0 + 5_000),
        failed_probes: 0,
    };
    push.save_circuit("hooks", "a", &open).await.unwrap();
    assert_eq!(
        push.circuit("hooks", "ab").await.unwrap(),
        Circuit::default()
    );
    let s = push
        .disable("hooks", "a", "no success for 60 s")
        .await
        .unwrap();
    assert_eq!(s.disabled.as_ref().map(|d| d.at), Some(T0));
    c.advance(1);
    let again = push.disable("hooks", "a", "other").await.unwrap();
    assert_eq!(
        again.disabled, s.disabled,
        "the first moment and reason stay"
    );
    c.send("hooks", "m1").await;
    assert!(
        c.lease("hooks", "a", 10).await.is_empty(),
        "disabled: nothing"
    );
    // A replacement of the settings and a restart keep both.
    push.put("hooks", "a", sub("http://a.example/v2"))
        .await
        .unwrap();
    let c = c.restart(h).await;
    let push = c.engine.push();
    let s = push.get("hooks", "a").unwrap();
    assert_eq!(
        s.disabled.map(|d| d.reason).as_deref(),
        Some("no success for 60 s")
    );
    assert_eq!(push.circuit("hooks", "a").await.unwrap(), open);
    assert!(c.lease("hooks", "a", 10).await.is_empty(), "still disabled");
    // Paused and disabled: enabling leaves the pause in force.
    push.pause("hooks", "a").await.unwrap();
    let s = push.enable("hooks", "a").await.unwrap();
    assert!(s.disabled.is_none());
    assert_eq!(
        push.circuit("hooks", "a").await.unwrap(),
        Circuit::default()
    );
    assert!(c.lease("hooks", "a", 10).await.is_empty(), "still paused");
    push.resume("hooks", "a").await.unwrap();
    let got = c.lease("hooks", "a", 10).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].message.receive_count, 1,
        "no receive used while held"
    );
    // Deleting the subscription forgets its circuit.
    push.save_circuit("hooks", "a", &open).await.unwrap();
    push.delete("hooks", "a").await.unwrap();
    assert_eq!(
        push.circuit("hooks", "a").await.unwrap(),
        Circuit::default()
    );
}
