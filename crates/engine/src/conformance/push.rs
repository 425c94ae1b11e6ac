//! Push queues: fan-out into per-subscription copies, settling deliveries, push dead letters
//! and their redrive, copies that share an id.

use super::*;
use crate::push::{child_queue, Outcome};

pub async fn push_queue_fans_out_and_refuses_pull(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    let e = &c.engine;
    c.subscribe("orders", "a").await;
    let (_, created) = e
        .push()
        .put("orders", "b", sub("http://b.example/x"))
        .await
        .unwrap();
    assert!(created);
    assert!(e.push().is_push("orders"));
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
        let got = c.lease("orders", s, 10).await;
        assert_eq!(got.len(), 1, "subscription {s} has its own copy");
        assert_eq!(got[0].message.id.to_string(), id, "same id (webhook-id)");
        if s == "a" {
            c.settle("orders", s, &got, Outcome::Delivered, 0, "").await;
        } else {
            c.settle("orders", s, &got, Outcome::Retry, 5_000, "HTTP 503")
                .await;
            assert!(c.lease("orders", s, 10).await.is_empty());
            c.advance(5);
            let again = c.lease("orders", s, 10).await;
            assert_eq!(again[0].message.receive_count, 2);
            assert_eq!(c.next_attempt("orders", s, &again).await, 2);
        }
    }
    // Subscriptions survive a restart; deleting one drops its copies.
    let c = c.restart(h).await;
    let e = &c.engine;
    assert_eq!(e.push().list("orders").await.unwrap().len(), 2);
    e.push().delete("orders", "b").await.unwrap();
    assert!(e.push().get("orders", "b").is_err());
    e.push().delete("orders", "a").await.unwrap();
    assert!(!e.push().is_push("orders"));
    c.send("orders", "pull again").await;
    assert_eq!(c.bodies("orders", 10, 30).await, vec!["pull again"]);
}

/// Requests answered together are settled together (`settle_many`, as a lane's settler
/// does): delivered, retried, throttled and failed ones in one call, each counted, recorded
/// and put where it would be if settled alone.
pub async fn answered_requests_settle_together(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    let e = &c.engine;
    c.subscribe("many", "a").await;
    for i in 0..5 {
        c.send("many", &format!("m{i}")).await;
    }
    let mut got = c.lease("many", "a", 5).await;
    got.sort_by_key(|d| d.message.body.clone());
    assert_eq!(got.len(), 5);
    let plan = [
        (Outcome::Delivered, 0, ""),
        (Outcome::Delivered, 0, ""),
        (Outcome::Retry, 5_000, "HTTP 503"),
        (Outcome::Throttled, 1_000, ""),
        (Outcome::Failed, 0, "HTTP 410"),
    ];
    let mut answers = Vec::new();
    for (d, (outcome, delay, reason)) in got.iter().zip(plan) {
        let one = std::slice::from_ref(d);
        answers.push(c.answer("many", "a", one, outcome, delay, reason).await);
    }
    let batch: Vec<crate::push::Answered<'_>> = got
        .iter()
        .zip(&answers)
        .map(|(d, (attempt, decision))| crate::push::Answered {
            got: std::slice::from_ref(d),
            decision,
            attempt,
        })
        .collect();
    let s = e.push().reference("many", "a").unwrap();
    let settled = e.push().settle_many(&s, &batch).await.unwrap();
    let outcomes: Vec<Outcome> = settled.iter().map(|s| s.outcome).collect();
    assert_eq!(outcomes, plan.map(|p| p.0));
    assert_eq!(settled[4].dead_letter_queue.as_deref(), Some("many-dlq"));
    assert!(settled[..4].iter().all(|s| s.dead_letter_queue.is_none()));
    // Every attempt recorded, the dead letter carrying its history.
    for d in &got {
        let tried = e.push().history().get(d.message.id).await.unwrap();
        assert_eq!(tried.len(), 1, "one attempt recorded for each message");
    }
    let dead = e.peek("many-dlq", 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, b"m4");
    // Counted in the same durable step, across a restart; each released copy comes back
    // after its own delay.
    let c = c.restart(h).await;
    let child = child_queue("many", "a");
    let st = c.engine.push().child_stats(&child).await.unwrap();
    assert_eq!(
        (st.delivered, st.retried, st.throttled, st.failed),
        (2, 1, 1, 1)
    );
    assert_eq!((st.in_flight, st.delayed), (0, 2));
    c.advance(1);
    let again = c.lease("many", "a", 5).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].message.body, b"m3", "the throttled one, after 1 s");
    c.advance(4);
    let again = c.lease("many", "a", 5).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].message.body, b"m2", "the retried one, after 5 s");
    assert_eq!(c.next_attempt("many", "a", &again).await, 2);
}

