//! Cron schedules: a [`Schedule`] keeps its definition, its pause and the scheduled time of
//! its last firing in the store's settings (`schedule/NAME`). Each firing becomes a timer whose
//! id is derived from (schedule, time) ([`firing_id`]), so a crash between creating the firing
//! and recording it cannot fire it twice. Firings found late (the server was down or busy, or
//! the schedule paused) follow the schedule's catch-up policy (`catch_up.rs`); the ones that do
//! not fire are counted as `missed`, and the last firings and the last catch-up are kept for
//! the view.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::error::{EngineError, Result};
use crate::model::MessageId;
use crate::validate::validate_name;

use super::catch_up::{self, CatchUp};
use super::{TimerSpec, Timers};

pub const SCHEDULES_MAX: usize = 10_000;

/// A cron schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub cron: String,
    #[serde(default = "utc")]
    pub timezone: String,
    /// The firing: an HTTP call (url...) or a publish (queue, body, attributes).
    pub target: TimerSpec,
    #[serde(default)]
    pub created_at: Millis,
    #[serde(default)]
    pub updated_at: Millis,
    /// The scheduled time of the last firing handled (fired or counted as missed).
    #[serde(default)]
    pub last_fired: Option<Millis>,
    #[serde(default)]
    pub fired: u64,
    #[serde(default)]
    pub missed: u64,
    /// What happens to firings found late.
    #[serde(default)]
    pub catch_up: CatchUp,
    /// Late firings older than this never fire (None: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up_window_seconds: Option<u64>,
    /// Set while the schedule is paused (since then): nothing fires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<Millis>,
    /// The last firings made (at most `catch_up::limits::RECENT`), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_firings: Vec<Firing>,
    /// The last time late firings were found, and what became of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_catch_up: Option<CatchUpReport>,
}

/// One firing made: its scheduled time (its timer id is [`firing_id`] of it) and whether it
/// fired late.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Firing {
    pub at: Millis,
    pub late: bool,
}

/// A catch-up: when late firings were found, how many fired and how many were missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatchUpReport {
    pub at: Millis,
    pub fired: u64,
    pub missed: u64,
}

fn utc() -> String {
    "UTC".into()
}

impl Schedule {
    /// A schedule in UTC with the default catch-up (`latest`), never fired.
    pub fn new(cron: impl Into<String>, target: TimerSpec) -> Schedule {
        Schedule {
            cron: cron.into(),
            timezone: utc(),
            target,
            created_at: 0,
            updated_at: 0,
            last_fired: None,
            fired: 0,
            missed: 0,
            catch_up: CatchUp::default(),
            catch_up_window_seconds: None,
            paused_at: None,
            recent_firings: Vec::new(),
            last_catch_up: None,
        }
    }

    pub fn validate(&self) -> Result<()> {
        parse_cron(&self.cron)?;
        parse_tz(&self.timezone)?;
        catch_up::validate_window(self.catch_up_window_seconds)?;
        self.target.validate()
    }

    /// When it fires next (None while paused, or if the expression never fires again).
    pub fn next_fire_at(&self) -> Option<Millis> {
        if self.paused_at.is_some() {
            return None;
        }
        self.next_after(self.last_fired.unwrap_or(self.created_at))
    }

    /// The latest firing at or before `at` (on a whole second).
    pub fn latest_at_or_before(&self, at: Millis) -> Option<Millis> {
        let cron = parse_cron(&self.cron).ok()?;
        let tz = parse_tz(&self.timezone).ok()?;
        let start =
            chrono::DateTime::from_timestamp_millis(at.div_euclid(1000) * 1000)?.with_timezone(&tz);
        cron.find_previous_occurrence(&start, true)
            .ok()
            .map(|t| t.timestamp_millis())
    }

    /// The first firing strictly after `after` (on a whole second).
    pub fn next_after(&self, after: Millis) -> Option<Millis> {
        let cron = parse_cron(&self.cron).ok()?;
        let tz = parse_tz(&self.timezone).ok()?;
        let start = chrono::DateTime::from_timestamp_millis(after.div_euclid(1000) * 1000)?
            .with_timezone(&tz);
        cron.find_next_occurrence(&start, false)
            .ok()
            .map(|t| t.timestamp_millis())
    }
}

fn parse_cron(s: &str) -> Result<croner::Cron> {
    croner::Cron::from_str(s).map_err(|e| {
        EngineError::invalid(
            "cron",
            format!("{e} (5 fields \"min hour dom month dow\", or 6 with seconds first)"),
        )
    })
}

