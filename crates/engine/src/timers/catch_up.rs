//! What a schedule does with the firings it finds due when the scheduler looks at it: the
//! catch-up policy. A firing is **on time** when it is the latest one due and at most
//! [`limits::ON_TIME_MS`] (60 s) late; every other due firing is **late** (the server was down
//! or busy, or the schedule was paused). On-time firings always fire. Late ones follow the
//! schedule's [`CatchUp`]:
//!
//! - `latest` (the default): the latest due firing fires once; the earlier ones are missed;
//! - `skip`: no late firing fires; they are all missed;
//! - `all`: every late firing fires, oldest first (at most [`limits::ALL_MAX`] per catch-up).
//!
//! With `catch_up_window_seconds`, late firings older than the window never fire. This module
//! only plans (a pure function of the schedule, the last firing handled and `now`), so the
//! rule is tested without a store or a clock.

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::error::Result;
use crate::validate::range;

use super::Schedule;

/// Limits of catch-up (documented in docs/timers.md).
pub mod limits {
    /// A due firing at most this late, and the latest one due, is on time.
    pub const ON_TIME_MS: i64 = 60_000;
    /// `all` fires at most this many late firings in one catch-up (the newest).
    pub const ALL_MAX: usize = 1000;
    /// Due firings are counted up to this many per catch-up.
    pub const COUNT_MAX: u64 = 10_000;
    /// The longest `catch_up_window_seconds` (one year).
    pub const WINDOW_MAX_S: u64 = 31_536_000;
    /// Firings kept in a schedule's `recent_firings`.
    pub const RECENT: usize = 10;
}

/// What a schedule does with late firings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum CatchUp {
    /// None fires.
    Skip,
    /// The latest fires once.
    #[default]
    Latest,
    /// Each fires, oldest first.
    All,
}

/// Check a window (seconds).
pub fn validate_window(w: Option<u64>) -> Result<()> {
    match w {
        Some(w) => range("catch_up_window_seconds", w, 1, limits::WINDOW_MAX_S),
        None => Ok(()),
    }
}

/// The firings to make now, and what is missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Scheduled times to fire, oldest first, each with whether it is late.
    pub fire: Vec<(Millis, bool)>,
    /// Due firings that do not fire (counted up to [`limits::COUNT_MAX`] in all).
    pub missed: u64,
    /// The latest due firing: handled from here on (the next pass starts after it).
    pub latest: Millis,
    /// Whether any due firing was late (a catch-up happened).
    pub late: bool,
}

/// Plan the due firings of `s` from `first` (the first one after the last handled, at or
/// before `now`) up to `now`.
pub fn plan(s: &Schedule, first: Millis, now: Millis) -> Plan {
    let latest = s.latest_at_or_before(now).unwrap_or(first).max(first);
    let on_time = now - latest <= limits::ON_TIME_MS;
    // Every due firing, counted (bounded) by stepping forward.
    let mut due = 1u64;
    let mut x = first;
    while x < latest && due < limits::COUNT_MAX {
        match s.next_after(x) {
            Some(n) if n <= latest => {
                due += 1;
                x = n;
            }
            _ => break,
        }
    }
    let late = due > 1 || !on_time;
    let window_start = s
        .catch_up_window_seconds
        .map_or(Millis::MIN, |w| now - w as i64 * 1000);
    let fire: Vec<(Millis, bool)> = match s.catch_up {
        _ if !late => vec![(latest, false)],
        CatchUp::Skip if on_time => vec![(latest, false)],
        CatchUp::Skip => Vec::new(),
        CatchUp::Latest if on_time => vec![(latest, false)],
        CatchUp::Latest if latest >= window_start => vec![(latest, true)],
        CatchUp::Latest => Vec::new(),
        CatchUp::All => {
            // The newest ones within the window, stepping back from the latest.
            let mut v = Vec::new();
            let mut t = Some(latest);
            while let Some(at) = t {
                if at < first || at < window_start || v.len() >= limits::ALL_MAX {
                    break;
                }
                v.push((at, !(on_time && at == latest)));
                t = s.latest_at_or_before(at - 1);
            }
            v.reverse();
            v
        }
    };
    Plan {
        missed: due.saturating_sub(fire.len() as u64),
        fire,
        latest,
        late,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timers::TimerSpec;

    const MIN: i64 = 60_000;

    fn every_ten_minutes(catch_up: CatchUp, window: Option<u64>) -> Schedule {
        let mut s = Schedule::new("0 */10 * * * *", TimerSpec::http("http://example.com/x"));
        s.catch_up = catch_up;
        s.catch_up_window_seconds = window;
        s
    }

    #[test]
    fn an_on_time_firing_fires_whatever_the_policy() {
        for p in [CatchUp::Skip, CatchUp::Latest, CatchUp::All] {
            let s = every_ten_minutes(p, Some(1));
            let plan = plan(&s, 10 * MIN, 10 * MIN + 59_000);
            assert_eq!(plan.fire, vec![(10 * MIN, false)], "{p:?}");
            assert_eq!((plan.missed, plan.late), (0, false));
        }
    }

    #[test]
    fn late_firings_follow_the_policy_and_the_window() {
        // Down from 5 to 35 minutes: 10, 20 and 30 are due, the latest 5 minutes late.
        let now = 35 * MIN;
        let p = |c, w| plan(&every_ten_minutes(c, w), 10 * MIN, now);
        let skip = p(CatchUp::Skip, None);
        assert_eq!(
            (skip.fire.len(), skip.missed, skip.latest),
            (0, 3, 30 * MIN)
        );
        let latest = p(CatchUp::Latest, None);
        assert_eq!(latest.fire, vec![(30 * MIN, true)]);
        assert_eq!(latest.missed, 2);
        let all = p(CatchUp::All, None);
        assert_eq!(
            all.fire,
            vec![(10 * MIN, true), (20 * MIN, true), (30 * MIN, true)]
        );
        assert_eq!(all.missed, 0);
        // A 10-minute window: 20 (15 minutes old) and 10 are out of it.
        let all = p(CatchUp::All, Some(600));
        assert_eq!((all.fire, all.missed), (vec![(30 * MIN, true)], 2));
        let latest = p(CatchUp::Latest, Some(240));
        assert_eq!((latest.fire.len(), latest.missed), (0, 3));
    }

    #[test]
    fn an_on_time_latest_after_late_ones() {
        // Down for 25 minutes, back 30 s after the 30-minute firing: it is on time.
        let now = 30 * MIN + 30_000;
        let s = every_ten_minutes(CatchUp::Skip, None);
        let plan = plan(&s, 10 * MIN, now);
        assert_eq!(
            (plan.fire, plan.missed, plan.late),
            (vec![(30 * MIN, false)], 2, true)
        );
        let s = every_ten_minutes(CatchUp::All, None);
        let all = super::plan(&s, 10 * MIN, now);
        assert_eq!(all.fire.last(), Some(&(30 * MIN, false)));
        assert_eq!(all.fire.len(), 3);
    }

    #[test]
    fn all_is_bounded_and_counting_stops() {
        let mut s = Schedule::new("* * * * * *", TimerSpec::http("http://example.com/x"));
        s.catch_up = CatchUp::All;
        let plan = plan(&s, 1000, 20_000_000);
        assert_eq!(plan.fire.len(), limits::ALL_MAX);
        assert_eq!(plan.fire.last().unwrap().0, 20_000_000);
        assert_eq!(plan.missed, limits::COUNT_MAX - limits::ALL_MAX as u64);
        assert!(validate_window(Some(0)).is_err());
        assert!(validate_window(Some(limits::WINDOW_MAX_S + 1)).is_err());
    }
}
