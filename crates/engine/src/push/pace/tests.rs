//! The pacing rule against simulated endpoints: a lane with a concurrency limit sends through
//! a [`Pace`] to an endpoint model (sporadic 429s, a token bucket, an outage), in simulated
//! time. The targets are those of the delivery issue and docs/webhooks.md.

use std::collections::BinaryHeap;

use super::*;

/// What the endpoint says to one request: None = 200, Some(ms) = 429 with that Retry-After,
/// Some(0) = a 500 (tried again 200 ms later).
trait Endpoint {
    fn answer(&mut self, message: u32, now: f64) -> Option<u64>;
}

/// A token bucket that also fails one request in fifty with a 500.
struct FlakyBucket(Bucket, u32);
impl Endpoint for FlakyBucket {
    fn answer(&mut self, m: u32, now: f64) -> Option<u64> {
        self.1 += 1;
        if self.1.is_multiple_of(50) {
            return Some(0);
        }
        self.0.answer(m, now)
    }
}

/// One request in ten refused once (by message), with `Retry-After: 1`.
struct Sporadic(std::collections::HashSet<u32>);
impl Endpoint for Sporadic {
    fn answer(&mut self, m: u32, _: f64) -> Option<u64> {
        (m.is_multiple_of(10) && self.0.insert(m)).then_some(1000)
    }
}

/// Allows `rate` requests a second (burst: one second's worth), 429 above.
struct Bucket {
    rate: f64,
    tokens: f64,
    at: f64,
}
impl Endpoint for Bucket {
    fn answer(&mut self, _: u32, now: f64) -> Option<u64> {
        self.tokens = (self.tokens + (now - self.at) * self.rate / 1000.0).min(self.rate);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            None
        } else {
            Some(1000)
        }
    }
}

/// Refuses everything with `Retry-After: 5` until `until`.
struct Outage {
    until: f64,
}
impl Endpoint for Outage {
    fn answer(&mut self, _: u32, now: f64) -> Option<u64> {
        (now < self.until).then_some(5000)
    }
}

/// (time, message) ordered soonest first.
#[derive(PartialEq)]
struct Due(f64, u32);
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Due {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        o.0.total_cmp(&self.0).then(o.1.cmp(&self.1))
    }
}

#[derive(Default)]
struct Run {
    /// (arrival at the endpoint, message, refused)
    requests: Vec<(f64, u32, bool)>,
    delivered_at: Vec<f64>,
}

impl Run {
    fn delivered_between(&self, from: f64, to: f64) -> usize {
        self.delivered_at
            .iter()
            .filter(|&&t| t >= from && t < to)
            .count()
    }
    fn refused_share(&self, from: f64, to: f64) -> f64 {
        let (n, r) = self
            .requests
            .iter()
            .filter(|(t, _, _)| *t >= from && *t < to)
            .fold((0, 0), |(n, r), (_, _, x)| (n + 1, r + *x as u32));
        r as f64 / n.max(1) as f64
    }
}

/// How long a lane takes to lease the messages of the turns it took at once (a store call with
/// its sync): it takes no other turn meanwhile, as the server's lane does.
const LEASE_MS: f64 = 10.0;

/// Send `messages` (all ready at 0) with `concurrency` requests in flight at most, each taking
/// `rtt` ms after a lease of [`LEASE_MS`], until all are delivered or `end` ms.
fn simulate(
    pace: &mut Pace,
    endpoint: &mut dyn Endpoint,
    messages: u32,
    concurrency: usize,
    rtt: f64,
    end: f64,
) -> Run {
    let mut leasing_until = 0.0;
    let mut run = Run::default();
    let mut ready: BinaryHeap<Due> = (0..messages).map(|m| Due(0.0, m)).collect();
    // (answer time, message, ticket, refused with this Retry-After)
    let mut flight: Vec<(f64, u32, Ticket, Option<u64>)> = Vec::new();
    let mut now = 0.0;
    let mut wake: Option<f64> = None;
    while now <= end && (!ready.is_empty() || !flight.is_empty()) {
        flight.sort_by(|a, b| a.0.total_cmp(&b.0));
        while flight.first().is_some_and(|f| f.0 <= now) {
            let (at, m, t, refused) = flight.remove(0);
            match refused {
                None => {
                    pace.on_success(t, at);
                    run.delivered_at.push(at);
                }
                Some(0) => {
                    pace.on_other(t, at);
                    ready.push(Due(at + 200.0, m));
                }
                Some(ra) => {
                    let wait = pace.on_throttled(t, Some(ra), at);
                    assert!(wait >= ra, "a 429 delays its message by its Retry-After");
                    ready.push(Due(at + wait as f64, m));
                }
            }
        }
        wake = wake.filter(|&w| w > now);
        let mut waiting_for_answer = false;
        let mut leased = false;
        while wake.is_none()
            && now >= leasing_until
            && flight.len() < concurrency
            && ready.peek().is_some_and(|d| d.0 <= now)
        {
            let grant = if pace.is_pacing() {
                pace.acquire(now)
            } else {
                Grant::Go(pace.ticket(now))
            };
            match grant {
                Grant::Go(t) => {
                    let Due(_, m) = ready.pop().expect("peeked");
                    leased = true;
                    let arrival = now + LEASE_MS + rtt / 2.0;
                    let refused = endpoint.answer(m, arrival);
                    run.requests
                        .push((arrival, m, refused.is_some_and(|r| r > 0)));
                    flight.push((now + LEASE_MS + rtt, m, t, refused));
                }
                Grant::WaitUntil(w) => wake = Some(w),
                Grant::WaitForAnswer => {
                    waiting_for_answer = true;
                    break;
                }
            }
        }
        if leased {
            leasing_until = now + LEASE_MS;
        }
        let mut next = f64::INFINITY;
        if let Some(f) = flight.iter().map(|f| f.0).reduce(f64::min) {
            next = next.min(f);
        }
        if !waiting_for_answer && flight.len() < concurrency {
            if leasing_until > now {
                next = next.min(leasing_until);
            } else if let Some(w) = wake {
                next = next.min(w);
            } else if let Some(d) = ready.peek() {
                next = next.min(d.0.max(now + 0.001));
            }
        }
        if !next.is_finite() {
            break;
        }
        now = next.max(now);
    }
    run
}

