//! The embedded store's catalog and what recovery reports about it: a lost catalog never mixes
//! queues (ids are not reused; unknown ids' segments are set aside and reported), torn
//! segment tails and torn catalog lines are storage problems, and creating a queue appends
//! one line instead of rewriting the catalog.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use sluice_engine::conformance::T0;
use sluice_engine::embedded::{EmbeddedOptions, EmbeddedStore};
use sluice_engine::{Engine, EngineOptions, ManualClock, Publish, QueueConfigPatch};

fn open(dir: &Path) -> Arc<Engine> {
    let (s, _) = EmbeddedStore::open(dir, EmbeddedOptions::default(), T0).unwrap();
    Engine::new(
        Arc::new(s),
        Arc::new(ManualClock::new(T0)),
        EngineOptions::default(),
    )
}

async fn send(e: &Engine, q: &str, n: usize) {
    for i in 0..n {
        e.publish(
            q,
            vec![Publish {
                body: format!("{q}-{i}").into_bytes(),
                ..Default::default()
            }],
        )
        .await
        .unwrap();
    }
}

/// Close the store (as a clean shutdown does) and let it go.
async fn close(e: Arc<Engine>) {
    e.close().await.unwrap();
    drop(e);
}

fn problems(e: &Engine) -> String {
    e.store_info().problems.join("\n")
}

/// Before: with `queues.json` gone, the store opened with no problem, a new queue took the
/// old queue's id, and after the next restart showed the old queue's messages.
#[tokio::test]
async fn a_lost_catalog_never_mixes_queues() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    send(&e, "old", 3).await;
    close(e).await;
    for f in ["queues.json", "queues.log"] {
        let _ = std::fs::remove_file(dir.path().join(f));
    }

    let e = open(dir.path());
    let p = problems(&e);
    assert!(
        p.contains("not in the catalog") && p.contains("3 messages"),
        "{p}"
    );
    send(&e, "new", 1).await;
    assert_eq!(e.stats("new").await.unwrap().ready, 1);
    close(e).await;

    let e = open(dir.path());
    assert_eq!(
        e.stats("new").await.unwrap().ready,
        1,
        "the new queue did not take the old queue's messages"
    );
    let kept = std::fs::read_dir(dir.path().join("set-aside"))
        .unwrap()
        .count();
    assert!(kept >= 1, "the old messages' segment is kept aside");
    assert!(problems(&e).contains("set-aside"), "{}", problems(&e));
    close(e).await;
}

/// A segment cut in the middle of a frame (a crash during a write) is listed in
/// `storage_problems`, not only logged.
#[tokio::test]
async fn a_torn_segment_tail_is_a_storage_problem() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    send(&e, "q", 5).await;
    close(e).await;
    let seg = std::fs::read_dir(dir.path().join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    bytes.truncate(end - 3);
    std::fs::write(&seg, &bytes).unwrap();
    let e = open(dir.path());
    assert_eq!(e.stats("q").await.unwrap().ready, 4);
    let p = problems(&e);
    assert!(p.contains("dropped"), "{p}");
    close(e).await;
}

/// Creating a queue appends one short line to `queues.log`; `queues.json` is not rewritten
/// (before: the whole catalog was rewritten and synced on every create).
#[tokio::test]
async fn creating_a_queue_appends_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    for i in 0..300 {
        e.put_queue(&format!("a{i}"), QueueConfigPatch::default())
            .await
            .unwrap();
    }
    close(e).await;
    let e = open(dir.path());
    let snapshot = std::fs::metadata(dir.path().join("queues.json")).unwrap();
    for i in 0..500 {
        e.put_queue(&format!("b{i}"), QueueConfigPatch::default())
            .await
            .unwrap();
    }
    let after = std::fs::metadata(dir.path().join("queues.json")).unwrap();
    assert_eq!(
        (after.ino(), after.len()),
        (snapshot.ino(), snapshot.len()),
        "queues.json was not rewritten"
    );
    let log = std::fs::read_to_string(dir.path().join("queues.log")).unwrap();
    assert_eq!(log.lines().count(), 500);
    assert!(log.lines().all(|l| l.len() < 1024));
    close(e).await;
    let e = open(dir.path());
    assert_eq!(e.queue_infos().await.unwrap().len(), 800);
    close(e).await;
}

/// A torn last line of `queues.log` (a crash while a queue change was written) is dropped and
/// reported; the queues before it are there, and the next start is clean.
#[tokio::test]
async fn a_torn_catalog_line_is_dropped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    send(&e, "a", 1).await;
    send(&e, "b", 1).await;
    close(e).await;
    let log = dir.path().join("queues.log");
    let mut text = std::fs::read(&log).unwrap();
    text.extend_from_slice(br#"{"put":{"id":9,"na"#);
    std::fs::write(&log, text).unwrap();
    let e = open(dir.path());
    assert!(problems(&e).contains("torn last line"), "{}", problems(&e));
    assert_eq!(e.stats("a").await.unwrap().ready, 1);
    assert_eq!(e.stats("b").await.unwrap().ready, 1);
    send(&e, "c", 1).await;
    close(e).await;
    let e = open(dir.path());
    assert!(problems(&e).is_empty(), "{}", problems(&e));
    assert_eq!(e.stats("c").await.unwrap().ready, 1);
    close(e).await;
}
