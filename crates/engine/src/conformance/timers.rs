//! Timers and cron schedules: firing once, cancelling, surviving restarts, missed firings and
//! the catch-up policies, pausing a schedule.

use super::*;
use crate::push::{Decision, Outcome};
use crate::timers::{firing_id, CatchUp, Schedule, Settlement, TimerSpec, TimerStatus};

/// A due timer's call, answered `status` and decided `outcome` (retries after `delay_ms`).
fn answered(
    e: &Engine,
    due: &crate::DueTimer,
    status: u16,
    outcome: Outcome,
    delay_ms: u64,
) -> Settlement {
    Settlement {
        delivery: due.delivery.clone(),
        decision: Decision {
            outcome,
            delay_ms,
            reason: String::new(),
        },
        attempt: crate::push::Attempt {
            at: e.now(),
            queue: String::new(),
            subscription: "timer".into(),
            attempt: due.attempt,
            status: Some(status),
            error: None,
            duration_ms: 1,
            request: String::new(),
            response: String::new(),
            outcome,
            next_attempt_at: None,
            batch_size: 1,
            throttled: 0,
        },
    }
}

/// Settle a due timer's call as delivered.
async fn delivered(e: &Engine, due: &crate::DueTimer) {
    let s = answered(e, due, 200, Outcome::Delivered, 0);
    e.timers()
        .settle(&s.delivery, &s.decision, s.attempt)
        .await
        .unwrap();
}

pub async fn timers_fire_once_and_survive_restart(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    let e = &c.engine;
    let mut spec = TimerSpec::http("http://example.com/hook");
    spec.due_at = T0 + 10_000;
    let id = e.timers().create(spec.clone(), None).await.unwrap();
    let cancel_me = e.timers().create(spec.clone(), None).await.unwrap();
    let status = |c: &Ctx, id| {
        let timers = c.engine.timers().clone();
        async move { timers.get(id).await.unwrap().unwrap().status }
    };
    assert_eq!(status(&c, id).await, TimerStatus::Scheduled);
    assert_eq!(
        e.timers().get(id).await.unwrap().unwrap().due_at,
        Some(T0 + 10_000)
    );
    assert!(e.due_timers(10, 30_000, 0).await.unwrap().is_empty());
    e.timers().cancel(cancel_me).await.unwrap();
    assert_eq!(status(&c, cancel_me).await, TimerStatus::Cancelled);
    // Restart before it is due: still pending, still cancelled.
    let c = c.restart(h).await;
    let e = &c.engine;
    assert_eq!(status(&c, id).await, TimerStatus::Scheduled);
    assert_eq!(status(&c, cancel_me).await, TimerStatus::Cancelled);
    c.advance(10);
    // The cancelled one is settled without a call; the other is handed out.
    let due = e.due_timers(10, 30_000, 0).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].delivery.message.id, id);
    assert_eq!(due[0].spec.url.as_deref(), Some("http://example.com/hook"));
    assert_eq!(due[0].attempt, 1);
    delivered(e, &due[0]).await;
    assert_eq!(status(&c, id).await, TimerStatus::Succeeded);
    assert!(matches!(
        e.timers().cancel(id).await,
        Err(EngineError::Conflict(_))
    ));
    assert!(matches!(
        e.timers().cancel(MessageId(42)).await,
        Err(EngineError::NotFound { .. })
    ));
    let c = c.restart(h).await;
    let e = &c.engine;
    assert_eq!(status(&c, id).await, TimerStatus::Succeeded);
    assert_eq!(status(&c, cancel_me).await, TimerStatus::Cancelled);
    assert!(e.due_timers(10, 30_000, 0).await.unwrap().is_empty());
    assert_eq!(e.timers().counts(), (0, 2));
}