#[test]
fn sporadic_429s_do_not_collapse_the_rate() {
    // One delivery in ten refused once with Retry-After: 1, limit 300/s, 1,500 messages.
    let mut pace = Pace::new(Some(300.0));
    let run = simulate(
        &mut pace,
        &mut Sporadic(Default::default()),
        1500,
        10,
        2.0,
        60_000.0,
    );
    let done = run.delivered_at.iter().copied().fold(0.0, f64::max);
    assert_eq!(run.delivered_at.len(), 1500);
    assert!(
        done <= 10_000.0,
        "all delivered within 10 s; took {done} ms"
    );
    // Goodput while messages were waiting (before the last retries' Retry-After tail).
    let goodput = run.delivered_between(0.0, 4000.0) as f64 / 4.0;
    assert!(
        goodput >= 0.9 * 300.0 * 0.9,
        "goodput {goodput}/s is at least 90% of the limit times the accepted share"
    );
}

fn token_bucket(rate: f64) {
    let mut pace = Pace::new(None);
    let mut endpoint = Bucket {
        rate,
        tokens: rate,
        at: 0.0,
    };
    let run = simulate(&mut pace, &mut endpoint, 2_000_000, 10, 2.0, 40_000.0);
    // Within 10 s of the start, some whole second delivers at least 80% of the rate.
    let reached = (0..10).any(|s| {
        let s = s as f64 * 1000.0;
        run.delivered_between(s, s + 1000.0) as f64 >= 0.8 * rate
    });
    assert!(
        reached,
        "delivered rate reached 80% of {rate}/s within 10 s"
    );
    // Steady state: at least 80% of the rate, fewer than 10% refused.
    let steady = run.delivered_between(10_000.0, 40_000.0) as f64 / 30.0;
    assert!(
        steady >= 0.8 * rate,
        "steady delivered {steady}/s of {rate}/s"
    );
    let refused = run.refused_share(10_000.0, 40_000.0);
    assert!(refused < 0.1, "steady-state share of 429s {refused}");
}

#[test]
fn converges_on_a_token_bucket_of_50() {
    token_bucket(50.0);
}

#[test]
fn converges_on_a_token_bucket_of_500() {
    token_bucket(500.0);
}

#[test]
fn an_outage_pauses_the_endpoint_with_one_probe() {
    let mut pace = Pace::new(None);
    let run = simulate(
        &mut pace,
        &mut Outage { until: 5000.0 },
        200,
        10,
        2.0,
        60_000.0,
    );
    assert_eq!(
        run.delivered_at.len(),
        200,
        "everything goes once it is over"
    );
    // Requests that left once the endpoint had refused everything for PAUSE_AFTER_MS, while
    // it was still refusing: the probes (one per Retry-After). Not counted: the answers of
    // that moment (2 ms each), and the requests whose turns were granted before the pause
    // but which left after it, once their messages were leased (LEASE_MS).
    let first = run.requests.iter().find(|r| r.2).unwrap().0;
    let during = run
        .requests
        .iter()
        .filter(|r| r.0 > first + PAUSE_AFTER_MS + 2.0 * 2.0 + LEASE_MS && r.0 < 5000.0)
        .count();
    assert!(during <= 1, "{during} requests during the pause");
    let done = run.delivered_at.iter().copied().fold(0.0, f64::max);
    assert!(
        done < 12_000.0,
        "the backlog goes soon after the outage; took {done} ms"
    );
}

