//! Which heads the direct way takes (and which it leaves to hyper), and the answer's bytes.

use super::*;

fn limits() -> Limits {
    Limits {
        header_timeout: Duration::from_secs(30),
        max_header_bytes: 8192,
        max_body_bytes: 1000,
        body_timeout: Duration::from_secs(30),
    }
}

const PUBLISH: &str = "POST /v1/queues/jobs/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"body\":1}\n";

fn direct(text: &str) -> Head {
    match parse(text.as_bytes(), &limits()) {
        Parsed::Direct(head) => head,
        other => panic!("{text:?}: {other:?}"),
    }
}

#[test]
fn a_plain_publish_receive_or_ack_is_taken_with_its_head_and_body_length() {
    let head = direct(PUBLISH);
    assert_eq!(head.len, PUBLISH.len() - 11);
    assert_eq!(head.content_length, 11);
    assert_eq!(head.count, 3);
    let bytes = Bytes::from(&PUBLISH.as_bytes()[..head.len]);
    let (queue, req) = head.request(&bytes).unwrap();
    assert_eq!((head.hot, queue.as_str()), (Hot::Publish, "jobs"));
    assert_eq!(req.method(), Method::POST);
    assert_eq!(req.uri().path(), "/v1/queues/jobs/messages");
    assert_eq!(req.headers()["content-type"], "application/json");
    assert_eq!(req.headers()["host"], "127.0.0.1");
    for text in [
        "POST /v1/queues/q/receive HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        "POST /v1/queues/q/ack HTTP/1.1\r\ncontent-length: 2\r\nConnection: Keep-Alive\r\n\r\n",
        "POST /v1/queues/q/messages?delay_seconds=3 HTTP/1.1\r\nContent-Length: 1000\r\n\r\n",
        // Leading blank lines are skipped, as hyper skips them.
        "\r\nPOST /v1/queues/q/ack HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    ] {
        direct(text);
    }
    let with_query = direct("POST /v1/queues/q/messages?a=b HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    let bytes =
        Bytes::from_static(b"POST /v1/queues/q/messages?a=b HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    let (queue, req) = with_query.request(&bytes).unwrap();
    assert_eq!(req.uri().query(), Some("a=b"));
    assert_eq!((with_query.hot, queue.as_str()), (Hot::Publish, "q"));
}

#[test]
fn anything_else_is_left_to_hyper() {
    for text in [
        // Other routes and methods.
        "GET /healthz HTTP/1.1\r\n\r\n",
        "POST /v1/queues/q/nack HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        "PUT /v1/queues/q/messages HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        "POST /v1/queues/a%20b/messages HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        "POST http://localhost/v1/queues/q/messages HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        // A fragment, or what `http::Uri` may not take.
        "POST /v1/queues/q#x/messages HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        "POST /v1/queues/q/messages?a=<b> HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        "POST /v1/queues/q/messages?a=\"b\" HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        // HTTP/1.0, h2c's preface, a malformed head.
        "POST /v1/queues/q/messages HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "POST /v1/queues/q/messages HTTP/1.1\r\nBad Header: x\r\n\r\n",
        // Bodies framed otherwise, or too long, or with a length not plainly written.
        "POST /v1/queues/q/messages HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST /v1/queues/q/messages HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST /v1/queues/q/messages HTTP/1.1\r\n\r\n",
        "POST /v1/queues/q/messages HTTP/1.1\r\nContent-Length: 1001\r\n\r\n",
        "POST /v1/queues/q/messages HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
        "POST /v1/queues/q/messages HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
        "POST /v1/queues/q/messages HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
        // Expect, Upgrade, a Connection other than keep-alive.
        "POST /v1/queues/q/messages HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        "POST /v1/queues/q/messages HTTP/1.1\r\nContent-Length: 0\r\nUpgrade: websocket\r\n\r\n",
        "POST /v1/queues/q/messages HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    ] {
        assert!(
            matches!(parse(text.as_bytes(), &limits()), Parsed::Other),
            "{text:?}"
        );
    }
    // More headers than MAX_HEADERS.
    let mut many = String::from("POST /v1/queues/q/messages HTTP/1.1\r\nContent-Length: 0\r\n");
    for i in 0..MAX_HEADERS {
        many.push_str(&format!("X-{i}: {i}\r\n"));
    }
    many.push_str("\r\n");
    assert!(matches!(parse(many.as_bytes(), &limits()), Parsed::Other));
    // A head longer than the limit.
    let long = format!(
        "POST /v1/queues/q/messages HTTP/1.1\r\nContent-Length: 0\r\nX: {}\r\n\r\n",
        "a".repeat(8192)
    );
    assert!(matches!(parse(long.as_bytes(), &limits()), Parsed::Other));
}

#[test]
fn a_head_cut_anywhere_is_partial() {
    for cut in 0..PUBLISH.len() - 11 {
        assert!(
            matches!(
                parse(&PUBLISH.as_bytes()[..cut], &limits()),
                Parsed::Partial
            ),
            "cut at {cut}"
        );
    }
}

#[test]
fn the_answer_is_written_as_hyper_writes_it() {
    let (mut parts, ()) = axum::http::Response::new(()).into_parts();
    parts.status = axum::http::StatusCode::CREATED;
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let mut out = Vec::new();
    encode(&parts, b"{\"id\":\"x\"}", false, &mut out);
    let text = String::from_utf8(out).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert_eq!(body, "{\"id\":\"x\"}");
    let lines: Vec<&str> = head.split("\r\n").collect();
    assert_eq!(lines[0], "HTTP/1.1 201 Created");
    assert_eq!(lines[1], "content-type: application/json");
    assert_eq!(lines[2], "content-length: 10");
    let date = lines[3].strip_prefix("date: ").unwrap();
    assert!(httpdate::parse_http_date(date).is_ok(), "{date}");
    assert_eq!(lines.len(), 4);
    // A closing connection says so.
    let mut out = Vec::new();
    encode(&parts, b"", true, &mut out);
    let text = String::from_utf8(out).unwrap();
    assert!(text.ends_with("connection: close\r\n\r\n"), "{text}");
}

#[test]
fn a_head_is_parsed_only_once_its_end_may_have_come() {
    let head = b"POST /v1/queues/q/ack HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
    // Every cut before the blank line: no end yet, whatever was scanned before.
    for cut in 0..head.len() - 1 {
        assert!(!may_end_a_head(&head[..cut], 0), "cut at {cut}");
        assert!(!may_end_a_head(&head[..cut], cut), "cut at {cut}");
    }
    // The last byte arriving alone is enough, as is a bare-LF blank line.
    assert!(may_end_a_head(head, head.len() - 1));
    assert!(may_end_a_head(b"GET / HTTP/1.1\n\n", 15));
}

#[test]
fn content_lengths_are_plain_decimals() {
    assert_eq!(decimal(b"0"), Some(0));
    assert_eq!(decimal(b"123"), Some(123));
    for bad in [
        &b""[..],
        b"-1",
        b"+1",
        b" 1",
        b"1 ",
        b"0x10",
        b"1234567890123456789",
    ] {
        assert_eq!(decimal(bad), None, "{bad:?}");
    }
}

#[tokio::test]
async fn hyper_reads_the_prefix_then_the_stream() {
    use tokio::io::AsyncReadExt;
    let (mut client, server) = tokio::io::duplex(64);
    let mut s = Prefixed {
        prefix: Bytes::from_static(b"read "),
        io: server,
    };
    client.write_all(b"then this").await.unwrap();
    drop(client);
    let mut all = String::new();
    s.read_to_string(&mut all).await.unwrap();
    assert_eq!(all, "read then this");
}

#[test]
fn plain_target_bytes_are_the_unreserved_and_sub_delimiters() {
    let plain: String = (0..=255u8)
        .filter(|&b| plain_target_byte(b))
        .map(char::from)
        .collect();
    assert_eq!(
        plain,
        "!$%&'()*+,-./0123456789:;=?@ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~"
    );
}
