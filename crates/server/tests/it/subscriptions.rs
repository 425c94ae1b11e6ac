//! A subscription's newer settings end to end, through the real server: signing-secret
//! rotation, message filters and the pause of a queue's consumption, each surviving a
//! `kill -9` where its state is durable. The receiver is `receiver::Receiver`, in this process.

use serde_json::json;

use crate::receiver::{open_server, send, verify_signature, Receiver, SECRET};

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

#[tokio::test]
async fn filters_send_only_matching_messages_and_count_the_rest_across_a_kill_nine() {
    let (mut s, h) = open_server().await;
    let r = Receiver::start().await;
    let (st, v) = h
        .put(
            "/v1/queues/shop/subscriptions/big-eu",
            json!({"url": r.url("/big-eu"),
                   "filter": {"region": ["eu"], "total": [{"numeric": [">", 100]}]}}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["filter"]["region"], json!(["eu"]));
    let (st, v) = h
        .put(
            "/v1/queues/shop/subscriptions/created",
            json!({"url": r.url("/created"), "event_types": ["order.created"]}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let msgs = json!({"messages": [
        {"body": "m1", "attributes": {"region": "eu", "total": "120", "event-type": "order.created"}},
        {"body": "m2", "attributes": {"region": "eu", "total": "80"}},
        {"body": "m3", "attributes": {"region": "us", "total": "500", "event-type": "order.paid"}},
        {"body": "m4", "attributes": {"event-type": "order.created"}},
    ]});
    let (st, v) = h.post("/v1/queues/shop/messages", msgs).await;
    assert_eq!(st, 201, "{v}");
    // (path, body) of each delivery, sorted, each once: a delivery whose ack the kill below cuts
    // comes again after the restart (at least once), which is not a filter's business.
    let sent = |got: &[crate::receiver::Req]| {
        let mut pairs: Vec<(String, String)> = got
            .iter()
            .map(|q| {
                (
                    q.path.clone(),
                    String::from_utf8_lossy(&q.body).into_owned(),
                )
            })
            .collect();
        pairs.sort();
        pairs.dedup();
        pairs
    };
    let got = r
        .wait_for("m1 twice and m4", 20, |x| sent(x).len() >= 3)
        .await;
    let seen = sent(&got);
    assert_eq!(
        seen,
        vec![
            ("/big-eu".into(), "m1".into()),
            ("/created".into(), "m1".into()),
            ("/created".into(), "m4".into())
        ]
    );
    s.kill();
    s.spawn().await;
    for (name, filtered) in [("big-eu", 3), ("created", 2)] {
        let (_, v) = h
            .get(&format!("/v1/queues/shop/subscriptions/{name}"))
            .await;
        assert_eq!(v["stats"]["filtered"], filtered, "{name}: {v}");
        assert_eq!(v["stats"]["ready"], 0, "{name}: nothing else waits");
    }
    assert_eq!(sent(&r.got()), seen, "nothing else was sent");
}

#[tokio::test]
async fn bad_filters_are_refused_naming_the_key() {
    let (_s, h) = open_server().await;
    for (filter, starts) in [
        (json!({"region": "eu"}), "filter.region:"),
        (
            json!({"total": [{"numeric": [">", "x"]}]}),
            "filter.total[0].numeric[1]:",
        ),
        (json!({"k": [{"suffix": "x"}]}), "filter.k[0].suffix:"),
        (json!(["eu"]), "filter:"),
    ] {
        let (st, v) = h
            .put(
                "/v1/queues/bad/subscriptions/a",
                json!({"url": "http://example.com/h", "filter": filter}),
            )
            .await;
        assert_eq!(st, 400, "{v}");
        assert_eq!(v["error"]["code"], "invalid_argument", "{v}");
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.starts_with(starts), "{m}");
    }
    let (st, v) = h
        .put(
            "/v1/queues/bad/subscriptions/a",
            json!({"url": "http://example.com/h", "event_types": [""]}),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("event_types[0]:"));
}

#[tokio::test]
async fn a_paused_queue_hands_out_nothing_across_a_kill_nine_then_resumes() {
    let (mut s, h) = open_server().await;
    let r = Receiver::start().await;
    h.put(
        "/v1/queues/pz/subscriptions/a",
        json!({"url": r.url("/pz")}),
    )
    .await;
    send(&h, "pull", json!({"body": "p1"})).await;
    for q in ["pz", "pull"] {
        let (st, v) = h.post(&format!("/v1/queues/{q}/pause"), json!({})).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["paused"], true, "{v}");
        assert!(v["paused_at"].is_string(), "{v}");
    }
    send(&h, "pz", json!({"body": "while paused"})).await;
    send(&h, "pull", json!({"body": "p2"})).await;
    let (_, v) = h.get("/v1/queues/pz/subscriptions/a").await;
    assert_eq!(v["stats"]["queue_paused"], true, "{v}");
    assert_eq!(v["stats"]["ready"], 1, "accepted and waiting: {v}");
    s.kill();
    s.spawn().await;
    let (_, v) = h.get("/v1/queues/pull").await;
    assert_eq!(v["paused"], true, "{v}");
    // A long poll on the paused queue waits its whole time and gets nothing.
    let (st, v) = h
        .post(
            "/v1/queues/pull/receive",
            json!({"max_messages": 10, "wait_seconds": 1}),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(v["messages"], json!([]), "{v}");
    // The push lane has leased nothing: the copy is still ready, not in flight.
    let (_, v) = h.get("/v1/queues/pz/subscriptions/a").await;
    assert_eq!(
        (
            v["stats"]["ready"].as_u64(),
            v["stats"]["in_flight"].as_u64()
        ),
        (Some(1), Some(0)),
        "{v}"
    );
    assert!(r.got().is_empty(), "nothing sent while paused");
    for q in ["pz", "pull"] {
        let (st, v) = h.post(&format!("/v1/queues/{q}/resume"), json!({})).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["paused"], false);
    }
    let got = r
        .wait_for("the delivery after resume", 20, |x| !x.is_empty())
        .await;
    assert_eq!(&got[0].body[..], b"while paused");
    let (_, v) = h
        .post("/v1/queues/pull/receive", json!({"max_messages": 10}))
        .await;
    let bodies: Vec<&str> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, vec!["p1", "p2"]);
    let (st, v) = h.post("/v1/queues/nope/pause", json!({})).await;
    assert_eq!(st, 404, "{v}");
}
