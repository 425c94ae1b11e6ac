//! The delivery policy: what one HTTP answer means for a message and when it is tried again.
//! The server's senders make the request and describe what came back as an [`Answer`] (no
//! HTTP types: the engine never sees HTTP); [`DeliveryPolicy::decide`] classifies it, applies
//! the backoff and the attempt limit, and says why a message failed. Pacing of a whole
//! endpoint (429s) is `pace.rs`.

use crate::history::Outcome;
use crate::push::breaker::Verdict;
use crate::push::subscription::{Backoff, Subscription};

/// What the sender saw of one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer {
    /// The status code, if an answer came.
    pub status: Option<u16>,
    /// Why no answer came (timeout, connection refused), or why the target was refused.
    pub error: Option<String>,
    /// The answer's `Retry-After`, in milliseconds.
    pub retry_after_ms: Option<u64>,
    /// The target was refused before any request (a private address): a permanent failure.
    pub refused: bool,
}

/// What happens to the message after one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    /// How long until the next try (retry, throttled).
    pub delay_ms: u64,
    /// Why it failed for good (failed), for the dead letter and the log.
    pub reason: String,
}

/// Status code → outcome: 2xx delivered; 429 throttled; 408, 5xx and no answer retried; any
/// other status (4xx, and 3xx since redirects are not followed) failed.
pub fn classify(status: Option<u16>) -> Outcome {
    match status {
        None => Outcome::Retry,
        Some(s) if (200..300).contains(&s) => Outcome::Delivered,
        Some(429) => Outcome::Throttled,
        Some(408) => Outcome::Retry,
        Some(s) if s >= 500 => Outcome::Retry,
        Some(_) => Outcome::Failed,
    }
}

/// 429 answers a message may get before it is given up (dead-lettered; a timer fails): an
/// endpoint that refuses a message for good must not keep it forever.
pub const MAX_THROTTLED: u32 = 100;

/// The retry rules of one subscription or timer.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryPolicy {
    pub max_attempts: u32,
    pub backoff: Backoff,
}

impl DeliveryPolicy {
    pub fn of(sub: &Subscription) -> DeliveryPolicy {
        DeliveryPolicy {
            max_attempts: sub.max_attempts,
            backoff: sub.backoff.clone(),
        }
    }

    /// Timers retry on the default backoff (1 s doubling, up to an hour).
    pub fn for_timer(max_attempts: u32) -> DeliveryPolicy {
        DeliveryPolicy {
            max_attempts,
            backoff: Backoff::default(),
        }
    }

    /// What `answer` to attempt number `attempt` (1-based; 429s are not attempts) means, for a
    /// message that got `throttled` 429s before. `throttled_wait` says how long a 429 holds the
    /// message back, given its Retry-After (the endpoint's pace decides). `rand01` is uniform
    /// in [0, 1), for the backoff's jitter.
    pub fn decide(
        &self,
        answer: &Answer,
        attempt: u32,
        throttled: u32,
        rand01: f64,
        throttled_wait: impl FnOnce(Option<u64>) -> u64,
    ) -> Decision {
        let outcome = if answer.refused {
            Outcome::Failed
        } else {
            classify(answer.status)
        };
        let decision = |outcome, delay_ms| Decision {
            outcome,
            delay_ms,
            reason: String::new(),
        };
        match outcome {
            Outcome::Delivered => decision(Outcome::Delivered, 0),
            Outcome::Throttled if throttled + 1 >= MAX_THROTTLED => Decision {
                outcome: Outcome::Failed,
                delay_ms: 0,
                reason: format!(
                    "HTTP 429 {MAX_THROTTLED} times (the limit of 429s for one message; they are not attempts)"
                ),
            },
            Outcome::Throttled => {
                decision(Outcome::Throttled, throttled_wait(answer.retry_after_ms))
            }
            Outcome::Retry if attempt < self.max_attempts => decision(
                Outcome::Retry,
                self.backoff
                    .delay_ms(attempt, rand01)
                    .max(answer.retry_after_ms.unwrap_or(0)),
            ),
            Outcome::Retry | Outcome::Failed => Decision {
                outcome: Outcome::Failed,
                delay_ms: 0,
                reason: self.reason(answer, attempt),
            },
        }
    }

