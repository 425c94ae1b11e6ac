//! Recent rates and depths for the dashboard's live charts (`GET /v1/rates`): a background task
//! samples, every [`INTERVAL`], each queue's cumulative counters (published, received, acked)
//! and its depth (every message waiting or in flight, its subscriptions' copies included), and
//! each push subscription's delivery counters (delivered, retried, throttled by 429, failed =
//! given up and dead-lettered). It keeps the last [`KEEP`] samples (10 minutes) in memory, so
//! a page opened at 2 a.m. shows the last minutes at once instead of an empty chart. Nothing
//! here is durable; a restart starts over.

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
/// Queues (and subscriptions) followed by name; beyond this many, the rest only count in the
/// totals.
pub const MAX_QUEUES: usize = 500;

/// Cumulative counters of a queue (or of all queues), plus its depth at the sample.
#[derive(Clone, Copy, Default)]
struct Counts {
    published: u64,
    received: u64,
    acked: u64,
    delivered: u64,
    retried: u64,
    throttled: u64,
    failed: u64,
    depth: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.published += o.published;
        self.received += o.received;
        self.acked += o.acked;
        self.delivered += o.delivered;
        self.retried += o.retried;
        self.throttled += o.throttled;
        self.failed += o.failed;
        self.depth += o.depth;
    }
}

struct Sample {
    at: Millis,
    total: Counts,
    queues: HashMap<Arc<str>, Counts>,
    /// By `QUEUE/SUBSCRIPTION`.
    subscriptions: HashMap<Arc<str>, Counts>,
}

#[derive(Default)]
pub struct Rates {
    samples: Mutex<VecDeque<Sample>>,
    names: Mutex<HashMap<String, Arc<str>>>,
}

/// One series per figure, one value per interval (null where the queue or subscription did not
/// exist at both ends of the interval). Rates are per second; `depth` is a count at the end
/// of the interval.
#[derive(Serialize, ToSchema, Default)]
pub struct Series {
    pub published: Vec<Option<f64>>,
    pub received: Vec<Option<f64>>,
    pub acked: Vec<Option<f64>>,
    /// Push deliveries that succeeded, per second.
    pub delivered: Vec<Option<f64>>,
    /// Push attempts that will be retried, per second.
    pub retried: Vec<Option<f64>>,
    /// Push attempts answered 429, per second.
    pub throttled: Vec<Option<f64>>,
    /// Push deliveries given up (dead-lettered), per second.
    pub failed: Vec<Option<f64>>,
    /// Messages waiting or in flight (subscriptions' copies included) at the end of each
    /// interval.
    pub depth: Vec<Option<u64>>,
}

#[derive(Serialize, ToSchema)]
pub struct RatesView {
    pub interval_seconds: u64,
    /// The end of each interval, in Unix seconds.
    pub t: Vec<f64>,
    /// All queues together.
    pub total: Series,
    pub queues: BTreeMap<String, Series>,
    /// Push subscriptions by `QUEUE/NAME` (only the delivery series are filled).
    pub subscriptions: BTreeMap<String, Series>,
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

    fn name(names: &mut HashMap<String, Arc<str>>, n: &str) -> Arc<str> {
        names
            .entry(n.to_string())
            .or_insert_with(|| Arc::from(n))
            .clone()
    }

    async fn sample(&self, engine: &Engine) {
        let Ok(list) = engine.list_queue_counts().await else {
            return;
        };
        let mut total = Counts::default();
        let mut queues: HashMap<Arc<str>, Counts> = HashMap::new();
        let mut subscriptions = HashMap::new();
        // Each subscription's durable delivery counters, read before the names lock is taken.
        let mut subs = Vec::new();
        for sub in engine.push().all() {
            let child = sluice_engine::push::child_queue(&sub.queue, &sub.name);
            let st = engine.push().child_stats(&child).await.unwrap_or_default();
            subs.push((sub, st));
        }
        {
            let mut names = self.names.lock();
            for (info, st, counts) in list {
                let c = Counts {
                    published: counts.published,
                    received: st.received,
                    acked: st.acked,
                    depth: counts.total,
                    ..Counts::default()
                };
                total.add(&c);
                if queues.len() < MAX_QUEUES {
                    queues.insert(Self::name(&mut names, &info.name), c);
                }
            }
            for (s, l) in subs {
                let c = Counts {
                    delivered: l.delivered,
                    retried: l.retried,
                    throttled: l.throttled,
                    failed: l.failed,
                    ..Counts::default()
                };
                total.add(&c);
                if let Some(q) = queues.get_mut(s.queue.as_str()) {
                    q.add(&c);
                }
                if subscriptions.len() < MAX_QUEUES {
                    let key = Self::name(&mut names, &format!("{}/{}", s.queue, s.name));
                    subscriptions.insert(key, c);
                }
            }
            // Forget names no sample refers to any more (deleted queues).
            if names.len() > 4 * MAX_QUEUES {
                names.retain(|_, v| Arc::strong_count(v) > 1);
            }
        }
        let mut s = self.samples.lock();
        s.push_back(Sample {
            at: engine.now(),
            total,
            queues,
            subscriptions,
        });
        while s.len() > KEEP {
            s.pop_front();
        }
    }

