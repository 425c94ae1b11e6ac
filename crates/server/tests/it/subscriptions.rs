//! A subscription's newer settings end to end, through the real server: signing-secret
//! rotation, message filters and the pause of a queue's consumption, each surviving a
//! `kill -9` where its state is durable. The receiver is `push::Receiver`, in this process.

use serde_json::json;

use crate::push::{open_server, send, verify_signature, Receiver, SECRET};

#[tokio::test]
async fn a_rotation_survives_a_kill_nine_and_signs_with_both_secrets() {
    let (mut s, h) = open_server().await;
    let r = Receiver::start().await;
    let (st, _) = h
        .put(
            "/v1/queues/rot/subscriptions/a",
            json!({"url": r.url("/rot"), "signing_secret": SECRET}),
        )
        .await;
    assert_eq!(st, 201);
    let (st, out) = h
        .post("/v1/queues/rot/subscriptions/a/rotate-secret", json!({}))
        .await;
    assert_eq!(st, 200, "{out}");
    let new = out["secret"].as_str().unwrap().to_string();
    let expires = out["subscription"]["rotation"]["expires_at"].clone();
    assert!(expires.is_string(), "{out}");
    s.kill();
    s.spawn().await;
    let (_, view) = h.get("/v1/queues/rot/subscriptions/a").await;
    assert_eq!(view["rotation"]["expires_at"], expires, "{view}");
    assert_eq!(view["rotation"]["previous_secret"], "whsec_MfKQ…");
    assert!(!view.to_string().contains(&new[6..]), "never shown again");
    send(&h, "rot", json!({"body": "after the restart"})).await;
    let got = r.wait_for("a delivery", 20, |x| !x.is_empty()).await;
    let sig = got[0].header("webhook-signature").unwrap();
    assert_eq!(sig.split(' ').count(), 2, "{sig}");
    assert!(verify_signature(&new, &got[0]), "the new secret verifies");
    assert!(verify_signature(SECRET, &got[0]), "the old one still does");
}
