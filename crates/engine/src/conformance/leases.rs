//! Leases and receipts: receive, ack, nack (now, later, to the front or back), changing a lease, stale and expired receipts, long polls.

#![allow(unused_imports)]

use super::*;

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
        .ack(
            "q",
            &[
                receipt(&c.engine, "q", &got[0]),
                receipt(&c.engine, "q", &got[1]),
            ],
        )
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
        receipt(&c.engine, "q", &first),
        receipt(&c.engine, "q", &second),
        "each receive issues a fresh receipt"
    );
    let r = c
        .engine
        .ack("q", &[receipt(&c.engine, "q", &first)])
        .await
        .unwrap();
    assert_eq!(r[0], Err(EngineError::StaleReceipt));
    // The message is still there, leased to the second receiver.
    assert_eq!(c.engine.stats("q").await.unwrap().in_flight, 1);
    assert_eq!(
        c.engine
            .ack("q", &[receipt(&c.engine, "q", &second)])
            .await
            .unwrap()[0],
        Ok(())
    );
    assert_eq!(
        c.engine
            .ack("q", &[receipt(&c.engine, "q", &second)])
            .await
            .unwrap()[0],
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
        c.engine
            .ack("q", &[receipt(&c.engine, "q", &d)])
            .await
            .unwrap()[0],
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
        .nack("q", &[receipt(&c.engine, "q", &got[0])], 0, Placement::Back)
        .await
        .unwrap();
    assert_eq!(r[0], Ok(()));
    let r = c
        .engine
        .nack("q", &[receipt(&c.engine, "q", &got[1])], 5, Placement::Back)
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
        .nack("q", &[receipt(&c.engine, "q", &a)], 0, Placement::Front)
        .await
        .unwrap();
    let a = c.recv("q", 1, 30).await.remove(0);
    assert_eq!(a.message.body, b"a", "front placement comes out first");
    c.engine
        .nack("q", &[receipt(&c.engine, "q", &a)], 0, Placement::Back)
        .await
        .unwrap();
    let all = c.recv("q", 3, 30).await;
    let bodies: Vec<&[u8]> = all.iter().map(|d| d.message.body.as_slice()).collect();
    assert_eq!(bodies, vec![&b"b"[..], b"c", b"a"]);
    // A delayed nack to the front comes back ahead of the others when its delay ends.
    let rest = [
        receipt(&c.engine, "q", &all[1]),
        receipt(&c.engine, "q", &all[2]),
    ];
    c.engine.nack("q", &rest, 0, Placement::Back).await.unwrap();
    c.engine
        .nack(
            "q",
            &[receipt(&c.engine, "q", &all[0])],
            5,
            Placement::Front,
        )
        .await
        .unwrap();
    assert_eq!(c.bodies("q", 1, 30).await, vec!["c"]);
    c.advance(5);
    assert_eq!(
        c.bodies("q", 1, 30).await,
        vec!["b"],
        "b returned to the front"
    );
    // Several receipts released to the front in one call: each goes in front of the ones
    // before it, so a consumer hands back what it holds, newest first, to restore the order.
    for b in ["x", "y", "z"] {
        c.send("q", b).await;
    }
    let held = c.recv("q", 4, 30).await;
    let bodies: Vec<&[u8]> = held.iter().map(|d| d.message.body.as_slice()).collect();
    assert_eq!(bodies, vec![&b"a"[..], b"x", b"y", b"z"]);
    let newest_first: Vec<String> = held
        .iter()
        .rev()
        .map(|d| receipt(&c.engine, "q", d))
        .collect();
    c.engine
        .nack("q", &newest_first, 0, Placement::Front)
        .await
        .unwrap();
    assert_eq!(c.bodies("q", 4, 30).await, vec!["a", "x", "y", "z"]);
}

