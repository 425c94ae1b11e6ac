//! Recent publish/receive/ack rates per queue, for the dashboard's live chart: a background task
//! samples the engine's cumulative queue counters every [`INTERVAL`] and keeps the last
//! [`KEEP`] samples (10 minutes) in memory, so a page opened at 2 a.m. shows the last minutes
//! at once instead of starting an empty chart. Nothing here is durable; a restart starts over.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use sluice_engine::{Engine, Millis};
use utoipa::ToSchema;

/// Time between samples.
pub const INTERVAL: Duration = Duration::from_secs(2);
/// Samples kept: 10 minutes.
pub const KEEP: usize = 300;
/// Queues followed by name; beyond this many, the rest only count in the totals.
pub const MAX_QUEUES: usize = 500;

#[derive(Clone, Copy, Default)]
struct Counts {
    published: u64,
    received: u64,
    acked: u64,
}

struct Sample {
    at: Millis,
    total: Counts,
    queues: HashMap<Arc<str>, Counts>,
}

#[derive(Default)]
pub struct Rates {
    samples: Mutex<VecDeque<Sample>>,
    names: Mutex<HashMap<String, Arc<str>>>,
}

/// Per-second rates of one series, one value per interval (null where the queue did not exist
/// at both ends of the interval).
#[derive(Serialize, ToSchema, Default)]
pub struct Series {
    pub published: Vec<Option<f64>>,
    pub received: Vec<Option<f64>>,
    pub acked: Vec<Option<f64>>,
}

#[derive(Serialize, ToSchema)]
pub struct RatesView {
    pub interval_seconds: u64,
    /// The end of each interval, in Unix seconds.
    pub t: Vec<f64>,
    /// All queues together.
    pub total: Series,
    pub queues: BTreeMap<String, Series>,
}

impl Rates {
    /// Take samples until the process ends.
    pub fn spawn(self: &Arc<Self>, engine: Arc<Engine>) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                me.sample(&engine).await;
            }
        });
    }

    async fn sample(&self, engine: &Engine) {
        let Ok(list) = engine.list_queues().await else {
            return;
        };
        let mut total = Counts::default();
        let mut queues = HashMap::new();
        {
            let mut names = self.names.lock();
            for (info, st) in list {
                let c = Counts {
                    published: st.published,
                    received: st.received,
                    acked: st.acked,
                };
                total.published += c.published;
                total.received += c.received;
                total.acked += c.acked;
                if queues.len() < MAX_QUEUES {
                    let name = names
                        .entry(info.name.clone())
                        .or_insert_with(|| Arc::from(info.name.as_str()))
                        .clone();
                    queues.insert(name, c);
                }
            }
            // Forget names no sample refers to any more (deleted queues).
            if names.len() > 2 * MAX_QUEUES {
                names.retain(|_, v| Arc::strong_count(v) > 1);
            }
        }
        let mut s = self.samples.lock();
        s.push_back(Sample {
            at: engine.now(),
            total,
            queues,
        });
        while s.len() > KEEP {
            s.pop_front();
        }
    }

    /// Rates over the kept samples (the last `points` intervals if given): the totals, and
    /// with `per_queue` each queue's series (with `queue`, only that queue's).
    pub fn view(&self, queue: Option<&str>, per_queue: bool, points: Option<usize>) -> RatesView {
        let s = self.samples.lock();
        let skip = points.map_or(0, |p| s.len().saturating_sub(p + 1));
        let mut view = RatesView {
            interval_seconds: INTERVAL.as_secs(),
            t: Vec::new(),
            total: Series::default(),
            queues: BTreeMap::new(),
        };
        let names: Vec<Arc<str>> = match queue {
            Some(q) => s
                .back()
                .and_then(|last| last.queues.keys().find(|k| &***k == q).cloned())
                .into_iter()
                .collect(),
            None if per_queue => s
                .back()
                .map(|last| last.queues.keys().cloned().collect())
                .unwrap_or_default(),
            None => Vec::new(),
        };
        for (a, b) in s.iter().skip(skip).zip(s.iter().skip(skip + 1)) {
            let secs = ((b.at - a.at) as f64 / 1000.0).max(0.001);
            view.t.push(b.at as f64 / 1000.0);
            push_rates(&mut view.total, Some(&a.total), Some(&b.total), secs);
            for n in &names {
                let series = view.queues.entry(n.to_string()).or_default();
                push_rates(series, a.queues.get(n), b.queues.get(n), secs);
            }
        }
        view
    }
}

fn push_rates(series: &mut Series, a: Option<&Counts>, b: Option<&Counts>, secs: f64) {
    let rate = |f: fn(&Counts) -> u64| match (a, b) {
        // A purge or re-creation can lower a counter; show 0 rather than a negative rate.
        (Some(a), Some(b)) => Some((f(b).saturating_sub(f(a))) as f64 / secs),
        // A queue created during the interval: everything it counts happened in it.
        (None, Some(b)) => Some(f(b) as f64 / secs),
        _ => None,
    };
    series.published.push(rate(|c| c.published));
    series.received.push(rate(|c| c.received));
    series.acked.push(rate(|c| c.acked));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: Millis, q: Option<(&str, u64)>) -> Sample {
        let mut queues = HashMap::new();
        let mut total = Counts::default();
        if let Some((n, p)) = q {
            let c = Counts {
                published: p,
                received: p / 2,
                acked: p / 4,
            };
            total = c;
            queues.insert(Arc::from(n), c);
        }
        Sample { at, total, queues }
    }

    #[test]
    fn rates_are_deltas_per_second_new_queues_count_from_zero_and_gone_ones_are_null() {
        let r = Rates::default();
        {
            let mut s = r.samples.lock();
            s.push_back(sample(0, None));
            s.push_back(sample(2000, Some(("a", 100))));
            s.push_back(sample(4000, Some(("a", 500))));
            s.push_back(sample(6000, None));
        }
        let v = r.view(None, true, None);
        assert_eq!(v.t, vec![2.0, 4.0, 6.0]);
        // Queues are named from the last sample: "a" is gone there.
        assert!(v.queues.is_empty());
        assert_eq!(v.total.published, vec![Some(50.0), Some(200.0), Some(0.0)]);
        r.samples.lock().pop_back();
        let v = r.view(None, true, None);
        assert_eq!(v.queues["a"].published, vec![Some(50.0), Some(200.0)]);
        assert_eq!(v.queues["a"].acked, vec![Some(12.5), Some(50.0)]);
        assert!(r.view(Some("b"), true, None).queues.is_empty());
        assert_eq!(r.view(Some("a"), true, None).queues.len(), 1);
        assert!(r.view(None, false, None).queues.is_empty());
        let last = r.view(None, true, Some(1));
        assert_eq!(last.t, vec![4.0]);
        assert_eq!(last.queues["a"].published, vec![Some(200.0)]);
    }
}