/// Senders settle the calls of a burst together: each timer ends as its own answer says (a
/// cancel that came first stays), each attempt is recorded, a retry comes back after its delay,
/// and nothing finished fires again, also after a restart.
pub async fn timer_calls_settle_together_in_one_batch(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    let e = &c.engine;
    let mut spec = TimerSpec::http("http://example.com/hook");
    spec.due_at = T0 + 1_000;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(e.timers().create(spec.clone(), None).await.unwrap());
    }
    c.advance(1);
    let mut due = e.due_timers(10, 30_000, 0).await.unwrap();
    assert_eq!(due.len(), 5);
    due.sort_by_key(|d| ids.iter().position(|i| *i == d.delivery.message.id));
    // Cancelled after it was handed out, before its call was settled: it stays cancelled.
    e.timers().cancel(ids[4]).await.unwrap();
    let batch = vec![
        answered(e, &due[0], 200, Outcome::Delivered, 0),
        answered(e, &due[1], 204, Outcome::Delivered, 0),
        answered(e, &due[2], 410, Outcome::Failed, 0),
        answered(e, &due[3], 503, Outcome::Retry, 5_000),
        answered(e, &due[4], 200, Outcome::Delivered, 0),
    ];
    e.timers().settle_many(&batch).await.unwrap();
    let status = |c: &Ctx, id| {
        let timers = c.engine.timers().clone();
        async move { timers.get(id).await.unwrap().unwrap().status }
    };
    let want = [
        TimerStatus::Succeeded,
        TimerStatus::Succeeded,
        TimerStatus::Failed,
        TimerStatus::Retrying,
        TimerStatus::Cancelled,
    ];
    for (id, want) in ids.iter().zip(want) {
        assert_eq!(status(&c, *id).await, want, "timer {id}");
        let attempts = e.timers().attempts(*id).await.unwrap();
        assert_eq!(attempts.len(), 1, "one attempt recorded for {id}");
    }
    assert!(e.due_timers(10, 30_000, 0).await.unwrap().is_empty());
    let c = c.restart(h).await;
    let e = &c.engine;
    for (id, want) in ids.iter().zip(want) {
        assert_eq!(status(&c, *id).await, want, "timer {id} after a restart");
    }
    c.advance(5);
    let again = e.due_timers(10, 30_000, 0).await.unwrap();
    assert_eq!(again.len(), 1, "only the retry comes back");
    assert_eq!(again[0].delivery.message.id, ids[3]);
    assert_eq!(again[0].attempt, 2);
}

pub async fn schedules_fire_once_and_count_missed(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    let e = &c.engine;
    let mut target = TimerSpec::http("http://example.com/cron");
    target.url = None;
    target.queue = Some("ticks".into());
    target.body = Some("tick".into());
    let s = Schedule::new("*/10 * * * * *", target);
    let timers = e.timers();
    timers.put_schedule("every10", s).await.unwrap();
    assert_eq!(timers.fire_schedules().await.unwrap(), Some(T0 + 10_000));
    c.advance(10);
    assert_eq!(timers.fire_schedules().await.unwrap(), Some(T0 + 20_000));
    assert_eq!(
        timers.fire_schedules().await.unwrap(),
        Some(T0 + 20_000),
        "no double fire"
    );
    assert!(timers
        .get(firing_id("every10", T0 + 10_000))
        .await
        .unwrap()
        .is_some());
    let c = c.restart(h).await;
    let e = &c.engine;
    let timers = e.timers();
    // Down for 35 s: the latest missed firing fires once, two are counted as missed.
    c.advance(35);
    timers.fire_schedules().await.unwrap();
    let s = timers.schedule("every10").unwrap();
    assert_eq!((s.fired, s.missed), (2, 2));
    assert_eq!(s.last_fired, Some(T0 + 40_000));
    // Queue targets fire inside the engine: nothing for the HTTP senders, two publishes.
    assert!(e.due_timers(10, 30_000, 0).await.unwrap().is_empty());
    assert_eq!(c.bodies("ticks", 10, 30).await, vec!["tick", "tick"]);
    assert_eq!(timers.counts(), (0, 2));
    timers.delete_schedule("every10").await.unwrap();
    assert!(timers.schedule("every10").is_err());
}

/// Advance the manual clock to `at` (milliseconds since the epoch).
fn advance_to(c: &Ctx, at: i64) {
    c.clock
        .advance(Duration::from_millis((at - c.engine.now()).max(0) as u64));
}