pub async fn change_visibility_extends_and_releases(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    c.send("q", "m").await;
    let d = c.recv("q", 1, 10).await.remove(0);
    c.advance(8);
    c.engine
        .change_visibility("q", &receipt(&c.engine, "q", &d), 60)
        .await
        .unwrap();
    c.advance(30);
    assert!(
        c.recv("q", 1, 10).await.is_empty(),
        "the heartbeat extended the lease"
    );
    assert_eq!(
        c.engine
            .ack("q", &[receipt(&c.engine, "q", &d)])
            .await
            .unwrap()[0],
        Ok(())
    );
    c.send("q", "n").await;
    let d = c.recv("q", 1, 60).await.remove(0);
    c.engine
        .change_visibility("q", &receipt(&c.engine, "q", &d), 0)
        .await
        .unwrap();
    assert_eq!(
        c.recv("q", 1, 60).await.len(),
        1,
        "timeout 0 releases at once"
    );
    assert_eq!(
        c.engine
            .change_visibility("q", &receipt(&c.engine, "q", &d), 30)
            .await,
        Err(EngineError::StaleReceipt)
    );
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
                receipt(&c.engine, "q", &got[0]),
                "garbage".into(),
                receipt(&c.engine, "q", &got[1]),
                receipt(&c.engine, "q", &got[0]),
            ],
        )
        .await
        .unwrap();
    assert_eq!(res[0], Ok(()));
    assert_eq!(res[1], Err(EngineError::InvalidReceipt));
    assert_eq!(res[2], Ok(()));
    assert_eq!(res[3], Err(EngineError::MessageGone));
    // A receipt of another queue is not valid here: it is sealed for its own queue.
    c.send("other", "x").await;
    let o = c.recv("other", 1, 30).await.remove(0);
    assert_eq!(
        c.engine
            .ack("q", &[receipt(&c.engine, "other", &o)])
            .await
            .unwrap()[0],
        Err(EngineError::InvalidReceipt)
    );
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

/// Receipts are sealed with the data set's key (`receipts.rs`): one rebuilt from what a peek
/// shows (the id) and a guessed nonce, or sealed with another key, settles nothing and the
/// lease stays with its consumer. The key outlives a restart, so a receipt issued before one
/// is still recognised (then gone or good, never malformed).
pub async fn forged_receipts_settle_nothing(h: &mut dyn Harness) {
    use base64::Engine as _;
    let c = Ctx::new(h).await;
    c.send("q", "m").await;
    let peeked = c.engine.peek("q", 1).await.unwrap().remove(0);
    let d = c.recv("q", 1, 30).await.remove(0);
    let mut forged: Vec<String> = (0..4u32)
        .map(|nonce| {
            let mut b = [0u8; 20];
            b[..16].copy_from_slice(&peeked.id.0.to_be_bytes());
            b[16..].copy_from_slice(&nonce.to_be_bytes());
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
        })
        .collect();
    forged.push(crate::ReceiptKey::new([7; 32]).seal("q", &d.receipt));
    for f in &forged {
        let acked = c.engine.ack("q", std::slice::from_ref(f)).await.unwrap();
        assert_eq!(acked[0], Err(EngineError::InvalidReceipt), "{f}");
        let nacked = c
            .engine
            .nack("q", std::slice::from_ref(f), 0, Placement::Back)
            .await
            .unwrap();
        assert_eq!(nacked[0], Err(EngineError::InvalidReceipt));
        assert_eq!(
            c.engine.change_visibility("q", f, 0).await,
            Err(EngineError::InvalidReceipt)
        );
    }
    assert_eq!(c.engine.stats("q").await.unwrap().in_flight, 1);
    let genuine = receipt(&c.engine, "q", &d);
    let c = c.restart(h).await;
    assert_eq!(
        receipt(&c.engine, "q", &d),
        genuine,
        "the key outlives a restart"
    );
    let after = c.engine.ack("q", &[genuine]).await.unwrap();
    assert_ne!(after[0], Err(EngineError::InvalidReceipt));
}
