//! Who may create queues by using them: admin keys, and keys with `create_queues = true`, and
//! only up to `--max-queues` less a reserve, so publishers cannot lock the admin out.

use serde_json::json;

use crate::common::{err_code, key_file_with, with_key, Server};

#[tokio::test]
async fn publishers_cannot_lock_the_admin_out() {
    let (_k, keys) = key_file_with(
        r#"
[[key]]
name = "ops"
key = "admin-key-creation-01"
role = "admin"

[[key]]
name = "shop"
key = "shop-key-creation-001"
role = "publish"
queues = ["pq*"]

[[key]]
name = "loader"
key = "loader-key-creation-1"
role = "publish"
queues = ["pq*"]
create_queues = true
"#,
    );
    let s = Server::start_with(&["--auth-keys", &keys, "--max-queues", "10"]).await;
    let admin = with_key(&s.base, "admin-key-creation-01");
    let shop = with_key(&s.base, "shop-key-creation-001");
    let loader = with_key(&s.base, "loader-key-creation-1");
    let msg = json!({"body": "x"});

    // A plain publish key publishes to existing queues only.
    let (st, v) = shop
        .post("/v1/queues/pq-missing/messages", msg.clone())
        .await;
    assert_eq!((st, err_code(&v).as_str()), (404, "queue_not_found"));
    assert_eq!(
        admin.get("/v1/queues/pq-missing").await.0,
        404,
        "not created"
    );
    assert_eq!(admin.put("/v1/queues/pq-a", json!({})).await.0, 201);
    assert_eq!(
        shop.post("/v1/queues/pq-a/messages", msg.clone()).await.0,
        201
    );

    // A key that may create queues fills them up to the reserve, not to the limit.
    let mut statuses = Vec::new();
    for i in 0..20 {
        let (st, v) = loader
            .post(&format!("/v1/queues/pq{i}/messages"), msg.clone())
            .await;
        if st != 201 {
            assert_eq!((st, err_code(&v).as_str()), (422, "too_many_queues"), "{v}");
        }
        statuses.push(st);
    }
    let created = statuses.iter().take_while(|&&s| s == 201).count();
    assert!(
        created > 0 && statuses[created..].iter().all(|&s| s == 422),
        "{statuses:?}"
    );
    // The admin still creates a queue.
    let (st, v) = admin.put("/v1/queues/made-by-admin", json!({})).await;
    assert_eq!(st, 201, "{v}");
}