fn parse_tz(s: &str) -> Result<chrono_tz::Tz> {
    s.parse::<chrono_tz::Tz>().map_err(|_| {
        EngineError::invalid(
            "timezone",
            format!("{s:?} is not an IANA time zone name (e.g. \"UTC\", \"Europe/Berlin\")"),
        )
    })
}

/// The id of one firing of a schedule: the same (schedule, time) always gives the same id.
pub fn firing_id(schedule: &str, at: Millis) -> MessageId {
    use sha2::Digest;
    let h = sha2::Sha256::digest(format!("{schedule}\u{0}{at}").as_bytes());
    let mut b: [u8; 16] = h[..16].try_into().expect("16 bytes");
    b[6] = (b[6] & 0x0f) | 0x80; // UUID version 8 (custom)
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    MessageId(u128::from_be_bytes(b))
}

fn schedule_key(name: &str) -> String {
    format!("schedule/{name}")
}

impl Timers {
    /// (Re-)read the schedules (at start, and when another node changed one).
    pub async fn load_schedules(&self) -> Result<()> {
        let mut schedules = BTreeMap::new();
        for (key, value) in self.core.store.meta_list("schedule/").await? {
            match serde_json::from_str::<Schedule>(&value) {
                Ok(s) => {
                    schedules.insert(key["schedule/".len()..].to_string(), s);
                }
                Err(e) => tracing::error!(key, error = %e, "ignoring an unreadable schedule"),
            }
        }
        *self.schedules.write() = schedules;
        Ok(())
    }

    pub async fn put_schedule(&self, name: &str, mut s: Schedule) -> Result<(Schedule, bool)> {
        validate_name("name", name)?;
        s.validate()?;
        let now = self.core.now();
        let old = self.schedules.read().get(name).cloned();
        if old.is_none() && self.schedules.read().len() >= SCHEDULES_MAX {
            return Err(EngineError::invalid(
                "name",
                format!("there are already {SCHEDULES_MAX} schedules, the limit"),
            ));
        }
        s.created_at = old.as_ref().map_or(now, |o| o.created_at);
        s.updated_at = now;
        s.fired = old.as_ref().map_or(0, |o| o.fired);
        s.missed = old.as_ref().map_or(0, |o| o.missed);
        // A replacement keeps the pause and what the schedule has done so far.
        if let Some(o) = &old {
            s.paused_at = o.paused_at;
            s.recent_firings = o.recent_firings.clone();
            s.last_catch_up = o.last_catch_up;
        }
        // A new or changed schedule starts counting from now.
        s.last_fired = Some(now);
        self.save_schedule(name, &s).await?;
        Ok((s, old.is_none()))
    }

    /// Store a schedule's settings (durable on return) and wake the scheduler.
    async fn save_schedule(&self, name: &str, s: &Schedule) -> Result<()> {
        let json = serde_json::to_string(s).expect("schedule serializes");
        self.core
            .store
            .meta_put(&schedule_key(name), Some(json))
            .await?;
        self.schedules.write().insert(name.to_string(), s.clone());
        self.schedules_changed.notify_one();
        Ok(())
    }

    /// Pause a schedule: nothing fires until it is resumed (idempotent). Durable.
    pub async fn pause_schedule(&self, name: &str) -> Result<Schedule> {
        self.set_schedule_paused(name, true).await
    }

    /// Resume a paused schedule (idempotent). The firings that fell due meanwhile are late:
    /// they follow its catch-up policy.
    pub async fn resume_schedule(&self, name: &str) -> Result<Schedule> {
        self.set_schedule_paused(name, false).await
    }

    async fn set_schedule_paused(&self, name: &str, on: bool) -> Result<Schedule> {
        let mut s = self.schedule(name)?;
        if s.paused_at.is_some() == on {
            return Ok(s);
        }
        s.paused_at = on.then(|| self.core.now());
        self.save_schedule(name, &s).await?;
        Ok(s)
    }

