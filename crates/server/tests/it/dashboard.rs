//! The dashboard's serving and the API routes it relies on (the page itself is tested in
//! Chromium by tests/ui).

use serde_json::json;

use crate::common::{err_code, Http, Server};
use crate::receiver::{wait_until, Receiver};

#[tokio::test]
async fn the_page_is_embedded_and_served_at_root_and_ui() {
    let s = Server::start().await;
    let c = reqwest::Client::new();
    let root = c.get(format!("{}/", s.base)).send().await.unwrap();
    assert_eq!(root.status(), 200);
    let h = root.headers().clone();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert_eq!(h["x-frame-options"], "DENY");
    let etag = h["etag"].to_str().unwrap().to_string();
    let html = root.text().await.unwrap();
    assert!(html.contains("/ui/app.js"));
    assert!(!html.contains("http://") && !html.contains("https://"));
    // Revalidation is cheap.
    let again = c
        .get(format!("{}/ui/", s.base))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    for (path, ct) in [
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        (
            "/ui/vendor/uPlot.iife.min.js",
            "text/javascript; charset=utf-8",
        ),
        ("/ui/style.css", "text/css; charset=utf-8"),
        ("/ui/queues/orders", "text/html; charset=utf-8"),
    ] {
        let r = c.get(format!("{}{path}", s.base)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], ct, "{path}");
    }
    let http = Http::new(&s.base);
    let (st, v) = http.get("/ui/missing.js").await;
    assert_eq!((st, err_code(&v).as_str()), (404, "not_found"));
    // The SQS API still owns POST /.
    let (st, _) = http
        .raw(
            "POST",
            "/",
            "application/x-www-form-urlencoded",
            b"Action=ListQueues".to_vec(),
        )
        .await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn server_facts_and_rates() {
    let s = Server::start().await;
    let h = Http::new(&s.base);
    let (st, v) = h.get("/v1/server").await;
    assert_eq!(st, 200);
    assert_eq!(v["nodes"].as_array().unwrap().len(), 1);
    assert_eq!(v["nodes"][0]["this"], true);
    assert_eq!(v["storage_backend"], "embedded");
    h.post(
        "/v1/queues/r/messages",
        json!({"messages": [{"body": "a"}, {"body": "b"}]}),
    )
    .await;
    // Samples are taken every 2 s; wait (bounded) for an interval that saw the publish.
    wait_until("a published rate", 30, || async {
        let (_, v) = h.get("/v1/rates").await;
        v["queues"]["r"]["published"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x.as_f64().is_some_and(|r| r > 0.0)))
    })
    .await;
    let (_, v) = h.get("/v1/rates").await;
    assert_eq!(v["interval_seconds"], 2);
    let n = v["t"].as_array().unwrap().len();
    assert_eq!(v["total"]["acked"].as_array().unwrap().len(), n);
    assert_eq!(v["queues"]["r"]["received"].as_array().unwrap().len(), n);
    let (_, v) = h.get("/v1/rates?per_queue=false&points=1").await;
    assert!(v["queues"].as_object().unwrap().is_empty());
    assert_eq!(v["t"].as_array().unwrap().len(), 1);
    let (_, v) = h.get("/v1/rates?queue=nope").await;
    assert!(v["queues"].as_object().unwrap().is_empty());
    let (st, v) = h.get("/v1/rates?points=x").await;
    assert_eq!((st, err_code(&v).as_str()), (400, "invalid_query"));
    let (st, v) = h.get("/v1/rates?points=0").await;
    assert_eq!((st, err_code(&v).as_str()), (400, "invalid_argument"));
}

