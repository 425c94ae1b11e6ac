//! Timers and cron schedules: firing once, cancelling, surviving restarts, missed firings.

use super::*;
use crate::push::{Decision, Outcome};
use crate::timers::{firing_id, Schedule, TimerSpec, TimerStatus};

/// Settle a due timer's call as delivered.
async fn delivered(e: &Engine, due: &crate::DueTimer) {
    let attempt = crate::push::Attempt {
        at: e.now(),
        queue: String::new(),
        subscription: "timer".into(),
        attempt: due.attempt,
        status: Some(200),
        error: None,
        duration_ms: 1,
        request: String::new(),
        response: String::new(),
        outcome: Outcome::Delivered,
        next_attempt_at: None,
        batch_size: 1,
        throttled: 0,
    };
    let decision = Decision {
        outcome: Outcome::Delivered,
        delay_ms: 0,
        reason: String::new(),
    };
    e.timers()
        .settle(&due.delivery, &decision, attempt)
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

pub async fn schedules_fire_once_and_count_missed(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    let e = &c.engine;
    let mut target = TimerSpec::http("http://example.com/cron");
    target.url = None;
    target.queue = Some("ticks".into());
    target.body = Some("tick".into());
    let s = Schedule {
        cron: "*/10 * * * * *".into(),
        timezone: "UTC".into(),
        target,
        created_at: 0,
        updated_at: 0,
        last_fired: None,
        fired: 0,
        missed: 0,
    };
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