#[test]
fn a_first_429_on_an_idle_endpoint_starts_from_the_configured_rate() {
    let mut p = Pace::new(Some(100.0));
    let Grant::Go(t) = p.acquire(0.0) else {
        panic!("first request may go")
    };
    assert_eq!(p.on_throttled(t, Some(0), 1.0), 1);
    let r = p.current_rate().unwrap();
    assert!((r - BETA * 100.0).abs() < 1e-9, "rate {r}, not the floor");
}

#[test]
fn one_cut_per_congestion_event() {
    let mut p = Pace::new(Some(100.0));
    let tickets: Vec<Ticket> = (0..10)
        .map(|i| match p.acquire(i as f64) {
            Grant::Go(t) => t,
            other => panic!("{other:?}"),
        })
        .collect();
    p.on_throttled(tickets[0], Some(0), 20.0);
    let first = p.current_rate().unwrap();
    // The others in flight at the cut get their 429s too: the same event.
    p.on_success(tickets[1], 20.5);
    for t in &tickets[2..] {
        p.on_throttled(*t, Some(0), 21.0);
    }
    let now = p.current_rate().unwrap();
    assert!(
        now >= first,
        "one congestion event, one cut ({first} -> {now})"
    );
}

#[test]
fn never_below_the_floor_and_lifted_at_the_configured_rate() {
    let mut p = Pace::new(Some(1.0));
    let mut now = 0.0;
    for _ in 0..20 {
        now += 1500.0;
        if let Grant::Go(t) = p.acquire(now) {
            p.on_throttled(t, Some(0), now);
            p.on_success(t, now);
        }
    }
    assert!(p.current_rate().is_none_or(|r| r >= FLOOR));
    // Quiet for a while: back to the configured rate, the adaptive one lifted.
    for _ in 0..60 {
        now += 1000.0;
        if let Grant::Go(t) = p.acquire(now) {
            p.on_success(t, now);
        }
    }
    assert_eq!(p.current_rate(), None);
}

#[test]
fn a_configured_rate_above_a_flaky_endpoints_limit_settles_below_it() {
    // Configured 2,500/s against an endpoint that takes 1,500/s and fails 2% with 500s.
    let mut pace = Pace::new(Some(2500.0));
    let bucket = Bucket {
        rate: 1500.0,
        tokens: 1500.0,
        at: 0.0,
    };
    let run = simulate(
        &mut pace,
        &mut FlakyBucket(bucket, 0),
        2_000_000,
        16,
        2.0,
        30_000.0,
    );
    let steady = run.delivered_between(10_000.0, 30_000.0) as f64 / 20.0;
    assert!(steady >= 0.8 * 1500.0, "steady delivered {steady}/s");
    let refused = run.refused_share(10_000.0, 30_000.0);
    assert!(refused < 0.1, "steady-state share of 429s {refused}");
}

/// A token bucket of 20/s until `until`, then no limit.
struct LimitLifted {
    bucket: Bucket,
    until: f64,
}
impl Endpoint for LimitLifted {
    fn answer(&mut self, m: u32, now: f64) -> Option<u64> {
        if now < self.until {
            self.bucket.answer(m, now)
        } else {
            None
        }
    }
}

#[test]
fn the_rate_comes_back_within_seconds_once_429s_stop() {
    // Held near 20/s for 10 s, then the endpoint takes anything: the configured 300/s is
    // regained within 5 s, not at 5% a second.
    let mut pace = Pace::new(Some(300.0));
    let bucket = Bucket {
        rate: 20.0,
        tokens: 20.0,
        at: 0.0,
    };
    let run = simulate(
        &mut pace,
        &mut LimitLifted {
            bucket,
            until: 10_000.0,
        },
        2_000_000,
        50,
        2.0,
        16_000.0,
    );
    let held = run.delivered_between(8_000.0, 10_000.0) as f64 / 2.0;
    assert!(held < 30.0, "held near the endpoint's 20/s: {held}/s");
    let back = run.delivered_between(15_000.0, 16_000.0) as f64;
    assert!(
        back >= 0.8 * 300.0,
        "{back}/s in the 6th second after the limit went"
    );
}

#[test]
fn a_probe_not_sent_is_needed_again_at_the_next_turn() {
    let mut p = Pace::new(None);
    let mut now = 0.0;
    // Refusals for longer than the pause rule's window pause the endpoint.
    while p.paused_until().is_none() {
        let Grant::Go(t) = p.acquire(now) else {
            panic!("not paused yet")
        };
        p.on_throttled(t, Some(1000), now);
        now += 50.0;
    }
    let after = p.paused_until().unwrap();
    let Grant::Go(probe) = p.acquire(after) else {
        panic!("the probe goes once the pause is over")
    };
    assert!(probe.probe);
    assert_eq!(p.acquire(after + 1.0), Grant::WaitForAnswer);
    // Its message was given back unsent: the next turn is the probe.
    p.on_unused(probe);
    let Grant::Go(next) = p.acquire(after + 2.0) else {
        panic!("a probe may go again")
    };
    assert!(next.probe);
}
