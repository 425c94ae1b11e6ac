//! The forwarder (`--post-endpoint`) end to end: records batched by size and interval, retried
//! three times two seconds apart then dead-lettered, and `--exit-on-forward-failure`. The
//! endpoint is the receiver in `receiver.rs`; times are checked only as lower bounds.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{Http, Server};
use crate::receiver::{wait_messages, Receiver};

#[tokio::test]
async fn forwarder_batches_records_by_size_and_interval() {
    let r = Receiver::start().await;
    let endpoint = r.url("/collect");
    let s = Server::start_with(&[
        "--post-endpoint",
        &endpoint,
        "--batch-size",
        "3",
        "--batch-interval",
        "500ms",
    ])
    .await;
    let h = Http::new(&s.base);
    let rec = |i: i64| {
        json!({"user_id": i, "total": 1.65, "title": "delectus aut autem",
               "meta": {"logins": [{"time": "2020-08-08T01:52:50Z", "ip": "0.0.0.0"}],
                        "phone_numbers": {"home": "555-1212", "mobile": "123-5555"}},
               "completed": false})
    };
    for i in 1..=7 {
        let (st, v) = h.post("/log", rec(i)).await;
        assert_eq!(st, 201, "{v}");
    }
    let got = r
        .wait_for("7 records forwarded", 20, |x| {
            x.iter()
                .map(|g| g.json().as_array().map_or(0, |a| a.len()))
                .sum::<usize>()
                >= 7
        })
        .await;
    let sizes: Vec<usize> = got
        .iter()
        .map(|g| g.json().as_array().unwrap().len())
        .collect();
    assert!(sizes.iter().all(|&n| n <= 3), "{sizes:?}");
    let mut users: Vec<i64> = got
        .iter()
        .flat_map(|g| g.json().as_array().unwrap().clone())
        .map(|v| v["user_id"].as_i64().unwrap())
        .collect();
    users.sort();
    assert_eq!(users, (1..=7).collect::<Vec<_>>());
    // Validation names the field.
    let mut bad = rec(1);
    bad["meta"]["logins"][0]["time"] = json!("yesterday");
    let (st, e) = h.post("/log", bad).await;
    assert_eq!(st, 400);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("meta.logins[0].time"),
        "{e}"
    );
    let mut bad = rec(1);
    bad["user_id"] = json!("one");
    let (st, e) = h.post("/log", bad).await;
    assert_eq!(st, 400);
    assert!(
        e["error"]["message"].as_str().unwrap().contains("user_id"),
        "{e}"
    );
}

#[tokio::test]
async fn forwarder_retries_three_times_two_seconds_apart_then_dead_letters() {
    let r = Receiver::with(|_, _| (500, None, 0)).await;
    let endpoint = r.url("/collect");
    let s = Server::start_with(&["--post-endpoint", &endpoint, "--batch-size", "1"]).await;
    let h = Http::new(&s.base);
    post_one_record(&h).await;
    let got = r.wait_for("4 attempts", 30, |x| x.len() >= 4).await;
    for w in got.windows(2) {
        assert!(w[1].at - w[0].at >= Duration::from_millis(1900));
    }
    wait_messages(
        &h,
        "/v1/queues/log-dlq/messages",
        1,
        "dead-lettered batch",
        20,
    )
    .await;
    assert_eq!(r.got().len(), 4);
}

#[tokio::test]
async fn exit_on_forward_failure_reproduces_the_seed() {
    let r = Receiver::with(|_, _| (500, None, 0)).await;
    let endpoint = r.url("/collect");
    let mut s = Server::start_with(&[
        "--post-endpoint",
        &endpoint,
        "--batch-size",
        "1",
        "--exit-on-forward-failure",
    ])
    .await;
    let h = Http::new(&s.base);
    post_one_record(&h).await;
    let child = s.child.as_mut().unwrap();
    let end = Instant::now() + Duration::from_secs(40);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < end, "the server did not exit");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status.code(), Some(1));
    assert_eq!(r.got().len(), 4, "1 attempt + 3 retries before exiting");
    s.child = None;
}

/// One valid record to the forwarder's `/log`, accepted.
async fn post_one_record(h: &Http) {
    let record = json!({"user_id": 1, "total": 1.0, "title": "t",
                        "meta": {"logins": [], "phone_numbers": {"home": "1", "mobile": "2"}},
                        "completed": true});
    let (st, v) = h.post("/log", record).await;
    assert_eq!(st, 201, "{v}");
}
