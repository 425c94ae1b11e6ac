//! Secrets of push subscriptions (header values, credentials in the URL) are shown only to keys
//! that may change the subscription, and never reach the attempts log or the server's log.

use std::time::Duration;

use serde_json::json;

use crate::common::{free_port, key_file_with, with_key, Server};

const ADMIN: &str = "admin-key-secrets-01";
const WORKER: &str = "consume-key-secrets-1";
const SECRETS: [&str; 4] = ["hunter2", "tok-9f8e7d", "Bearer sk-live-42", "xak-31337"];

fn leaked(text: &str) -> Vec<&'static str> {
    SECRETS.into_iter().filter(|s| text.contains(s)).collect()
}

#[tokio::test]
async fn subscription_secrets_are_masked_for_keys_that_cannot_change_them() {
    let (_k, keys) = key_file_with(&format!(
        "[[key]]\nkey = \"{ADMIN}\"\nrole = \"admin\"\n\n[[key]]\nkey = \"{WORKER}\"\nrole = \"consume\"\n"
    ));
    let s = Server::start_with(&[
        "--auth-keys",
        &keys,
        "--allow-private-targets",
        "--log-level",
        "debug",
    ])
    .await;
    let admin = with_key(&s.base, ADMIN);
    let worker = with_key(&s.base, WORKER);
    // Nothing listens there: every attempt fails, and its error is logged and recorded.
    let url = format!(
        "http://alice:hunter2@127.0.0.1:{}/hook?token=tok-9f8e7d",
        free_port()
    );
    let sub = json!({
        "url": url,
        "headers": {"Authorization": "Bearer sk-live-42", "X-Api-Key": "xak-31337"},
        "max_attempts": 2,
        "backoff": {"initial_seconds": 0.1, "jitter": false},
    });
    let (st, v) = admin.put("/v1/queues/orders/subscriptions/crm", sub).await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["headers"]["X-Api-Key"], "xak-31337", "the admin edits it");

    let (st, v) = worker.get("/v1/queues/orders/subscriptions/crm").await;
    assert_eq!(st, 200, "{v}");
    assert!(leaked(&v.to_string()).is_empty(), "{v}");
    assert_eq!(v["headers"]["Authorization"], "****");
    assert_eq!(
        v["url"],
        format!("http://****@127.0.0.1:{}/hook?token=****", url_port(&url))
    );
    let (_, v) = worker.get("/v1/queues/orders/subscriptions").await;
    assert!(leaked(&v.to_string()).is_empty(), "{v}");
    let (_, v) = admin.get("/v1/queues/orders/subscriptions/crm").await;
    assert_eq!(v["url"], url, "the admin sees it whole");

    // A delivery fails; what it leaves behind names no secret.
    assert_eq!(
        admin
            .post("/v1/queues/orders/messages", json!({"body": "x"}))
            .await
            .0,
        201
    );
    let mut attempts = json!(null);
    for _ in 0..200 {
        let (_, v) = worker
            .get("/v1/queues/orders/subscriptions/crm/attempts")
            .await;
        if v["messages"][0]["attempts"][1].is_object() {
            attempts = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(attempts.is_object(), "no attempts recorded");
    assert!(
        attempts.to_string().contains("127.0.0.1"),
        "the attempt names its target: {attempts}"
    );
    assert!(leaked(&attempts.to_string()).is_empty(), "{attempts}");
    let log = s.log();
    assert!(log.contains("delivery"), "the attempts were logged");
    assert!(leaked(&log).is_empty(), "{log}");
}

fn url_port(url: &str) -> u16 {
    reqwest::Url::parse(url).unwrap().port().unwrap()
}
