//! API keys (`--auth-keys`): 401 without a valid key, 403 outside the key's role or queues,
//! health and the dashboard's files open, keys never logged, no keys only on loopback, and
//! routes that name a message or timer id answering by the queue the id belongs to.

use std::process::Command;

use serde_json::json;

use crate::common::{err_code, free_port, key_file_with, with_key, Http, Server, BIN};
use crate::receiver::{wait_until, Receiver};

const ADMIN: &str = "admin-key-4f9c2a7e1b";
const PUBLISHER: &str = "orders-publisher-8d1e";
const WORKER: &str = "worker-consumer-77aa1";

fn key_file() -> (tempfile::TempDir, String) {
    key_file_with(&format!(
        r#"
[[key]]
name = "ops"
key = "{ADMIN}"
role = "admin"

[[key]]
name = "shop"
key = "{PUBLISHER}"
role = "publish"
queues = ["orders*"]

[[key]]
name = "workers"
key = "{WORKER}"
role = "consume"
"#
    ))
}

#[tokio::test]
async fn keys_roles_and_queue_globs() {
    let (_keys, path) = key_file();
    let s =
        Server::start_with(&["--auth-keys", &path, "--access-log", "--log-level", "debug"]).await;
    let anon = Http::new(&s.base);
    let admin = with_key(&s.base, ADMIN);
    let shop = with_key(&s.base, PUBLISHER);
    let worker = with_key(&s.base, WORKER);

    // Open without a key: health, readiness, the dashboard's files, the OpenAPI document.
    for p in ["/healthz", "/readyz", "/", "/ui/app.js", "/openapi.json"] {
        let r = anon.c.get(format!("{}{p}", s.base)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{p}");
    }
    // Everything else needs a valid key: 401 with a WWW-Authenticate challenge.
    let r = anon
        .c
        .get(format!("{}/v1/queues", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"sluice\"");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(err_code(&v), "unauthorized");
    let (st, v) = with_key(&s.base, "not-a-valid-key-at-all")
        .get("/v1/queues")
        .await;
    assert_eq!((st, err_code(&v).as_str()), (401, "unauthorized"));
    let (st, _) = anon
        .post("/v1/queues/orders/messages", json!({"body": "x"}))
        .await;
    assert_eq!(st, 401);
    for p in ["/metrics", "/v1/server", "/v1/timers"] {
        assert_eq!(anon.get(p).await.0, 401, "{p}");
    }

    // Admin: settings. Publisher: only publishing, only to orders*.
    assert_eq!(admin.put("/v1/queues/orders", json!({})).await.0, 201);
    assert_eq!(admin.put("/v1/queues/payments", json!({})).await.0, 201);
    let (st, v) = shop.put("/v1/queues/orders-eu", json!({})).await;
    assert_eq!((st, err_code(&v).as_str()), (403, "forbidden"));
    assert!(
        v["error"]["message"].as_str().unwrap().contains("admin"),
        "{v}"
    );
    let (st, _) = shop
        .post("/v1/queues/orders/messages", json!({"body": "paid"}))
        .await;
    assert_eq!(st, 201);
    let (st, v) = shop
        .post("/v1/queues/payments/messages", json!({"body": "x"}))
        .await;
    assert_eq!((st, err_code(&v).as_str()), (403, "forbidden"));
    assert!(
        v["error"]["message"].as_str().unwrap().contains("payments"),
        "{v}"
    );
    // The same request by the router's way (a percent-encoded name) gets the same answer.
    let (st, routed) = shop
        .post("/v1/queues/p%61yments/messages", json!({"body": "x"}))
        .await;
    assert_eq!((st, &routed), (403, &v));
    assert_eq!(
        shop.post("/v1/queues/orders/receive", json!({})).await.0,
        403
    );
    assert_eq!(
        shop.get("/v1/queues/orders").await.0,
        200,
        "reading its queue"
    );
    let names = |v: serde_json::Value| -> Vec<String> {
        v["queues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names(shop.get("/v1/queues").await.1),
        vec!["orders"],
        "only its queues are listed"
    );
    assert_eq!(
        names(admin.get("/v1/queues").await.1),
        vec!["orders", "payments"]
    );
    assert_eq!(shop.get("/v1/queues/payments").await.0, 403);

    // Consumer: receive and ack anywhere, never publish or configure.
    let (st, got) = worker.post("/v1/queues/orders/receive", json!({})).await;
    assert_eq!(st, 200);
    assert_eq!(got["messages"][0]["body"], "paid");
    let receipt = got["messages"][0]["receipt"].as_str().unwrap();
    let (st, v) = worker
        .post("/v1/queues/orders/ack", json!({"receipt": receipt}))
        .await;
    assert_eq!((st, v["acked"].as_u64()), (200, Some(1)));
    assert_eq!(
        worker
            .post("/v1/queues/orders/messages", json!({"body": "x"}))
            .await
            .0,
        403
    );
    assert_eq!(
        worker.post("/v1/queues/orders/purge", json!({})).await.0,
        403
    );
    assert_eq!(worker.get("/v1/server").await.0, 200);

    // Compat APIs take the same keys: miniqueue's topics are queues.
    let (st, _) = anon
        .raw("POST", "/publish/orders", "text/plain", b"hi".to_vec())
        .await;
    assert_eq!(st, 401);
    let r = shop
        .c
        .post(format!("{}/publish/orders", s.base))
        .body("hi")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());

    // Nothing refused was stored, and no key ever reached the log.
    let (_, q) = admin.get("/v1/queues/payments").await;
    assert_eq!(q["stats"]["ready"], 0);
    let log = s.log();
    assert!(
        log.contains("/v1/queues/orders/messages"),
        "access log is on"
    );
    for k in [ADMIN, PUBLISHER, WORKER, "not-a-valid-key-at-all"] {
        assert!(!log.contains(k), "a key was logged");
    }
}

#[tokio::test]
async fn the_cli_sends_sluice_api_key() {
    let (_keys, path) = key_file();
    let s = Server::start_with(&["--auth-keys", &path]).await;
    // Publish keys do not create queues (create_queues is off): the admin makes it.
    let admin = with_key(&s.base, ADMIN);
    assert_eq!(admin.put("/v1/queues/orders", json!({})).await.0, 201);
    let run = |key: Option<&str>| {
        let mut c = Command::new(BIN);
        c.args(["send", "orders", "from-cli", "--server", &s.base]);
        match key {
            Some(k) => c.env("SLUICE_API_KEY", k),
            None => c.env_remove("SLUICE_API_KEY"),
        };
        c.output().unwrap()
    };
    let out = run(None);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{out:?}"
    );
    let out = run(Some(PUBLISHER));
    assert!(out.status.success(), "{out:?}");
}

/// `sluice bench` writes its own HTTP/1.1 requests: they carry the key too.
#[tokio::test]
async fn the_bench_sends_sluice_api_key() {
    let (_keys, path) = key_file();
    let s = Server::start_with(&["--auth-keys", &path]).await;
    let base = s.base.clone();
    let run = move |key: Option<&str>| {
        let mut c = Command::new(BIN);
        c.args([
            "bench",
            "publish",
            "--connections",
            "2",
            "--duration",
            "0.5",
            "--json",
        ])
        .args(["--server", &base]);
        match key {
            Some(k) => c.env("SLUICE_API_KEY", k),
            None => c.env_remove("SLUICE_API_KEY"),
        };
        c.output().unwrap()
    };
    let out = tokio::task::spawn_blocking({
        let run = run.clone();
        move || run(None)
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{out:?}"
    );
    let out = tokio::task::spawn_blocking(move || run(Some(ADMIN)))
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["errors"], 0, "{v}");
    assert!(v["messages"].as_u64().unwrap() > 0, "{v}");
}

#[tokio::test]
async fn without_keys_only_loopback_unless_insecure() {
    let port = free_port();
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            &format!("0.0.0.0:{port}"),
            "--data-dir",
        ])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("without API keys") && err.contains("--insecure-no-auth"),
        "{err}"
    );
    // With the flag it serves, and says so loudly.
    let s = Server::start_with(&["--insecure-no-auth"]).await;
    assert_eq!(Http::new(&s.base).get("/v1/queues").await.0, 200);
    // A bad key file stops the start with a message naming the problem.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("keys.toml");
    std::fs::write(&bad, "[[key]]\nkey = \"short\"\nrole = \"admin\"\n").unwrap();
    let out = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--data-dir",
        ])
        .arg(data.path())
        .arg("--auth-keys")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("at least 16"),
        "{out:?}"
    );
}

