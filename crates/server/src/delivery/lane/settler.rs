//! A lane's settler: records its answered requests (attempts in the history, copies removed,
//! retries, dead letters) through `PushManager::settle`, many at once, off the requests' path.
//!
//! Each settle is two group-committed writes (the history's log and the message log), so the
//! fewer settles, the fewer syncs. A lane of single messages sent in parallel answers a steady
//! stream, and a settle of only what was answered during the previous one carried a fraction
//! of a millisecond's answers. Such a lane's settler waits [`GATHER_WAIT`] for more when it has
//! fewer than [`GATHER_MIN`] (measured: BENCHMARKS.md, "Push: settles gathered"). No request
//! waits for a settle (its slot is free at the answer; only the lane's `UNSETTLED_MAX` places
//! are held), but what the settle applies comes 1-2 ms later: a retry's release time, a dead
//! letter, the observers, the subscription's counts. A FIFO lane does not wait (the group's
//! next message waits for the settle), nor do batches or `concurrency: 1`, whose requests are
//! fewer. The timer lane's settler does not either: gathering there changed nothing
//! measurable (the same section).

use std::sync::Arc;
use std::time::Duration;

use sluice_engine::push::SubscriptionRef;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use super::super::webhook::Answered;
use super::super::PushManager;

/// The most requests settled together.
const BATCH_MAX: usize = 500;
/// With fewer answered requests than this, a gathering settler waits [`GATHER_WAIT`] first.
const GATHER_MIN: usize = 64;
/// How long a small batch waits (tokio's timer rounds it up to the next millisecond tick).
const GATHER_WAIT: Duration = Duration::from_millis(1);

/// Settle the lane's answered requests in batches until the lane (every sender) is gone.
pub(super) async fn run(
    manager: Arc<PushManager>,
    sub: SubscriptionRef,
    mut answered: mpsc::UnboundedReceiver<(Answered, OwnedSemaphorePermit)>,
) {
    let gather = super::sends_singles_in_parallel(&sub);
    let mut batch = Vec::new();
    while answered.recv_many(&mut batch, BATCH_MAX).await > 0 {
        if gather {
            gather_more(&mut batch, &mut answered).await;
        }
        let (requests, places): (Vec<Answered>, Vec<OwnedSemaphorePermit>) =
            batch.drain(..).unzip();
        manager.settle(&sub, &requests).await;
        drop(places);
    }
}

/// A batch smaller than [`GATHER_MIN`]: wait [`GATHER_WAIT`], then take what was answered
/// meanwhile (up to [`BATCH_MAX`]).
async fn gather_more<T>(batch: &mut Vec<T>, answered: &mut mpsc::UnboundedReceiver<T>) {
    if batch.len() >= GATHER_MIN {
        return;
    }
    tokio::time::sleep(GATHER_WAIT).await;
    while batch.len() < BATCH_MAX {
        match answered.try_recv() {
            Ok(a) => batch.push(a),
            Err(_) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small batch takes in what is answered during the wait; a full one does not wait. The
    /// clock is tokio's paused one, so only the order of events decides.
    #[tokio::test(start_paused = true)]
    async fn a_small_batch_takes_what_is_answered_during_the_wait() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut batch = vec![1, 2, 3];
        // The task first runs once `gather_more` waits (one thread, the test's future first).
        let late = tokio::spawn(async move {
            tx.send(4).unwrap();
            tokio::time::sleep(GATHER_WAIT * 3).await;
            tx.send(5).unwrap();
        });
        let before = tokio::time::Instant::now();
        gather_more(&mut batch, &mut rx).await;
        assert!(before.elapsed() >= GATHER_WAIT, "{:?}", before.elapsed());
        assert_eq!(batch, [1, 2, 3, 4], "4 came during the wait, 5 after it");
        late.await.unwrap();

        let mut full: Vec<usize> = (0..GATHER_MIN).collect();
        let before = tokio::time::Instant::now();
        gather_more(&mut full, &mut rx).await;
        assert_eq!(
            before.elapsed(),
            Duration::ZERO,
            "a batch of GATHER_MIN does not wait"
        );
        assert_eq!(full.len(), GATHER_MIN);
        assert_eq!(rx.try_recv().ok(), Some(5), "5 is left for the next batch");
    }

    /// At most BATCH_MAX go in one settle, however many were answered during the wait.
    #[tokio::test(start_paused = true)]
    async fn a_gathered_batch_stops_at_the_most_settled_together() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        for i in 0..BATCH_MAX + 10 {
            tx.send(i).unwrap();
        }
        let mut batch = vec![];
        gather_more(&mut batch, &mut rx).await;
        assert_eq!(batch.len(), BATCH_MAX);
    }
}