/// A 429 does not count as an attempt: the attempt number after it stays the same, before and
/// after a restart.
pub async fn throttled_answers_are_not_attempts(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    c.subscribe("paced", "a").await;
    c.send("paced", "m").await;
    let got = c.lease("paced", "a", 1).await;
    assert_eq!(c.next_attempt("paced", "a", &got).await, 1);
    c.settle("paced", "a", &got, Outcome::Throttled, 1_000, "")
        .await;
    c.advance(1);
    let got = c.lease("paced", "a", 1).await;
    assert_eq!(got[0].message.receive_count, 2);
    assert_eq!(c.next_attempt("paced", "a", &got).await, 1);
    c.settle("paced", "a", &got, Outcome::Retry, 1_000, "HTTP 500")
        .await;
    c.advance(2);
    // After a restart too: the count comes from the durable delivery history.
    let c = c.restart(h).await;
    let got = c.lease("paced", "a", 1).await;
    assert_eq!(c.next_attempt("paced", "a", &got).await, 2);
}

pub async fn push_dead_letters_and_redrive_to_their_subscription(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    let e = &c.engine;
    // Published before the subscriptions exist: drained into them.
    c.send("jobs", "early").await;
    c.subscribe("jobs", "a").await;
    c.subscribe("jobs", "b").await;
    assert_eq!(e.push().drain("jobs").await.unwrap(), 1);
    let got = c.lease("jobs", "a", 10).await;
    assert_eq!(got.len(), 1);
    let settled = c
        .settle("jobs", "a", &got, Outcome::Failed, 0, "HTTP 404")
        .await;
    assert_eq!(settled.dead_letter_queue.as_deref(), Some("jobs-dlq"));
    let dead = e.peek("jobs-dlq", 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].attributes.get("sluice-message-id").unwrap(),
        &got[0].message.id.to_string(),
        "the dead letter has an id of its own and names the original"
    );
    assert_eq!(dead[0].attributes.get("sluice-subscription").unwrap(), "a");
    assert_eq!(dead[0].attributes.get("sluice-error").unwrap(), "HTTP 404");
    assert!(c.lease("jobs", "a", 10).await.is_empty());
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
    let back = c.lease("jobs", "a", 10).await;
    assert_eq!(back.len(), 1);
    assert_eq!(
        back[0].message.id, got[0].message.id,
        "redriven under its original id"
    );
    assert!(!back[0].message.attributes.contains_key("sluice-error"));
    assert_eq!(c.lease("jobs", "b", 10).await.len(), 1);
    assert!(e.peek("jobs-dlq", 10).await.unwrap().is_empty());
    // Purging a push queue drops the undelivered copies too.
    assert_eq!(e.purge("jobs").await.unwrap(), 2);
    let cb = child_queue("jobs", "b");
    assert_eq!(e.push().child_stats(&cb).await.unwrap().in_flight, 0);
    // Deleting the queue deletes its subscriptions.
    e.delete_queue("jobs").await.unwrap();
    assert!(!e.push().is_push("jobs"));
    assert!(e.push().all().is_empty());
}

