//! Every route with malformed JSON, wrong types, out-of-range numbers, exceeded limits and
//! unknown queues: a clear 4xx in the documented shape, and nothing stored.

use serde_json::json;

use crate::common::{err_code, Http, Server};

const QUEUE_ROUTES_POST: &[&str] = &["receive", "ack", "nack", "visibility", "redrive", "purge"];

pub(crate) async fn ready_count(h: &Http, q: &str) -> u64 {
    h.get(&format!("/v1/queues/{q}")).await.1["stats"]["ready"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn malformed_json_everywhere() {
    let s = Server::start().await;
    let h = Http::new(&s.base);
    h.post("/v1/queues/q/messages", json!({"body": "keep"}))
        .await;
    let bad_bodies: &[&[u8]] = &[b"{", b"not json", b"[1,2", b"{\"a\":}", b"\xff\xfe"];
    for body in bad_bodies {
        for (method, path) in [
            ("PUT", "/v1/queues/q".to_string()),
            ("POST", "/v1/queues/q/messages".to_string()),
        ]
        .into_iter()
        .chain(
            QUEUE_ROUTES_POST
                .iter()
                .filter(|r| **r != "purge")
                .map(|r| ("POST", format!("/v1/queues/q/{r}"))),
        ) {
            let (st, v) = h
                .raw(method, &path, "application/json", body.to_vec())
                .await;
            assert_eq!(st, 400, "{method} {path} {body:?}: {v}");
            assert_eq!(err_code(&v), "invalid_json", "{method} {path}");
        }
    }
    assert_eq!(
        ready_count(&h, "q").await,
        1,
        "nothing stored, nothing lost"
    );
    assert_eq!(
        h.get("/v1/queues/q").await.1["config"]["visibility_timeout_seconds"],
        30
    );
}

#[tokio::test]
async fn wrong_types_name_the_field() {
    let s = Server::start().await;
    let h = Http::new(&s.base);
    let cases = [
        (
            "PUT",
            "/v1/queues/q",
            json!({"visibility_timeout_seconds": "thirty"}),
            "visibility_timeout_seconds",
        ),
        (
            "PUT",
            "/v1/queues/q",
            json!({"max_receives": -1}),
            "max_receives",
        ),
        (
            "PUT",
            "/v1/queues/q",
            json!({"dead_letter_queue": 5}),
            "dead_letter_queue",
        ),
        ("PUT", "/v1/queues/q", json!({"colour": "blue"}), "colour"),
        ("POST", "/v1/queues/q/messages", json!({"body": 5}), "body"),
        (
            "POST",
            "/v1/queues/q/messages",
            json!({"body": "x", "attributes": {"k": 1}}),
            "attributes.k",
        ),
        (
            "POST",
            "/v1/queues/q/messages",
            json!({"body": "x", "delay_seconds": 1.5}),
            "delay_seconds",
        ),
        (
            "POST",
            "/v1/queues/q/messages",
            json!({"messages": [{"body": "ok"}, {"body": []}]}),
            "messages[1].body",
        ),
        (
            "POST",
            "/v1/queues/q/messages",
            json!({"messages": "x"}),
            "messages",
        ),
        (
            "POST",
            "/v1/queues/q/receive",
            json!({"max_messages": "ten"}),
            "max_messages",
        ),
        (
            "POST",
            "/v1/queues/q/receive",
            json!({"wait_seconds": -1}),
            "wait_seconds",
        ),
        (
            "POST",
            "/v1/queues/q/ack",
            json!({"receipts": "abc"}),
            "receipts",
        ),
        (
            "POST",
            "/v1/queues/q/nack",
            json!({"receipts": ["a"], "delay_seconds": "1"}),
            "delay_seconds",
        ),
        (
            "POST",
            "/v1/queues/q/visibility",
            json!({"receipt": "a"}),
            "visibility_timeout_seconds",
        ),
        (
            "POST",
            "/v1/queues/q/redrive",
            json!({"max_messages": true}),
            "max_messages",
        ),
    ];
    for (method, path, body, field) in cases {
        let (st, v) = h
            .raw(
                method,
                path,
                "application/json",
                serde_json::to_vec(&body).unwrap(),
            )
            .await;
        assert_eq!(st, 400, "{method} {path} {body}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains(field),
            "{method} {path} {body}: message {msg:?} does not name {field}"
        );
    }
    let (st, _) = h.get("/v1/queues/q").await;
    assert_eq!(st, 404, "no queue was created by rejected requests");
}

#[tokio::test]
async fn limits_are_enforced() {
    let s = Server::start().await;
    let h = Http::new(&s.base);
    h.put("/v1/queues/q", json!({})).await;
    let cases = [
        (
            "PUT",
            "/v1/queues/q",
            json!({"visibility_timeout_seconds": 43201}),
            400,
            "43200",
        ),
        (
            "PUT",
            "/v1/queues/q",
            json!({"delay_seconds": 31536001}),
            400,
            "31536000",
        ),
        (
            "PUT",
            "/v1/queues/q",
            json!({"retention_seconds": 59}),
            400,
            "60",
        ),
        (
            "PUT",
            "/v1/queues/q",
            json!({"retention_seconds": 1209601}),
            400,
            "1209600",
        ),
        (
            "PUT",
            "/v1/queues/q",
            json!({"max_message_bytes": 0}),
            400,
            "max_message_bytes",
        ),
        (
            "PUT",
            "/v1/queues/q",
            json!({"max_message_bytes": 1048577}),
            400,
            "1048576",
        ),
        (
            "PUT",
            "/v1/queues/q",
            json!({"max_receives": 3}),
            400,
            "dead_letter_queue",
        ),
        (
            "PUT",
            "/v1/queues/q",
            json!({"max_receives": 1001, "dead_letter_queue": "d"}),
            400,
            "1000",
        ),
        (
            "PUT",
            "/v1/queues/q",
            json!({"max_receives": 1, "dead_letter_queue": "q"}),
            400,
            "own",
        ),
        (
            "PUT",
            "/v1/queues/q",
            json!({"max_receives": 1, "dead_letter_queue": "bad name"}),
            400,
            "dead_letter_queue",
        ),
        (
            "POST",
            "/v1/queues/q/messages",
            json!({"body": "x", "delay_seconds": 31536001}),
            400,
            "31536000",
        ),
        (
            "POST",
            "/v1/queues/q/messages",
            json!({"messages": []}),
            400,
            "at least 1",
        ),
        ("POST", "/v1/queues/q/messages", json!({}), 400, "body"),
        (
            "POST",
            "/v1/queues/q/messages",
            json!({"body": "x", "body_base64": "eA=="}),
            400,
            "not both",
        ),
        (
            "POST",
            "/v1/queues/q/messages",
            json!({"body_base64": "***"}),
            400,
            "base64",
        ),
        (
            "POST",
            "/v1/queues/q/receive",
            json!({"max_messages": 0}),
            400,
            "max_messages",
        ),
        (
            "POST",
            "/v1/queues/q/receive",
            json!({"max_messages": 101}),
            400,
            "100",
        ),
        (
            "POST",
            "/v1/queues/q/receive",
            json!({"wait_seconds": 21}),
            400,
            "20",
        ),
        (
            "POST",
            "/v1/queues/q/receive",
            json!({"visibility_timeout_seconds": 43201}),
            400,
            "43200",
        ),
        (
            "POST",
            "/v1/queues/q/ack",
            json!({"receipts": []}),
            400,
            "receipts",
        ),
        ("POST", "/v1/queues/q/ack", json!({}), 400, "receipts"),
        (
            "POST",
            "/v1/queues/q/ack",
            json!({"receipt": "%%%"}),
            400,
            "receipt",
        ),
        (
            "POST",
            "/v1/queues/q/nack",
            json!({"receipts": ["a"], "placement": "middle"}),
            400,
            "placement",
        ),
        (
            "POST",
            "/v1/queues/q/visibility",
            json!({"receipt": "a", "visibility_timeout_seconds": 43201}),
            400,
            "43200",
        ),
    ];
    for (method, path, body, status, needle) in cases {
        let (st, v) = h
            .raw(
                method,
                path,
                "application/json",
                serde_json::to_vec(&body).unwrap(),
            )
            .await;
        assert_eq!(st, status, "{method} {path} {body}: {v}");
        let msg = v["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("{v}"));
        assert!(
            msg.contains(needle),
            "{method} {path} {body}: {msg:?} lacks {needle:?}"
        );
    }
    // 1001 messages in one batch.
    let many: Vec<_> = (0..1001).map(|i| json!({"body": i.to_string()})).collect();
    let (st, v) = h
        .post("/v1/queues/q/messages", json!({"messages": many}))
        .await;
    assert_eq!(st, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("1000"));
    // Too large for the queue (256 KiB default): 413, nothing stored.
    let big = "x".repeat(256 * 1024 + 1);
    let (st, v) = h.post("/v1/queues/q/messages", json!({"body": big})).await;
    assert_eq!((st, err_code(&v).as_str()), (413, "message_too_large"));
    assert!(v["error"]["message"].as_str().unwrap().contains("262144"));
    let (st, _) = h
        .raw(
            "POST",
            "/v1/queues/q/messages",
            "text/plain",
            vec![b'y'; 256 * 1024 + 1],
        )
        .await;
    assert_eq!(st, 413);
    let (st, _) = h
        .raw(
            "POST",
            "/v1/queues/q/messages",
            "text/plain",
            vec![b'y'; 256 * 1024],
        )
        .await;
    assert_eq!(st, 201, "exactly at the limit is fine");
    assert_eq!(ready_count(&h, "q").await, 1);
    let (_, q) = h.get("/v1/queues/q").await;
    assert_eq!(
        q["config"]["visibility_timeout_seconds"], 30,
        "rejected PUTs changed nothing"
    );
}

#[tokio::test]
async fn request_body_limit() {
    let s = Server::start_with(&[
        "--max-message-bytes",
        "1024",
        "--max-request-bytes",
        "70000",
    ])
    .await;
    let h = Http::new(&s.base);
    let (st, v) = h
        .raw(
            "POST",
            "/v1/queues/q/messages",
            "text/plain",
            vec![b'z'; 100_000],
        )
        .await;
    assert_eq!((st, err_code(&v).as_str()), (413, "request_too_large"));
    assert!(v["error"]["message"].as_str().unwrap().contains("70000"));
    let (st, v) = h
        .raw(
            "POST",
            "/v1/queues/q/messages",
            "text/plain",
            vec![b'z'; 1025],
        )
        .await;
    assert_eq!((st, err_code(&v).as_str()), (413, "message_too_large"));
    let (st, v) = h
        .put("/v1/queues/q", json!({"max_message_bytes": 1025}))
        .await;
    assert_eq!(st, 400, "a queue cannot exceed the server-wide limit: {v}");
}

#[tokio::test]
async fn unknown_queues_and_bad_names() {
    let s = Server::start().await;
    let h = Http::new(&s.base);
    let (st, v) = h.get("/v1/queues/missing").await;
    assert_eq!((st, err_code(&v).as_str()), (404, "queue_not_found"));
    let (st, v) = h.delete("/v1/queues/missing").await;
    assert_eq!((st, err_code(&v).as_str()), (404, "queue_not_found"));
    let (st, v) = h.get("/v1/queues/missing/messages").await;
    assert_eq!((st, err_code(&v).as_str()), (404, "queue_not_found"));
    let bodies = [
        ("receive", json!({})),
        ("ack", json!({"receipts": ["AaIGiu1KcoKNoD9WmoTCngAAAAE"]})),
        ("nack", json!({"receipts": ["AaIGiu1KcoKNoD9WmoTCngAAAAE"]})),
        (
            "visibility",
            json!({"receipt": "AaIGiu1KcoKNoD9WmoTCngAAAAE", "visibility_timeout_seconds": 5}),
        ),
        ("redrive", json!({})),
        ("purge", json!({})),
    ];
    for (route, body) in bodies {
        let (st, v) = h.post(&format!("/v1/queues/missing/{route}"), body).await;
        assert_eq!(
            (st, err_code(&v).as_str()),
            (404, "queue_not_found"),
            "{route}"
        );
    }
    for bad in [
        "has%20space",
        "dots.in.name",
        &"x".repeat(81),
        "%C3%A9t%C3%A9",
    ] {
        let (st, v) = h.put(&format!("/v1/queues/{bad}"), json!({})).await;
        assert_eq!(
            (st, err_code(&v).as_str()),
            (400, "invalid_queue_name"),
            "{bad}"
        );
        let (st, v) = h
            .post(&format!("/v1/queues/{bad}/messages"), json!({"body": "x"}))
            .await;
        assert_eq!(
            (st, err_code(&v).as_str()),
            (400, "invalid_queue_name"),
            "{bad}"
        );
    }
    let (st, v) = h.get("/v1/nothing-here").await;
    assert_eq!((st, err_code(&v).as_str()), (404, "not_found"));
    let (st, v) = h
        .raw("PATCH", "/v1/queues/x", "application/json", b"{}".to_vec())
        .await;
    assert_eq!((st, err_code(&v).as_str()), (405, "method_not_allowed"));
    let (_, list) = h.get("/v1/queues").await;
    assert_eq!(list["queues"], json!([]), "nothing was created");
}

#[tokio::test]
async fn bad_query_strings_get_json_errors() {
    let s = Server::start().await;
    let h = Http::new(&s.base);
    h.put("/v1/queues/q", json!({})).await;
    for path in [
        "/v1/queues/q/messages?limit=abc",
        "/v1/queues/q/messages?limit=0",
        "/v1/queues/q/messages?limit=1001",
    ] {
        let (st, v) = h.get(path).await;
        assert_eq!(st, 400, "{path}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("limit"),
            "{path}: {v}"
        );
    }
    let (st, v) = h
        .raw(
            "POST",
            "/v1/queues/q/messages?delay_seconds=x",
            "text/plain",
            b"m".to_vec(),
        )
        .await;
    assert_eq!((st, err_code(&v).as_str()), (400, "invalid_query"));
    let (st, v) = h
        .raw(
            "POST",
            "/v1/queues/q/messages?delay_seconds=60",
            "text/plain",
            b"m".to_vec(),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(h.get("/v1/queues/q").await.1["stats"]["delayed"], 1);
    // A JSON syntax error does not pretend to name a field.
    let (_, v) = h
        .raw(
            "POST",
            "/v1/queues/q/receive",
            "application/json",
            b"{\"max_messages\": }".to_vec(),
        )
        .await;
    assert!(
        !v["error"]["message"].as_str().unwrap().contains("field `"),
        "{v}"
    );
    // Messages of a batch are named by index.
    let (st, v) = h
        .post(
            "/v1/queues/q/messages",
            json!({"messages": [{"body": "a", "delay_seconds": 31536001}, {"body": "b"}]}),
        )
        .await;
    assert_eq!(st, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("messages[0].delay_seconds"),
        "{v}"
    );
}

/// Slow-loris: a connection that never finishes its request headers is closed after
/// --header-timeout-seconds, while a normal request on another connection is served.
#[tokio::test]
async fn unfinished_headers_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = Server::start_with(&["--header-timeout-seconds", "1"]).await;
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", s.port))
        .await
        .unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let h = Http::new(&s.base);
    assert_eq!(
        h.get("/healthz").await.0,
        200,
        "others are served meanwhile"
    );
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        slow.read_to_end(&mut buf),
    )
    .await;
    assert!(closed.is_ok(), "the server closed the connection");
    assert!(
        !String::from_utf8_lossy(&buf).contains("200 OK"),
        "the half request was not served"
    );
}

/// Slow body: a request whose body does not arrive within --body-timeout-seconds is answered
/// 408 and nothing is stored.
#[tokio::test]
async fn unfinished_bodies_time_out() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = Server::start_with(&["--body-timeout-seconds", "1"]).await;
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", s.port))
        .await
        .unwrap();
    slow.write_all(
        b"POST /v1/queues/slow/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"body\":",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(15), slow.read(&mut buf))
        .await
        .expect("answered")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
    let h = Http::new(&s.base);
    assert_eq!(h.get("/v1/queues/slow").await.0, 404, "nothing stored");
    // The same for the SQS API and miniqueue's publish.
    for head in [
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: AmazonSQS.CreateQueue\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: 100\r\n\r\n{\"QueueName\":",
        "POST /publish/slowtopic HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\nhalf",
    ] {
        let mut c = tokio::net::TcpStream::connect(("127.0.0.1", s.port))
            .await
            .unwrap();
        c.write_all(head.as_bytes()).await.unwrap();
        let n = tokio::time::timeout(std::time::Duration::from_secs(15), c.read(&mut buf))
            .await
            .expect("answered")
            .unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with("HTTP/1.1 408"), "{head}: {text}");
    }
    assert_eq!(h.get("/v1/queues/slowtopic").await.0, 404, "nothing stored");
}
