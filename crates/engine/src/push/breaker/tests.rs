//! The breaker's rule, moved through time by hand: when it opens, how probes space out, what
//! closes it, what counts.

use super::*;
use crate::push::policy::Answer;

const T: Millis = 1_000_000;

fn cfg(failures: u32) -> BreakerConfig {
    BreakerConfig {
        failures,
        probe_initial_seconds: 5.0,
        probe_max_seconds: 300.0,
    }
}

fn answer(status: Option<u16>) -> Answer {
    Answer {
        status,
        ..Default::default()
    }
}

#[test]
fn verdicts() {
    assert_eq!(Verdict::of(&answer(Some(204))), Verdict::Success);
    assert_eq!(Verdict::of(&answer(None)), Verdict::Failure);
    assert_eq!(Verdict::of(&answer(Some(503))), Verdict::Failure);
    assert_eq!(Verdict::of(&answer(Some(408))), Verdict::Failure);
    assert_eq!(Verdict::of(&answer(Some(429))), Verdict::Neutral);
    assert_eq!(Verdict::of(&answer(Some(404))), Verdict::Neutral);
    let refused = Answer {
        refused: true,
        ..Default::default()
    };
    assert_eq!(Verdict::of(&refused), Verdict::Neutral);
}

#[test]
fn opens_after_n_consecutive_failures_only() {
    let c = cfg(3);
    let mut k = Circuit::default();
    assert_eq!(k.on_answer(&c, Verdict::Failure, false, T), None);
    assert_eq!(k.on_answer(&c, Verdict::Failure, false, T + 1), None);
    // A success in between starts the count again; 429s and 4xx do not count.
    assert_eq!(k.on_answer(&c, Verdict::Success, false, T + 2), None);
    assert_eq!(k.failing_since, None);
    for i in 0..2 {
        assert_eq!(k.on_answer(&c, Verdict::Failure, false, T + 10 + i), None);
        assert_eq!(k.on_answer(&c, Verdict::Neutral, false, T + 10 + i), None);
    }
    assert_eq!(k.gate(T + 20), Gate::Send);
    assert_eq!(
        k.on_answer(&c, Verdict::Failure, false, T + 30),
        Some(Change::Opened)
    );
    assert_eq!(k.state, CircuitState::Open);
    assert_eq!(k.opened_at, Some(T + 30));
    assert_eq!(k.next_probe_at, Some(T + 30 + 5_000));
    assert_eq!(k.failing_since, Some(T + 10));
    // Requests that were out when it opened change nothing.
    assert_eq!(k.on_answer(&c, Verdict::Failure, false, T + 31), None);
    assert_eq!(k.next_probe_at, Some(T + 30 + 5_000));
}

#[test]
fn probes_double_up_to_the_max_and_one_success_closes() {
    let c = cfg(1);
    let mut k = Circuit::default();
    k.on_answer(&c, Verdict::Failure, false, T);
    let mut now = T;
    let mut waits = Vec::new();
    for _ in 0..9 {
        let at = k.next_probe_at.unwrap();
        assert_eq!(k.gate(at - 1), Gate::WaitUntil(at));
        now = at;
        assert_eq!(k.gate(now), Gate::Probe);
        assert_eq!(k.state, CircuitState::HalfOpen);
        assert_eq!(k.gate(now), Gate::WaitForAnswer, "one probe at a time");
        waits.push(at);
        assert_eq!(
            k.on_answer(&c, Verdict::Failure, true, now),
            Some(Change::ProbeFailed)
        );
    }
    let gaps: Vec<Millis> = waits.windows(2).map(|w| (w[1] - w[0]) / 1000).collect();
    assert_eq!(gaps, vec![10, 20, 40, 80, 160, 300, 300, 300]);
    assert_eq!(k.opened_at, Some(T), "opened once");
    // A 429 answering the probe: probe again after the same wait.
    let at = k.next_probe_at.unwrap();
    assert_eq!(k.gate(at), Gate::Probe);
    assert_eq!(k.on_answer(&c, Verdict::Neutral, true, at), None);
    assert_eq!(k.next_probe_at, Some(at + 300_000));
    // An empty backlog: the probe is not used and is due again at once.
    let at = k.next_probe_at.unwrap();
    assert_eq!(k.gate(at), Gate::Probe);
    k.probe_unused();
    assert_eq!(k.gate(at), Gate::Probe);
    assert!(k.failing_for(at - T, at));
    assert!(!k.failing_for(at - T + 1, at));
    assert_eq!(
        k.on_answer(&c, Verdict::Success, true, at + 1),
        Some(Change::Closed)
    );
    assert_eq!(k, Circuit::default());
    assert_eq!(k.gate(now), Gate::Send);
}

#[test]
fn a_probe_out_at_a_restart_is_due_again() {
    let c = cfg(1);
    let mut k = Circuit::default();
    k.on_answer(&c, Verdict::Failure, false, T);
    assert_eq!(k.gate(T + 5_000), Gate::Probe);
    let k = k.restored();
    assert_eq!(k.state, CircuitState::Open);
    let mut k = k;
    assert_eq!(k.gate(T + 5_000), Gate::Probe);
}

#[test]
fn settings_are_checked_by_name() {
    let mut b = BreakerConfig::default();
    b.validate().unwrap();
    b.failures = 0;
    let e = b.validate().unwrap_err().to_string();
    assert!(e.starts_with("circuit_breaker.failures:"), "{e}");
    b.failures = 3;
    b.probe_max_seconds = 1.0;
    let e = b.validate().unwrap_err().to_string();
    assert!(e.starts_with("circuit_breaker.probe_max_seconds:"), "{e}");
}
