//! Cron schedules' pause and catch-up policies through the real server, across a `kill -9`:
//! schedules firing every 2 seconds, down for 7, then caught up as their policies say.
//! Counts are checked, never times: the policies decide what fires, not when.

use serde_json::{json, Value};

use crate::common::{millis_of, Http};
use crate::receiver::{open_server, wait_until, Receiver};

async fn schedule(h: &Http, name: &str) -> Value {
    let (st, v) = h.get(&format!("/v1/schedules/{name}")).await;
    assert_eq!(st, 200, "{v}");
    v
}

#[tokio::test]
async fn catch_up_policies_after_a_kill_nine() {
    let (mut s, h) = open_server().await;
    let r = Receiver::start().await;
    for (name, policy) in [("skip", "skip"), ("latest", "latest"), ("all", "all")] {
        let (st, v) = h
            .put(
                &format!("/v1/schedules/{name}"),
                json!({"cron": "*/2 * * * * *", "url": r.url(&format!("/{name}")),
                       "catch_up": policy}),
            )
            .await;
        assert_eq!(st, 201, "{v}");
        assert_eq!(v["catch_up"], policy);
    }
    // Let each fire at least once, then kill the server and keep it down for a few firings.
    wait_until("a firing of each", 20, || async {
        let mut n = 0;
        for name in ["skip", "latest", "all"] {
            n += (schedule(&h, name).await["fired"].as_u64().unwrap() > 0) as usize;
        }
        n == 3
    })
    .await;
    s.kill();
    // Down for three or four firings (this sleep makes the gap; it proves nothing by itself).
    tokio::time::sleep(std::time::Duration::from_secs(7)).await;
    s.spawn().await;
    // Each schedule's first pass after the restart finds several firings due at once.
    for name in ["skip", "latest", "all"] {
        wait_until("the catch-up", 20, || async {
            schedule(&h, name).await["last_catch_up"].is_object()
        })
        .await;
    }
    for name in ["skip", "latest", "all"] {
        let v = schedule(&h, name).await;
        let c = &v["last_catch_up"];
        let (fired, missed) = (c["fired"].as_u64().unwrap(), c["missed"].as_u64().unwrap());
        assert!(
            fired + missed >= 3,
            "{name}: at least 3 due in the gap: {v}"
        );
        match name {
            // The latest due was at most 2 s late: on time, so it fires; the rest do not.
            "skip" | "latest" => assert_eq!(fired, 1, "{name}: {v}"),
            _ => assert_eq!(missed, 0, "{name}: every one fires: {v}"),
        }
        // The firings made are listed with their timers, which exist.
        let recent = v["recent_firings"].as_array().unwrap();
        let last = recent.last().unwrap();
        let (st, t) = h
            .get(&format!(
                "/v1/timers/{}",
                last["timer_id"].as_str().unwrap()
            ))
            .await;
        assert_eq!(st, 200, "{t}");
        assert!(millis_of(&last["at"]) <= millis_of(&v["last_fired_at"]));
    }
    let late = |v: &Value| {
        v["recent_firings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["late"] == true)
            .count()
    };
    let all = schedule(&h, "all").await;
    assert!(
        late(&all) >= 2,
        "the caught-up firings are marked late: {all}"
    );
}

#[tokio::test]
async fn a_paused_schedule_fires_nothing_across_a_kill_nine_and_catches_up_on_resume() {
    let (mut s, h) = open_server().await;
    let r = Receiver::start().await;
    let (st, v) = h
        .put(
            "/v1/schedules/tick",
            json!({"cron": "* * * * * *", "url": r.url("/tick"), "catch_up": "skip"}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let (st, v) = h.post("/v1/schedules/tick/pause", json!({})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["paused"], true);
    assert_eq!(v["next_fire_at"], Value::Null, "{v}");
    let fired = v["fired"].as_u64().unwrap();
    s.kill();
    s.spawn().await;
    let v = schedule(&h, "tick").await;
    assert_eq!(v["paused"], true, "durable: {v}");
    // A replacement keeps the pause.
    let (st, v) = h
        .put(
            "/v1/schedules/tick",
            json!({"cron": "* * * * * *", "url": r.url("/tick"), "catch_up": "latest"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["paused"], true, "{v}");
    // A witness firing every second shows the scheduler running while `tick` is paused.
    let (st, w) = h
        .put(
            "/v1/schedules/witness",
            json!({"cron": "* * * * * *", "url": r.url("/witness")}),
        )
        .await;
    assert_eq!(st, 201, "{w}");
    wait_until("three firings of the witness", 20, || async {
        schedule(&h, "witness").await["fired"].as_u64().unwrap() >= 3
    })
    .await;
    let v = schedule(&h, "tick").await;
    assert_eq!(v["fired"].as_u64().unwrap(), fired, "nothing fired: {v}");
    let (st, v) = h.post("/v1/schedules/tick/resume", json!({})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["paused"], false);
    wait_until("a firing after resume", 20, || async {
        schedule(&h, "tick").await["fired"].as_u64().unwrap() > fired
    })
    .await;
    let (st, v) = h.post("/v1/schedules/nope/pause", json!({})).await;
    assert_eq!(st, 404, "{v}");
    let (st, v) = h
        .put(
            "/v1/schedules/bad",
            json!({"cron": "* * * * *", "url": r.url("/x"), "catch_up": "sometimes"}),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    let (st, v) = h
        .put(
            "/v1/schedules/bad",
            json!({"cron": "* * * * *", "url": r.url("/x"), "catch_up_window_seconds": 0}),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("catch_up_window_seconds:"));
}