    pub fn schedule(&self, name: &str) -> Result<Schedule> {
        self.schedules
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| EngineError::NotFound {
                what: "schedule",
                id: name.to_string(),
            })
    }

    pub fn schedules(&self) -> Vec<(String, Schedule)> {
        self.schedules
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub async fn delete_schedule(&self, name: &str) -> Result<()> {
        self.schedule(name)?;
        self.core.store.meta_put(&schedule_key(name), None).await?;
        self.schedules.write().remove(name);
        self.schedules_changed.notify_one();
        Ok(())
    }

    /// Fire every schedule that is due now, as its catch-up policy says. Returns the time of
    /// the next firing, if any.
    pub async fn fire_schedules(&self) -> Result<Option<Millis>> {
        let now = self.core.now();
        let mut next: Option<Millis> = None;
        let mut soonest = |at: Millis| next = Some(next.map_or(at, |n: Millis| n.min(at)));
        for (name, s) in self.schedules() {
            if s.paused_at.is_some() {
                continue;
            }
            let after = s.last_fired.unwrap_or(s.created_at);
            let Some(first) = s.next_after(after) else {
                continue;
            };
            if first > now {
                soonest(first);
                continue;
            }
            let plan = catch_up::plan(&s, first, now);
            if let Err(e) = self.make_firings(&name, &s, &plan.fire, now).await {
                tracing::warn!(schedule = %name, error = %e, "schedule firing failed; retrying in 1 s");
                soonest(now + 1000);
                continue;
            }
            if plan.late {
                tracing::warn!(schedule = %name, policy = ?s.catch_up, fired = plan.fire.len(), missed = plan.missed, "late firings (server down or busy, or schedule paused)");
            }
            let mut updated = s.clone();
            updated.last_fired = Some(plan.latest);
            updated.fired += plan.fire.len() as u64;
            updated.missed += plan.missed;
            updated
                .recent_firings
                .extend(plan.fire.iter().map(|&(at, late)| Firing { at, late }));
            let keep = updated
                .recent_firings
                .len()
                .saturating_sub(catch_up::limits::RECENT);
            updated.recent_firings.drain(..keep);
            if plan.late {
                updated.last_catch_up = Some(CatchUpReport {
                    at: now,
                    fired: plan.fire.len() as u64,
                    missed: plan.missed,
                });
            }
            // Only if it was not changed or deleted meanwhile.
            let current = self.schedules.read().get(&name).cloned();
            if current
                .as_ref()
                .is_some_and(|c| c.updated_at == s.updated_at && c.paused_at == s.paused_at)
            {
                let json = serde_json::to_string(&updated).expect("schedule serializes");
                self.core
                    .store
                    .meta_put(&schedule_key(&name), Some(json))
                    .await?;
                self.schedules.write().insert(name.clone(), updated.clone());
            }
            if let Some(n) = updated.next_after(plan.latest) {
                soonest(n);
            }
        }
        Ok(next)
    }

    /// Create the timers of firings (due now), a hundred at a time so they share group
    /// commits. A firing made before (a crash before its schedule was recorded) is not made
    /// again: its id is derived from (schedule, time).
    async fn make_firings(
        &self,
        name: &str,
        s: &Schedule,
        fire: &[(Millis, bool)],
        now: Millis,
    ) -> Result<()> {
        for chunk in fire.chunks(100) {
            let made = futures::future::join_all(chunk.iter().map(|&(at, _)| {
                let mut spec = s.target.clone();
                spec.schedule = Some(name.to_string());
                spec.due_at = now;
                self.create(spec, Some(firing_id(name, at)))
            }))
            .await;
            made.into_iter().collect::<Result<Vec<_>>>()?;
        }
        Ok(())
    }

    /// Run the scheduler until shutdown.
    pub fn spawn_scheduler(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let timers = self.clone();
        tokio::spawn(async move {
            let mut shutdown = timers.core.shutdown.subscribe();
            loop {
                let next = match timers.fire_schedules().await {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!(error = %e, "scheduler pass failed");
                        Some(timers.core.now() + 1000)
                    }
                };
                let until = next.unwrap_or(timers.core.now() + 3_600_000);
                tokio::select! {
                    _ = timers.core.clock.sleep_until(until) => {}
                    _ = timers.schedules_changed.notified() => {}
                    _ = shutdown.changed() => return,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_next_with_seconds_and_timezone() {
        let mut s = Schedule::new("*/5 * * * *", TimerSpec::http("http://example.com/x"));
        s.validate().unwrap();
        assert_eq!(s.next_after(0), Some(5 * 60_000));
        s.cron = "*/2 * * * * *".into();
        assert_eq!(s.next_after(1000), Some(2000));
        s.cron = "0 9 * * *".into();
        s.timezone = "Europe/Berlin".into();
        // 1970-01-01 09:00 in Berlin (UTC+1) is 08:00 UTC.
        assert_eq!(s.next_after(0), Some(8 * 3_600_000));
        s.timezone = "Mars/Olympus".into();
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("timezone:"));
        s.timezone = "UTC".into();
        s.cron = "61 * * * *".into();
        assert!(s.validate().unwrap_err().to_string().starts_with("cron:"));
    }

    #[test]
    fn firing_ids_are_stable_and_distinct() {
        assert_eq!(firing_id("a", 1), firing_id("a", 1));
        assert_ne!(firing_id("a", 1), firing_id("a", 2));
        assert_ne!(firing_id("a", 1), firing_id("b", 1));
    }
}