#[tokio::test]
async fn redrive_chosen_dead_letters_by_id() {
    let s = Server::start().await;
    let h = Http::new(&s.base);
    h.put(
        "/v1/queues/w",
        json!({"max_receives": 1, "dead_letter_queue": "w-dlq"}),
    )
    .await;
    for body in ["one", "two"] {
        h.post("/v1/queues/w/messages", json!({"body": body})).await;
        let (_, got) = h.post("/v1/queues/w/receive", json!({})).await;
        let receipt = got["messages"][0]["receipt"].as_str().unwrap().to_string();
        h.post("/v1/queues/w/nack", json!({"receipt": receipt}))
            .await;
    }
    let (_, dead) = h.get("/v1/queues/w-dlq/messages").await;
    let two = dead["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["body"] == "two")
        .unwrap()["id"]
        .clone();
    for (body, field) in [
        (json!({"ids": ["not-a-uuid"]}), "ids"),
        (json!({"ids": []}), "ids"),
        (json!({"ids": [two.clone()], "max_messages": 1}), "ids"),
    ] {
        let (st, v) = h.post("/v1/queues/w-dlq/redrive", body).await;
        assert_eq!((st, err_code(&v).as_str()), (400, "invalid_argument"));
        assert!(
            v["error"]["message"].as_str().unwrap().contains(field),
            "{v}"
        );
    }
    assert_eq!(h.get("/v1/queues/w-dlq").await.1["stats"]["ready"], 2);
    let (st, v) = h
        .post("/v1/queues/w-dlq/redrive", json!({"ids": [two]}))
        .await;
    assert_eq!((st, v["redriven"].as_u64()), (200, Some(1)));
    let (_, back) = h.get("/v1/queues/w/messages").await;
    assert_eq!(back["messages"][0]["body"], "two");
    assert_eq!(h.get("/v1/queues/w-dlq").await.1["stats"]["ready"], 1);
}

#[tokio::test]
async fn timers_are_listed_by_status() {
    let s = Server::start().await;
    let h = Http::new(&s.base);
    let mut ids = Vec::new();
    for delay in [300, 60, 600] {
        let (st, t) = h
            .post(
                "/v1/timers",
                json!({"url": "https://example.com/x", "delay_seconds": delay}),
            )
            .await;
        assert_eq!(st, 201);
        ids.push(t["id"].as_str().unwrap().to_string());
    }
    let (st, v) = h.get("/v1/timers").await;
    assert_eq!(st, 200);
    assert_eq!(v["pending"], 3);
    let order: Vec<&str> = v["timers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(order, vec![&ids[1], &ids[0], &ids[2]], "due soonest first");
    h.delete(&format!("/v1/timers/{}", ids[0])).await;
    let (_, v) = h.get("/v1/timers?limit=1").await;
    assert_eq!(v["pending"], 2);
    assert_eq!(v["timers"].as_array().unwrap().len(), 1);
    // The cancelled one is not among the soonest two.
    let (_, v) = h.get("/v1/timers?limit=2").await;
    let ids_listed: Vec<&str> = v["timers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids_listed, vec![&ids[1], &ids[2]]);
    let (_, v) = h.get("/v1/timers?status=cancelled").await;
    assert_eq!(v["timers"][0]["id"], ids[0].as_str());
    assert_eq!(v["timers"][0]["status"], "cancelled");
    for bad in ["/v1/timers?status=late", "/v1/timers?limit=0"] {
        let (st, v) = h.get(bad).await;
        assert_eq!(
            (st, err_code(&v).as_str()),
            (400, "invalid_argument"),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn a_subscription_lists_its_recent_deliveries_with_request_excerpts() {
    // Requests to /bad fail; the subscription's URL is switched between messages.
    let rx = Receiver::with(|_, path| {
        if path == "/bad" {
            (500, None, 0)
        } else {
            (200, None, 0)
        }
    })
    .await;
    let s = Server::start_with(&["--allow-private-targets"]).await;
    let h = Http::new(&s.base);
    for (i, (path, body)) in [("/bad", "bad one"), ("/ok", "{\"n\":1}")]
        .into_iter()
        .enumerate()
    {
        let (st, _) = h
            .put(
                "/v1/queues/p/subscriptions/s",
                json!({"url": rx.url(path), "max_attempts": 1,
                       "headers": {"authorization": "Bearer secret-token"}}),
            )
            .await;
        assert!(st == 200 || st == 201);
        h.post("/v1/queues/p/messages", json!({"body": body})).await;
        let want = i + 1;
        wait_until("the attempt", 30, || async {
            let (_, v) = h.get("/v1/queues/p/subscriptions/s/attempts").await;
            v["messages"].as_array().is_some_and(|m| m.len() == want)
        })
        .await;
    }
    let (_, v) = h
        .get("/v1/queues/p/subscriptions/s/attempts?failing=true")
        .await;
    let failed = v["messages"].as_array().unwrap();
    assert_eq!(failed.len(), 1);
    let a = &failed[0]["attempts"][0];
    assert_eq!(
        (a["status"].as_u64(), a["outcome"].as_str()),
        (Some(500), Some("failed"))
    );
    assert_eq!(a["queue"], "p");
    let req = a["request"].as_str().unwrap();
    assert!(
        req.starts_with(&format!("POST {}\n", rx.url("/bad"))),
        "{req}"
    );
    assert!(
        req.contains("webhook-id: ") && req.ends_with("bad one"),
        "{req}"
    );
    assert!(
        !req.contains("secret-token"),
        "configured headers stay out: {req}"
    );
    let (st, v) = h.get("/v1/queues/p/subscriptions/nope/attempts").await;
    assert_eq!(st, 404, "{v}");
    let (st, v) = h.get("/v1/queues/p/subscriptions/s/attempts?limit=0").await;
    assert_eq!((st, err_code(&v).as_str()), (400, "invalid_argument"));
}
