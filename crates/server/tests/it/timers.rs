//! Timers and cron schedules end to end: httpqueue's timers firing once across a `kill -9`,
//! native timers called, cancelled and reported, and schedules firing each second once. The
//! callbacks land at the receiver in `receiver.rs`; times are checked only as lower bounds or
//! with generous tolerances.

use serde_json::json;
use sluice_engine::timers::firing_id;

use crate::common::{millis_of, now_ms};
use crate::receiver::{open_server, wait_until, Receiver};

#[tokio::test]
async fn httpqueue_timers_fire_once_across_a_kill_nine() {
    let (mut s, h) = open_server().await;
    let r = Receiver::start().await;
    let (st, v) = h
        .post("/timers", json!({"seconds": 2, "url": r.url("/cb")}))
        .await;
    assert_eq!(st, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let (st, t) = h.get(&format!("/timers/{id}")).await;
    assert_eq!(st, 200);
    assert_eq!(t["id"], id.as_str());
    assert_eq!(t["ID"], id.as_str());
    assert!(matches!(t["time_left"].as_i64(), Some(1..=2)), "{t}");
    // The native API reads the same timer, with its exact due time.
    let due = millis_of(&h.get(&format!("/v1/timers/{id}")).await.1["due_at"]);
    s.kill();
    // Down while it falls due: it fires right after the start.
    wait_until("the timer's due time, with the server down", 30, || async {
        now_ms() > due
    })
    .await;
    assert!(r.got().is_empty());
    s.spawn().await;
    let got = r.wait_for("the timer call", 20, |x| !x.is_empty()).await;
    assert_eq!(got[0].path, format!("/cb/{id}"));
    assert!(got[0].body.is_empty());
    // Once the timer is archived as succeeded and its message is gone from the internal timer
    // queue (the only thing this server stores), no call of it can start or be under way.
    wait_until("the timer settled", 20, || async {
        h.get(&format!("/v1/timers/{id}")).await.1["status"] == "succeeded"
            && h.metric("sluice_storage_messages").await == 0.0
    })
    .await;
    assert_eq!(r.got().len(), 1, "fired once");
    let (_, t) = h.get(&format!("/timers/{id}")).await;
    assert_eq!(t["time_left"], 0);
    // Errors in the seed's shapes.
    let (st, e) = h.get("/timers/nope").await;
    assert_eq!(st, 404);
    assert_eq!(e["Code"], 404);
    assert_eq!(e["error"]["code"], 404);
    assert_eq!(e["Details"], "Not found - timer does not exist");
    let (st, e) = h
        .post("/timers", json!({"seconds": "two", "url": r.url("/")}))
        .await;
    assert_eq!((st, e["Code"].as_i64()), (400, Some(400)));
    let (st, _) = h
        .post("/timers", json!({"seconds": 1, "url": "not a url"}))
        .await;
    assert_eq!(st, 422);
    let (st, _) = h
        .post("/timers", json!({"seconds": -5, "url": r.url("/")}))
        .await;
    assert_eq!(st, 422);
}

#[tokio::test]
async fn native_timers_call_cancel_and_report() {
    let (_s, h) = open_server().await;
    let r = Receiver::start().await;
    let (st, t) = h
        .post(
            "/v1/timers",
            json!({"url": r.url("/n"), "method": "PUT", "headers": {"X-K": "v"},
                   "body": {"hello": "world"}, "delay_seconds": 1}),
        )
        .await;
    assert_eq!(st, 201, "{t}");
    let id = t["id"].as_str().unwrap().to_string();
    assert_eq!(t["status"], "scheduled");
    let (_, c) = h
        .post(
            "/v1/timers",
            json!({"url": r.url("/never"), "delay_seconds": 1}),
        )
        .await;
    let cid = c["id"].as_str().unwrap();
    let (st, v) = h.delete(&format!("/v1/timers/{cid}")).await;
    assert_eq!((st, v["status"].as_str()), (200, Some("cancelled")));
    let got = r.wait_for("the timer call", 20, |x| !x.is_empty()).await;
    assert_eq!(got[0].path, "/n");
    assert_eq!(got[0].header("x-k"), Some("v"));
    assert_eq!(got[0].json(), json!({"hello": "world"}));
    wait_until("succeeded", 10, || async {
        h.get(&format!("/v1/timers/{id}")).await.1["status"] == "succeeded"
    })
    .await;
    let (_, v) = h.get(&format!("/v1/timers/{id}")).await;
    assert_eq!(v["attempts"][0]["status"], 200);
    assert_eq!(v["time_left"], 0);
    assert_eq!(h.delete(&format!("/v1/timers/{id}")).await.0, 409);
    // A cancelled timer's message stays in the internal timer queue until it comes due; the
    // worker then finds the cancel and removes it without calling. Nothing else is stored
    // here, so an empty store is the moment after which it can never fire.
    wait_until("the cancelled timer's message settled", 20, || async {
        h.metric("sluice_storage_messages").await == 0.0
    })
    .await;
    let (_, v) = h.get(&format!("/v1/timers/{cid}")).await;
    assert_eq!(v["status"], "cancelled", "{v}");
    assert!(v["due_at"].is_null(), "settled: {v}");
    assert!(
        r.got().iter().all(|x| x.path != "/never"),
        "cancelled timer never fires"
    );
    let (st, e) = h.post("/v1/timers", json!({"delay_seconds": 1})).await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (400, Some("invalid_argument"))
    );
    assert_eq!(
        h.get("/v1/timers/0191a0b0-0000-7000-8000-000000000000")
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn cron_schedules_fire_each_second_once() {
    let (_s, h) = open_server().await;
    let r = Receiver::start().await;
    let created_at = now_ms();
    let (st, v) = h
        .put(
            "/v1/schedules/tick",
            json!({"cron": "* * * * * *", "url": r.url("/tick")}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert!(v["next_fire_at"].is_string());
    let (st, _) = h
        .put(
            "/v1/schedules/toqueue",
            json!({"cron": "* * * * * *", "queue": "ticks", "body": "tick"}),
        )
        .await;
    assert_eq!(st, 201);
    let got = r.wait_for("3 firings", 20, |x| x.len() >= 3).await;
    let ids: Vec<&str> = got
        .iter()
        .map(|g| g.header("webhook-id").unwrap())
        .collect();
    // A firing's id is derived from (schedule, time): a double fire would repeat an id.
    // (No gap assertion: a late firing may land close to the next one on a busy machine.)
    let distinct: std::collections::HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), ids.len(), "each firing is called once");
    assert_eq!(got[0].header("sluice-schedule"), Some("tick"));
    wait_until("queue firings", 10, || async {
        h.get("/v1/queues/ticks").await.1["stats"]["ready"]
            .as_u64()
            .unwrap_or(0)
            >= 2
    })
    .await;
    let (_, v) = h.get("/v1/schedules/tick").await;
    assert!(v["fired"].as_u64().unwrap() >= 3);
    assert_eq!(h.delete("/v1/schedules/tick").await.0, 204);
    let deleted_at = now_ms();
    let n = r.got().len();
    // The scheduler makes one pass at a time over every schedule, reading the clock and then
    // the list of schedules. A pass that still listed "tick" read its clock before the delete,
    // so it fired a second at or before `deleted_at`. A firing of "toqueue" for a later second
    // comes from a pass that began after the delete, when the earlier passes were done: every
    // firing of "tick" there will ever be exists by then, as a timer ...
    let later_second = (deleted_at / 1000 + 1) * 1000;
    wait_until("a scheduler pass after the delete", 20, || async {
        let (_, v) = h.get("/v1/schedules/toqueue").await;
        !v["last_fired_at"].is_null() && millis_of(&v["last_fired_at"]) >= later_second
    })
    .await;
    // ... and once no timer is pending, each of those has made its call.
    wait_until("every firing made", 20, || async {
        h.get("/v1/timers").await.1["pending"] == 0
    })
    .await;
    let got = r.got();
    assert!(got.len() <= n + 1, "stops after delete");
    // Each call is the firing of a second before the delete (a firing's id is derived from
    // the schedule and the second).
    let before_delete: std::collections::HashSet<String> = (created_at / 1000..=deleted_at / 1000)
        .map(|s| firing_id("tick", s * 1000).to_string())
        .collect();
    for g in &got {
        let id = g.header("webhook-id").unwrap();
        assert!(
            before_delete.contains(id),
            "a firing of tick for a second after the delete: {id}"
        );
    }
    let (st, e) = h
        .put(
            "/v1/schedules/bad",
            json!({"cron": "99 * * * *", "url": r.url("/")}),
        )
        .await;
    assert_eq!(st, 400);
    assert!(e["error"]["message"].as_str().unwrap().starts_with("cron:"));
}