pub async fn schedules_catch_up_as_their_policy_says_after_downtime_and_pause(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    let timers = c.engine.timers();
    let every_ten_minutes = |catch_up, window| {
        let mut s = Schedule::new("0 */10 * * * *", TimerSpec::http("http://example.com/cron"));
        s.catch_up = catch_up;
        s.catch_up_window_seconds = window;
        s
    };
    for (name, p, w) in [
        ("skip", CatchUp::Skip, None),
        ("latest", CatchUp::Latest, None),
        ("all", CatchUp::All, None),
        ("all-10m", CatchUp::All, Some(600)),
    ] {
        timers
            .put_schedule(name, every_ten_minutes(p, w))
            .await
            .unwrap();
    }
    let s = timers.schedule("skip").unwrap();
    let f1 = s.next_after(T0).unwrap();
    let f2 = s.next_after(f1).unwrap();
    let f3 = s.next_after(f2).unwrap();
    // Down until 5 minutes after the third firing: all three are late.
    let c = c.restart(h).await;
    advance_to(&c, f3 + 300_000);
    let timers = c.engine.timers();
    timers.fire_schedules().await.unwrap();
    let exists = |name: &str, at: i64| {
        let timers = timers.clone();
        let id = firing_id(name, at);
        async move { timers.get(id).await.unwrap().is_some() }
    };
    for (name, fired, missed, made) in [
        ("skip", 0, 3, vec![]),
        ("latest", 1, 2, vec![f3]),
        ("all", 3, 0, vec![f1, f2, f3]),
        ("all-10m", 1, 2, vec![f3]),
    ] {
        let s = timers.schedule(name).unwrap();
        assert_eq!((s.fired, s.missed), (fired, missed), "{name}");
        assert_eq!(s.last_fired, Some(f3), "{name}: handled up to the latest");
        let report = s.last_catch_up.expect("a catch-up is recorded");
        assert_eq!((report.fired, report.missed), (fired, missed), "{name}");
        let recent: Vec<i64> = s.recent_firings.iter().map(|f| f.at).collect();
        assert_eq!(recent, made, "{name}");
        assert!(s.recent_firings.iter().all(|f| f.late), "{name}");
        for at in [f1, f2, f3] {
            assert_eq!(exists(name, at).await, made.contains(&at), "{name} at {at}");
        }
    }
    // Paused: nothing fires, across a restart; resumed, the late firings follow the policy.
    timers.pause_schedule("latest").await.unwrap();
    let f4 = s.next_after(f3).unwrap();
    let f6 = s.next_after(s.next_after(f4).unwrap()).unwrap();
    advance_to(&c, f6 + 1000);
    timers.fire_schedules().await.unwrap();
    let c = c.restart(h).await;
    let timers = c.engine.timers();
    let paused = timers.schedule("latest").unwrap();
    assert!(paused.paused_at.is_some());
    assert_eq!(paused.next_fire_at(), None);
    assert_eq!(paused.fired, 1, "nothing fired while paused");
    assert_eq!(timers.schedule("skip").unwrap().fired, 1, "f6 was on time");
    advance_to(&c, f6 + 120_000);
    timers.resume_schedule("latest").await.unwrap();
    timers.fire_schedules().await.unwrap();
    let s = timers.schedule("latest").unwrap();
    assert_eq!(
        (s.fired, s.missed),
        (2, 4),
        "f6 fires once, f4 and f5 are missed"
    );
    assert!(timers.get(firing_id("latest", f6)).await.unwrap().is_some());
    assert!(timers.get(firing_id("latest", f4)).await.unwrap().is_none());
    // A replacement keeps the pause.
    timers.pause_schedule("latest").await.unwrap();
    timers
        .put_schedule("latest", every_ten_minutes(CatchUp::Skip, None))
        .await
        .unwrap();
    assert!(timers.schedule("latest").unwrap().paused_at.is_some());
    assert!(matches!(
        timers.pause_schedule("nope").await,
        Err(EngineError::NotFound { .. })
    ));
}