/// The attempts route names a queue and a message: the queue the message belongs to decides,
/// not the path. A key allowed on `pq*` cannot read a `cq` message's attempts through `pq1`
/// (404, not 403, so ids cannot be probed), nor a timer's.
#[tokio::test]
async fn the_attempts_route_checks_the_queue_a_message_belongs_to() {
    let (_keys, path) = key_file_with(
        r#"
[[key]]
name = "ops"
key = "admin-key-for-delivery-tests"
role = "admin"

[[key]]
name = "pq-reader"
key = "pq-consumer-key-1234"
role = "consume"
queues = ["pq*"]
"#,
    );
    let s = Server::start_with(&["--allow-private-targets", "--auth-keys", &path]).await;
    let admin = with_key(&s.base, "admin-key-for-delivery-tests");
    let reader = with_key(&s.base, "pq-consumer-key-1234");
    let r = Receiver::start().await;
    for q in ["pq1", "cq"] {
        let (st, v) = admin
            .put(
                &format!("/v1/queues/{q}/subscriptions/s"),
                json!({"url": r.url(&format!("/{q}"))}),
            )
            .await;
        assert_eq!(st, 201, "{v}");
    }
    let mut ids = Vec::new();
    for (q, body) in [("pq1", "mine"), ("cq", "theirs")] {
        let (st, v) = admin
            .post(&format!("/v1/queues/{q}/messages"), json!({ "body": body }))
            .await;
        assert_eq!(st, 201, "{v}");
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    let (mine, theirs) = (ids[0].clone(), ids[1].clone());
    let (st, t) = admin
        .post(
            "/v1/timers",
            json!({"url": r.url("/timer"), "delay_seconds": 0}),
        )
        .await;
    assert_eq!(st, 201, "{t}");
    let timer = t["id"].as_str().unwrap().to_string();
    r.wait_for("three calls", 30, |g| g.len() >= 3).await;
    wait_until("the attempts recorded", 30, || async {
        admin.get(&format!("/v1/timers/{timer}")).await.1["status"] == "succeeded"
            && admin
                .get(&format!("/v1/queues/cq/messages/{theirs}/attempts"))
                .await
                .0
                == 200
            && admin
                .get(&format!("/v1/queues/pq1/messages/{mine}/attempts"))
                .await
                .0
                == 200
    })
    .await;
    let (st, v) = reader
        .get(&format!("/v1/queues/pq1/messages/{mine}/attempts"))
        .await;
    assert_eq!(st, 200, "its own queue's message: {v}");
    assert_eq!(v["attempts"][0]["queue"], "pq1");
    for id in [&theirs, &timer] {
        let (st, v) = reader
            .get(&format!("/v1/queues/pq1/messages/{id}/attempts"))
            .await;
        assert_eq!(st, 404, "another queue's message or a timer: {v}");
        assert!(!v.to_string().contains("/cq") && !v.to_string().contains("/timer"));
    }
    // Through its own path the other queue is not allowed at all; timers need an admin key.
    assert_eq!(
        reader
            .get(&format!("/v1/queues/cq/messages/{theirs}/attempts"))
            .await
            .0,
        403
    );
    assert_eq!(reader.get(&format!("/v1/timers/{timer}")).await.0, 403);
}
