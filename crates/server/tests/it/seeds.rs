//! The seed systems' own clients and tests, as their wire behaviour asks (the seeds' source is
//! the ground truth): miniqueue's `examples/echo` request, awe_queue's developer tool calls,
//! the forwarder's `TestLogHandler` cases and partial records, httpqueue's `/health`. (The Go
//! examples and the Vue tool themselves run in `tests/seeds/`.)

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{Http, Server};

/// The first JSON line of a streamed answer (bounded wait).
async fn first_line(mut r: reqwest::Response) -> Value {
    let mut buf = Vec::new();
    loop {
        let chunk = tokio::time::timeout(Duration::from_secs(20), r.chunk())
            .await
            .expect("the server answered in time")
            .unwrap()
            .expect("a line before the end of the answer");
        buf.extend_from_slice(&chunk);
        if let Some(i) = buf.iter().position(|&b| b == b'\n') {
            return serde_json::from_slice(&buf[..i]).unwrap();
        }
    }
}

/// `examples/echo`: publish, then one subscribe request whose whole body is `"INIT"\n"ACK"\n`,
/// closed before any answer. The message must come back (the seed writes it on INIT, before it
/// reads the end of the body), over HTTP/1.1 and over h2c.
#[tokio::test]
async fn miniqueue_echo_writes_the_message_before_the_body_ends() {
    let s = Server::start().await;
    for (proto, client) in [
        ("http/1.1", reqwest::Client::new()),
        (
            "h2c",
            reqwest::Client::builder()
                .http2_prior_knowledge()
                .build()
                .unwrap(),
        ),
    ] {
        let topic = format!("echo-{}", proto.replace(['/', '.'], ""));
        let r = client
            .post(format!("{}/publish/{topic}", s.base))
            .header("content-type", "application/json")
            .body(format!("hello over {proto}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let r = client
            .post(format!("{}/subscribe/{topic}", s.base))
            .header("content-type", "application/json")
            .body("\"INIT\"\n\"ACK\"\n")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{proto}");
        let v = first_line(r).await;
        let msg = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            v["msg"].as_str().unwrap(),
        )
        .unwrap();
        assert_eq!(msg, format!("hello over {proto}").as_bytes(), "{proto}");
        // The ACK that followed settled it: the topic is empty once the session is over.
        let h = Http::new(&s.base);
        let mut left = u64::MAX;
        for _ in 0..100 {
            let (_, q) = h.get(&format!("/v1/queues/{topic}")).await;
            left = q["stats"]["ready"].as_u64().unwrap_or(0)
                + q["stats"]["in_flight"].as_u64().unwrap_or(0);
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(left, 0, "{proto}: the acked message is gone");
    }
}

fn assert_cors(r: &reqwest::Response) {
    assert_eq!(
        r.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap()),
        Some("*"),
        "{} {:?}",
        r.status(),
        r.headers()
    );
}

#[tokio::test]
async fn awe_routes_take_a_trailing_slash_and_every_answer_has_cors() {
    let s = Server::start().await;
    let c = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", s.base);
    // The developer tool's calls: JSON send, receive with a trailing slash.
    let r = c
        .post(url("/send-message"))
        .header("content-type", "application/json;charset=utf-8")
        .body(r#"{"message":"from the tool"}"#)
        .send()
        .await
        .unwrap();
    assert_cors(&r);
    let key = r.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    let r = c
        .get(url("/receive-message/?count=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_cors(&r);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["messages"][0]["key"], key, "{v}");
    assert_eq!(v["messages"][0]["message"], "from the tool");
    // Form bodies (the seed's urlencoded parser) and any truthy message.
    for (ct, body, want) in [
        (
            "application/x-www-form-urlencoded",
            "message=from+a+form",
            json!("from a form"),
        ),
        (
            "application/x-www-form-urlencoded",
            "message[city]=Z%C3%BCrich&message[n]=7",
            json!({"city": "Zürich", "n": "7"}),
        ),
        ("application/json", r#"{"message": 42}"#, json!(42)),
        (
            "application/json",
            r#"{"message": {"a": [1, true]}}"#,
            json!({"a": [1, true]}),
        ),
    ] {
        let r = c
            .post(url("/send-message/"))
            .header("content-type", ct)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{body}");
        assert_cors(&r);
        let r = c.get(url("/receive-message")).send().await.unwrap();
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["messages"][0]["message"], want, "{body}: {v}");
        // Stored as its JSON text, which the native API shows.
        let k = v["messages"][0]["key"].as_str().unwrap();
        let r = c
            .delete(url(&format!("/delete-message/{k}/")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_cors(&r);
    }
    for falsy in [
        r#"{"message": 0}"#,
        r#"{"message": false}"#,
        r#"{"message": null}"#,
    ] {
        let r = c
            .post(url("/send-message"))
            .header("content-type", "application/json")
            .body(falsy)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{falsy}");
        assert_cors(&r);
    }
    // Errors carry CORS headers: an unknown key, a wrong method, a bad count.
    let r = c
        .delete(url("/delete-message/not-a-key"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_cors(&r);
    // A method the route lacks: 404 as in Express.
    let r = c.put(url("/get-stats/")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_cors(&r);
    let r = c
        .get(url("/receive-message/?count=abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_cors(&r);
    let r = c
        .request(reqwest::Method::OPTIONS, url("/receive-message/"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_cors(&r);
}

#[tokio::test]
async fn awe_under_a_prefix_answers_unknown_paths_with_cors() {
    let s = Server::start_with(&["--awe-prefix", "/awe"]).await;
    let c = reqwest::Client::new();
    let r = c
        .get(format!("{}/awe/get-stats/", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_cors(&r);
    let r = c
        .get(format!("{}/awe/no-such-route", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_cors(&r);
}

/// The forwarder seed's `TestLogHandler` (201) and `TestLogHandlerSetErr` (400 for a record
/// without a user id), and partial records, which its Go decoder fills with zero values.
#[tokio::test]
async fn forwarder_log_answers_like_the_seeds_handler() {
    let s = Server::start().await;
    let h = Http::new(&s.base);
    let full = json!({"user_id": 1, "total": 1.65, "title": "delectus aut autem",
        "meta": {"logins": [{"time": "2020-08-08T01:52:50Z", "ip": "0.0.0.0"}],
                 "phone_numbers": {"home": "555-1212", "mobile": "123-5555"}},
        "completed": false});
    let (st, v) = h.post("/log", full).await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["status"], "queued");
    let (st, v) = h.post("/log", json!({"total": 10.00})).await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["message"], "can not post empty user id");
    let (st, v) = h.post("/log", json!({"user_id": 0, "title": "x"})).await;
    assert_eq!(
        (st, v["error"]["message"].as_str()),
        (400, Some("can not post empty user id"))
    );
    for partial in [
        json!({"user_id": 7}),
        json!({"user_id": 8, "title": null, "meta": {"logins": [{"ip": "not checked"}]}}),
        json!({"user_id": 9, "meta": null, "unknown": [1, 2]}),
    ] {
        let (st, v) = h.post("/log", partial.clone()).await;
        assert_eq!(st, 201, "{partial}: {v}");
    }
    // A field of the wrong type is still refused, naming it.
    let (st, v) = h.post("/log", json!({"user_id": "one"})).await;
    assert_eq!(st, 400);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("user_id"),
        "{v}"
    );
    let (_, q) = h.get("/v1/queues/log").await;
    assert_eq!(q["stats"]["ready"], 4, "{q}");
}

#[tokio::test]
async fn httpqueue_health_answers_like_the_seeds_router() {
    let s = Server::start().await;
    let r = reqwest::get(format!("{}/health", s.base)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(r.text().await.unwrap(), "ok");
}