pub async fn copies_sharing_an_id_survive_restart_independently(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    for s in ["a", "b", "c"] {
        c.subscribe("fan", s).await;
    }
    let id = c.send("fan", "m").await;
    let a = c.lease("fan", "a", 1).await;
    c.settle("fan", "a", &a, Outcome::Delivered, 0, "").await;
    let b = c.lease("fan", "b", 1).await;
    c.settle("fan", "b", &b, Outcome::Failed, 0, "HTTP 410")
        .await;
    let cg = c.lease("fan", "c", 1).await;
    c.settle("fan", "c", &cg, Outcome::Retry, 600_000, "HTTP 500")
        .await;
    let c = c.restart(h).await;
    let e = &c.engine;
    assert!(
        c.lease("fan", "a", 1).await.is_empty(),
        "a's copy was delivered"
    );
    let cc = child_queue("fan", "c");
    assert_eq!(
        e.push().child_stats(&cc).await.unwrap().delayed,
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
    assert_eq!(c.lease("fan", "b", 1).await.len(), 1);
    assert_eq!(e.push().child_stats(&cc).await.unwrap().delayed, 1);
}

/// Attempts are durable: after a restart a message's attempts are all there, the first and the
/// latest ones kept when there are more than the limit, and the subscription's recent
/// deliveries list it first.
pub async fn delivery_history_survives_restart_bounded_per_message(h: &mut dyn Harness) {
    use crate::history::limits::ATTEMPTS_PER_MESSAGE;
    let c = Ctx::new(h).await;
    c.subscribe("hist", "a").await;
    c.subscribe("hist", "b").await;
    c.send("hist", "first").await;
    let id = c.send("hist", "second").await;
    let n = ATTEMPTS_PER_MESSAGE + 5;
    for i in 0..n {
        let got = c.lease("hist", "a", 10).await;
        let mine: Vec<_> = got
            .iter()
            .filter(|d| d.message.id.to_string() == id)
            .cloned()
            .collect();
        let others: Vec<_> = got
            .iter()
            .filter(|d| d.message.id.to_string() != id)
            .cloned()
            .collect();
        if !others.is_empty() {
            c.settle("hist", "a", &others, Outcome::Delivered, 0, "")
                .await;
        }
        let outcome = if i + 1 == n {
            Outcome::Delivered
        } else {
            Outcome::Retry
        };
        c.settle("hist", "a", &mine, outcome, 1_000, "HTTP 500")
            .await;
        c.advance(2);
    }
    let c = c.restart(h).await;
    let history = c.engine.push().history();
    let all = history
        .get(crate::MessageId::parse(&id).unwrap())
        .await
        .unwrap();
    assert_eq!(all.len(), ATTEMPTS_PER_MESSAGE, "bounded per message");
    assert_eq!(all[0].attempt, 1, "the first attempt is kept");
    assert_eq!(all.last().unwrap().attempt as usize, n, "and the latest");
    assert_eq!(all.last().unwrap().outcome, Outcome::Delivered);
    let recent = history.recent("hist", "a", 10, false).await.unwrap();
    assert_eq!(recent.len(), 2);
    assert_eq!(recent[0].0.to_string(), id, "the latest attempted first");
    assert!(history
        .recent("hist", "a", 10, true)
        .await
        .unwrap()
        .is_empty());
    assert!(history
        .recent("hist", "b", 10, false)
        .await
        .unwrap()
        .is_empty());
}

/// Every settlement is counted in the copy queue's stats, and the queue counters survive a
/// restart exactly: from the last snapshot (written by housekeeping) plus the log after it.
/// Replacing a subscription keeps its counters; the explicit reset zeroes them.
pub async fn delivery_counters_survive_restart(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    c.subscribe("counted", "a").await;
    for i in 0..4 {
        c.send("counted", &format!("m{i}")).await;
    }
    let got = c.lease("counted", "a", 4).await;
    assert_eq!(got.len(), 4);
    c.settle("counted", "a", &got[0..1], Outcome::Delivered, 0, "")
        .await;
    c.settle(
        "counted",
        "a",
        &got[1..2],
        Outcome::Retry,
        60_000,
        "HTTP 500",
    )
    .await;
    c.settle("counted", "a", &got[2..3], Outcome::Throttled, 60_000, "")
        .await;
    c.settle("counted", "a", &got[3..4], Outcome::Failed, 0, "HTTP 404")
        .await;
    let child = child_queue("counted", "a");
    let before = c.engine.push().child_stats(&child).await.unwrap();
    assert_eq!(
        (
            before.delivered,
            before.retried,
            before.throttled,
            before.failed
        ),
        (1, 1, 1, 1)
    );
    for i in 0..3 {
        c.send("plain", &format!("p{i}")).await;
    }
    let plain = c.recv("plain", 3, 30).await;
    c.engine
        .ack(
            "plain",
            &plain
                .iter()
                .map(|d| receipt(&c.engine, "plain", d))
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    // A snapshot, then more counted after it, then a restart.
    c.engine.tick().await.unwrap();
    c.send("counted", "m4").await;
    let got = c.lease("counted", "a", 1).await;
    c.settle("counted", "a", &got, Outcome::Delivered, 0, "")
        .await;
    let c = c.restart(h).await;
    let after = c.engine.push().child_stats(&child).await.unwrap();
    assert_eq!(
        (
            after.delivered,
            after.retried,
            after.throttled,
            after.failed
        ),
        (2, 1, 1, 1),
        "delivery counters after a restart"
    );
    let plain = c.engine.stats("plain").await.unwrap();
    assert_eq!(
        (plain.published, plain.received, plain.acked),
        (3, 3, 3),
        "queue counters after a restart"
    );
    // Replacing the subscription's settings is not a reset.
    c.engine
        .push()
        .put("counted", "a", sub("http://a.example/other"))
        .await
        .unwrap();
    assert_eq!(
        c.engine.push().child_stats(&child).await.unwrap().delivered,
        2
    );
    c.engine.push().reset_stats("counted", "a").await.unwrap();
    let zero = c.engine.push().child_stats(&child).await.unwrap();
    assert_eq!((zero.delivered, zero.failed, zero.published), (0, 0, 0));
    let c = c.restart(h).await;
    let zero = c.engine.push().child_stats(&child).await.unwrap();
    assert_eq!(
        (zero.delivered, zero.failed),
        (0, 0),
        "the reset is durable"
    );
}

/// Replay sends a window of failed (from the dead-letter queue) and delivered (kept with
/// `retain_delivered_seconds`) messages back to their subscription under their original ids;
/// the ones outside the window stay where they are.
pub async fn replay_sends_a_window_again(h: &mut dyn Harness) {
    use crate::push::ReplayOutcome;
    let c = Ctx::new(h).await;
    let e = &c.engine;
    c.subscribe("rp", "a").await;
    e.put_queue(
        "rp",
        QueueConfigPatch {
            retain_delivered_seconds: Some(3600),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let ids: Vec<String> = vec![
        c.send("rp", "m0").await,
        c.send("rp", "m1").await,
        c.send("rp", "m2").await,
    ];
    let got = c.lease("rp", "a", 3).await;
    let by = |i: usize| -> Vec<crate::Delivery> {
        got.iter()
            .filter(|d| d.message.id.to_string() == ids[i])
            .cloned()
            .collect()
    };
    c.advance(1);
    c.settle("rp", "a", &by(0), Outcome::Delivered, 0, "").await;
    c.settle("rp", "a", &by(1), Outcome::Failed, 0, "HTTP 410")
        .await;
    c.advance(10);
    c.settle("rp", "a", &by(2), Outcome::Delivered, 0, "").await;
    let task = e
        .push()
        .replay("rp", "a", T0, Some(T0 + 5_000), ReplayOutcome::All)
        .await
        .unwrap();
    assert_eq!(task.total, 2, "one delivered and one failed in the window");
    for _ in 0..10_000 {
        if e.push().replay_task("rp", "a", &task.id).unwrap().state == "done" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let done = e.push().replay_task("rp", "a", &task.id).unwrap();
    assert_eq!((done.state.as_str(), done.replayed), ("done", 2));
    let again = c.lease("rp", "a", 10).await;
    let mut back: Vec<String> = again.iter().map(|d| d.message.id.to_string()).collect();
    back.sort();
    let mut want = vec![ids[0].clone(), ids[1].clone()];
    want.sort();
    assert_eq!(back, want, "sent again under their original ids");
    assert!(again
        .iter()
        .all(|d| !d.message.attributes.contains_key("sluice-error")));
    assert!(e.peek("rp-dlq", 10).await.unwrap().is_empty());
    let kept = crate::push::delivered_queue("rp", "a");
    let left = e.push().child_stats(&kept).await.unwrap();
    assert_eq!(left.ready, 1, "the delivery outside the window stays kept");
}

/// A tally key (attribute `sluice-tally`) counts its copies' deliveries and failures exactly,
/// across restarts, until it is forgotten.
pub async fn tallies_count_exactly_across_restarts(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    c.subscribe("tallied", "a").await;
    let publish = |n: usize, key: &'static str| {
        let e = c.engine.clone();
        async move {
            let mut attributes = crate::Attributes::new();
            attributes.insert("sluice-tally".into(), key.into());
            let batch = (0..n)
                .map(|i| Publish {
                    body: format!("row {i}").into_bytes(),
                    attributes: attributes.clone(),
                    ..Default::default()
                })
                .collect();
            e.publish("tallied", batch).await.unwrap();
        }
    };
    publish(4, "file-1").await;
    publish(1, "file-2").await;
    let got = c.lease("tallied", "a", 5).await;
    let of = |key: &str| -> Vec<crate::Delivery> {
        got.iter()
            .filter(|d| d.message.attributes["sluice-tally"] == key)
            .cloned()
            .collect()
    };
    let f1 = of("file-1");
    c.settle("tallied", "a", &f1[0..2], Outcome::Delivered, 0, "")
        .await;
    c.settle("tallied", "a", &f1[2..3], Outcome::Failed, 0, "HTTP 410")
        .await;
    c.settle(
        "tallied",
        "a",
        &f1[3..4],
        Outcome::Retry,
        60_000,
        "HTTP 500",
    )
    .await;
    c.engine.tick().await.unwrap();
    c.settle("tallied", "a", &of("file-2"), Outcome::Delivered, 0, "")
        .await;
    let push = c.engine.push();
    assert_eq!(push.tally("tallied", "a", "file-1").await.unwrap(), (2, 1));
    let c = c.restart(h).await;
    let push = c.engine.push();
    assert_eq!(
        push.tally("tallied", "a", "file-1").await.unwrap(),
        (2, 1),
        "a retry is not counted; the rest survives a restart"
    );
    assert_eq!(push.tally("tallied", "a", "file-2").await.unwrap(), (1, 0));
    push.forget_tally("tallied", "file-1").await.unwrap();
    let c = c.restart(h).await;
    let push = c.engine.push();
    assert_eq!(push.tally("tallied", "a", "file-1").await.unwrap(), (0, 0));
    assert_eq!(push.tally("tallied", "a", "file-2").await.unwrap(), (1, 0));
}