    fn reason(&self, answer: &Answer, attempt: u32) -> String {
        match (answer.status, &answer.error) {
            (Some(st), _) if answer.refused => format!("HTTP {st}"),
            (Some(st), _) => format!("HTTP {st} (attempt {attempt} of {})", self.max_attempts),
            (None, Some(e)) => e.clone(),
            (None, None) => "unknown error".into(),
        }
    }
}

/// The breaker's reading of an answer: only no answer, 408 and 5xx say the endpoint is down.
impl Verdict {
    pub fn of(answer: &Answer) -> Verdict {
        match answer.status {
            _ if answer.refused => Verdict::Neutral,
            None => Verdict::Failure,
            Some(s) if (200..300).contains(&s) => Verdict::Success,
            Some(408) => Verdict::Failure,
            Some(s) if s >= 500 => Verdict::Failure,
            Some(_) => Verdict::Neutral,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16) -> Answer {
        Answer {
            status: Some(status),
            ..Answer::default()
        }
    }

    fn policy() -> DeliveryPolicy {
        DeliveryPolicy {
            max_attempts: 3,
            backoff: Backoff {
                jitter: false,
                ..Backoff::default()
            },
        }
    }

    #[test]
    fn classification() {
        assert_eq!(classify(Some(204)), Outcome::Delivered);
        assert_eq!(classify(Some(500)), Outcome::Retry);
        assert_eq!(classify(Some(408)), Outcome::Retry);
        assert_eq!(classify(None), Outcome::Retry);
        assert_eq!(classify(Some(429)), Outcome::Throttled);
        assert_eq!(classify(Some(404)), Outcome::Failed);
        assert_eq!(classify(Some(302)), Outcome::Failed);
    }

    #[test]
    fn retries_follow_the_backoff_until_the_last_attempt() {
        let p = policy();
        let d = p.decide(&answer(503), 1, 0, 0.0, |_| unreachable!());
        assert_eq!((d.outcome, d.delay_ms), (Outcome::Retry, 1000));
        let d = p.decide(&answer(503), 2, 0, 0.0, |_| unreachable!());
        assert_eq!((d.outcome, d.delay_ms), (Outcome::Retry, 2000));
        let d = p.decide(&answer(503), 3, 0, 0.0, |_| unreachable!());
        assert_eq!(d.outcome, Outcome::Failed);
        assert_eq!(d.reason, "HTTP 503 (attempt 3 of 3)");
    }

    #[test]
    fn retry_after_lengthens_a_retry_and_paces_a_429() {
        let p = policy();
        let a = Answer {
            retry_after_ms: Some(7000),
            ..answer(503)
        };
        assert_eq!(p.decide(&a, 1, 0, 0.0, |_| 0).delay_ms, 7000);
        let a = Answer {
            retry_after_ms: Some(1500),
            ..answer(429)
        };
        let d = p.decide(&a, 3, 0, 0.0, |ra| ra.unwrap() + 1);
        assert_eq!((d.outcome, d.delay_ms), (Outcome::Throttled, 1501));
    }

    #[test]
    fn a_permanent_429_is_given_up() {
        let p = policy();
        let d = p.decide(&answer(429), 1, MAX_THROTTLED - 2, 0.0, |_| 1000);
        assert_eq!(d.outcome, Outcome::Throttled);
        let d = p.decide(&answer(429), 1, MAX_THROTTLED - 1, 0.0, |_| 1000);
        assert_eq!(d.outcome, Outcome::Failed);
        assert!(d.reason.contains("429"), "{}", d.reason);
    }

    #[test]
    fn refused_targets_and_client_errors_fail_at_once() {
        let p = policy();
        let d = p.decide(&answer(404), 1, 0, 0.0, |_| 0);
        assert_eq!(
            (d.outcome, d.reason.as_str()),
            (Outcome::Failed, "HTTP 404 (attempt 1 of 3)")
        );
        let refused = Answer {
            error: Some("target refused: private address".into()),
            refused: true,
            ..Answer::default()
        };
        let d = p.decide(&refused, 1, 0, 0.0, |_| 0);
        assert_eq!(d.outcome, Outcome::Failed);
        assert_eq!(d.reason, "target refused: private address");
    }
}
