//! A server without API keys (loopback only) against web pages: requests from other sites'
//! pages (`Origin`, `Sec-Fetch-Site`) and DNS rebinding (`Host` not a loopback name) are
//! refused; the dashboard, local pages, SQS clients and curl keep working.

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{Http, Server};

/// Send one HTTP/1.1 request with exactly these header lines; the status and the raw answer.
async fn send(
    port: u16,
    method: &str,
    path: &str,
    headers: &[String],
    body: &str,
) -> (u16, String) {
    let mut c = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    c.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(30), c.read_to_end(&mut out))
        .await
        .expect("answered")
        .unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test]
async fn cross_site_requests_and_rebinding_are_refused_without_keys() {
    let s = Server::start().await;
    let h = Http::new(&s.base);
    let own = format!("127.0.0.1:{}", s.port);
    let host = format!("Host: {own}");
    assert_eq!(
        h.post("/v1/queues/jobs/messages", json!({"body": "keep me"}))
            .await
            .0,
        201
    );
    let json = "Content-Type: application/json".to_string();
    let form = "Content-Type: application/x-www-form-urlencoded".to_string();
    let evil = "Origin: http://evil.example".to_string();
    // A page on another site: purge, an SQS form CreateQueue, a WebSocket consumer, an
    // image-style GET carrying an SQS action.
    let refused = [
        (
            "POST",
            "/v1/queues/jobs/purge",
            vec![host.clone(), evil.clone(), json.clone()],
            "{}",
        ),
        (
            "POST",
            "/",
            vec![host.clone(), evil.clone(), form.clone()],
            "Action=CreateQueue&QueueName=evil",
        ),
        (
            "GET",
            "/v1/queues/jobs/stream",
            vec![
                host.clone(),
                evil.clone(),
                "Upgrade: websocket".into(),
                "Connection: Upgrade".into(),
                "Sec-WebSocket-Version: 13".into(),
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==".into(),
            ],
            "",
        ),
        (
            "GET",
            "/?Action=DeleteQueue&QueueUrl=http://127.0.0.1/000000000000/jobs",
            vec![host.clone(), "Sec-Fetch-Site: cross-site".into()],
            "",
        ),
        // DNS rebinding: the attacker's name, same-origin with itself.
        (
            "POST",
            "/v1/queues/jobs/purge",
            vec![
                "Host: rebind.attacker.example:8080".into(),
                "Origin: http://rebind.attacker.example:8080".into(),
                json.clone(),
            ],
            "{}",
        ),
        (
            "GET",
            "/v1/queues",
            vec!["Host: rebind.attacker.example".into()],
            "",
        ),
    ];
    for (method, path, headers, body) in &refused {
        let (st, text) = send(s.port, method, path, headers, body).await;
        assert_eq!(st, 403, "{method} {path} {headers:?}: {text}");
        assert!(
            text.contains("cross_site_request") || text.contains("forbidden_host"),
            "{text}"
        );
    }
    let (_, v) = h.get("/v1/queues/jobs").await;
    assert_eq!(v["stats"]["ready"], 1, "nothing was purged: {v}");
    assert_eq!(h.get("/v1/queues/evil").await.0, 404, "nothing was created");

    // What keeps working: the dashboard's own calls (same origin), a local page (another
    // loopback port), a link to the dashboard from anywhere, and clients that are not
    // browsers (no Origin: SQS SDKs, curl).
    let allowed = [
        (
            "POST",
            "/v1/queues/jobs/messages",
            vec![
                host.clone(),
                format!("Origin: http://{own}"),
                "Sec-Fetch-Site: same-origin".into(),
                json.clone(),
            ],
            "{\"body\":\"x\"}",
        ),
        (
            "POST",
            "/v1/queues/jobs/messages",
            vec![
                "Host: localhost".into(),
                "Origin: http://localhost:5173".into(),
                json.clone(),
            ],
            "{\"body\":\"x\"}",
        ),
        (
            "GET",
            "/",
            vec![
                host.clone(),
                "Sec-Fetch-Site: cross-site".into(),
                "Sec-Fetch-Mode: navigate".into(),
            ],
            "",
        ),
        (
            "POST",
            "/",
            vec![host.clone(), form.clone()],
            "Action=GetQueueUrl&QueueName=jobs",
        ),
        ("GET", "/v1/queues", vec!["Host: [::1]".into()], ""),
    ];
    for (method, path, headers, body) in &allowed {
        let (st, text) = send(s.port, method, path, headers, body).await;
        assert!(
            st == 200 || st == 201,
            "{method} {path} {headers:?}: {text}"
        );
    }
}

/// With API keys the guard steps aside: a page has no key, and remote names are expected.
#[tokio::test]
async fn with_keys_other_names_are_served() {
    let (_k, keys) =
        crate::common::key_file_with("[[key]]\nkey = \"admin-key-0123456789\"\nrole = \"admin\"\n");
    let s = Server::start_with(&["--auth-keys", &keys]).await;
    let (st, text) = send(
        s.port,
        "GET",
        "/v1/queues",
        &[
            "Host: sluice.example.com".into(),
            "Authorization: Bearer admin-key-0123456789".into(),
        ],
        "",
    )
    .await;
    assert_eq!(st, 200, "{text}");
}