    /// Rates over the kept samples (the last `points` intervals if given): the totals, and
    /// with `per_queue` each queue's series and each subscription's (with `queue`, only that
    /// queue's and its subscriptions').
    pub fn view(&self, queue: Option<&str>, per_queue: bool, points: Option<usize>) -> RatesView {
        let s = self.samples.lock();
        let skip = points.map_or(0, |p| s.len().saturating_sub(p + 1));
        let mut view = RatesView {
            interval_seconds: INTERVAL.as_secs(),
            t: Vec::new(),
            total: Series::default(),
            queues: BTreeMap::new(),
            subscriptions: BTreeMap::new(),
        };
        let last = s.back();
        let wanted = |k: &str, sub: bool| -> bool {
            match queue {
                Some(q) if sub => k.rsplit_once('/').is_some_and(|(kq, _)| kq == q),
                Some(q) => k == q,
                None => per_queue,
            }
        };
        let pick = |m: Option<&HashMap<Arc<str>, Counts>>, sub: bool| -> Vec<Arc<str>> {
            m.map(|m| m.keys().filter(|k| wanted(k, sub)).cloned().collect())
                .unwrap_or_default()
        };
        let queues = pick(last.map(|l| &l.queues), false);
        let subs = pick(last.map(|l| &l.subscriptions), true);
        for (a, b) in s.iter().skip(skip).zip(s.iter().skip(skip + 1)) {
            let secs = ((b.at - a.at) as f64 / 1000.0).max(0.001);
            view.t.push(b.at as f64 / 1000.0);
            push_rates(&mut view.total, Some(&a.total), Some(&b.total), secs);
            for n in &queues {
                let series = view.queues.entry(n.to_string()).or_default();
                push_rates(series, a.queues.get(n), b.queues.get(n), secs);
            }
            for n in &subs {
                let series = view.subscriptions.entry(n.to_string()).or_default();
                push_rates(series, a.subscriptions.get(n), b.subscriptions.get(n), secs);
            }
        }
        view
    }
}

fn push_rates(series: &mut Series, a: Option<&Counts>, b: Option<&Counts>, secs: f64) {
    let rate = |f: fn(&Counts) -> u64| match (a, b) {
        // A purge, a re-creation or a reset of the counters can lower a counter; show 0
        // rather than a negative rate.
        (Some(a), Some(b)) => Some((f(b).saturating_sub(f(a))) as f64 / secs),
        // Created during the interval: everything it counts happened in it.
        (None, Some(b)) => Some(f(b) as f64 / secs),
        _ => None,
    };
    series.published.push(rate(|c| c.published));
    series.received.push(rate(|c| c.received));
    series.acked.push(rate(|c| c.acked));
    series.delivered.push(rate(|c| c.delivered));
    series.retried.push(rate(|c| c.retried));
    series.throttled.push(rate(|c| c.throttled));
    series.failed.push(rate(|c| c.failed));
    series.depth.push(b.map(|b| b.depth));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: Millis, q: Option<(&str, u64)>) -> Sample {
        let mut queues = HashMap::new();
        let mut subscriptions = HashMap::new();
        let mut total = Counts::default();
        if let Some((n, p)) = q {
            let c = Counts {
                published: p,
                received: p / 2,
                acked: p / 4,
                delivered: p / 10,
                failed: p / 100,
                depth: p / 2,
                ..Counts::default()
            };
            total = c;
            queues.insert(Arc::from(n), c);
            subscriptions.insert(Arc::from(format!("{n}/hook").as_str()), c);
        }
        Sample {
            at,
            total,
            queues,
            subscriptions,
        }
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
        assert_eq!(v.total.depth, vec![Some(50), Some(250), Some(0)]);
        r.samples.lock().pop_back();
        let v = r.view(None, true, None);
        assert_eq!(v.queues["a"].published, vec![Some(50.0), Some(200.0)]);
        assert_eq!(v.queues["a"].acked, vec![Some(12.5), Some(50.0)]);
        assert_eq!(v.queues["a"].depth, vec![Some(50), Some(250)]);
        assert_eq!(
            v.subscriptions["a/hook"].delivered,
            vec![Some(5.0), Some(20.0)]
        );
        assert_eq!(v.subscriptions["a/hook"].failed, vec![Some(0.5), Some(2.0)]);
        assert!(r.view(Some("b"), true, None).queues.is_empty());
        assert!(r.view(Some("b"), true, None).subscriptions.is_empty());
        let only_a = r.view(Some("a"), true, None);
        assert_eq!((only_a.queues.len(), only_a.subscriptions.len()), (1, 1));
        assert!(r.view(None, false, None).queues.is_empty());
        assert!(r.view(None, false, None).subscriptions.is_empty());
        let last = r.view(None, true, Some(1));
        assert_eq!(last.t, vec![4.0]);
        assert_eq!(last.queues["a"].published, vec![Some(200.0)]);
    }
}
