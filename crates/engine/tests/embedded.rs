//! The conformance suite and the recovery tests for the embedded backend.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use sluice_engine::conformance::{Harness, T0};
use sluice_engine::embedded::{EmbeddedOptions, EmbeddedStore};
use sluice_engine::Store;

struct Embedded {
    dir: tempfile::TempDir,
}

#[async_trait]
impl Harness for Embedded {
    async fn open(&mut self) -> Arc<dyn Store> {
        let (s, _) = EmbeddedStore::open(self.dir.path(), EmbeddedOptions::default(), T0).unwrap();
        Arc::new(s)
    }
}

fn embedded() -> Embedded {
    Embedded {
        dir: tempfile::tempdir().unwrap(),
    }
}

mod conformance {
    use super::*;
    sluice_engine::conformance_suite!(embedded());
}

mod recovery {
    use super::*;
    use sluice_engine::{Engine, EngineOptions, ManualClock, Publish, ReceiveOptions};

    async fn write_messages(dir: &std::path::Path, n: usize) {
        let (s, _) = EmbeddedStore::open(dir, EmbeddedOptions::default(), T0).unwrap();
        let e = Engine::new(
            Arc::new(s),
            Arc::new(ManualClock::new(T0)),
            EngineOptions::default(),
        );
        for i in 0..n {
            e.publish(
                "q",
                vec![Publish {
                    body: format!("message-{i}").into_bytes(),
                    ..Default::default()
                }],
            )
            .await
            .unwrap();
        }
        e.close().await.unwrap();
    }

    /// A segment's written part (segments are pre-sized with zeros).
    fn written(path: &std::path::Path) -> Vec<u8> {
        let mut b = std::fs::read(path).unwrap();
        let end = b.iter().rposition(|&x| x != 0).map(|i| i + 1).unwrap_or(0);
        b.truncate(end);
        b
    }

    fn segments(dir: &std::path::Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("log"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "seg"))
            .collect();
        v.sort();
        v
    }

    async fn count_after_open(dir: &std::path::Path) -> (usize, Vec<String>) {
        let (s, report) = EmbeddedStore::open(dir, EmbeddedOptions::default(), T0).unwrap();
        let e = Engine::new(
            Arc::new(s),
            Arc::new(ManualClock::new(T0)),
            EngineOptions::default(),
        );
        let mut bodies = Vec::new();
        loop {
            let got = e
                .receive(
                    "q",
                    ReceiveOptions {
                        max_messages: 100,
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            if got.is_empty() {
                break;
            }
            bodies.extend(
                got.into_iter()
                    .map(|d| String::from_utf8(d.message.body).unwrap()),
            );
        }
        e.close().await.unwrap();
        (report.dropped.len() + report.corrupt.len(), bodies)
    }

    /// Cut the log at every offset of its last frames: recovery keeps exactly the whole frames
    /// before the cut, never refuses to start, and reports the dropped tail.
    #[tokio::test]
    async fn torn_tail_at_every_offset() {
        let src = tempfile::tempdir().unwrap();
        write_messages(src.path(), 5).await;
        let seg = segments(src.path()).pop().unwrap();
        let full = written(&seg);
        let frame = full.len() / 5;
        for cut in (full.len() - 2 * frame)..full.len() {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("log")).unwrap();
            for catalog in ["queues.json", "queues.log"] {
                if src.path().join(catalog).exists() {
                    std::fs::copy(src.path().join(catalog), dir.path().join(catalog)).unwrap();
                }
            }
            std::fs::write(
                dir.path().join("log").join(seg.file_name().unwrap()),
                &full[..cut],
            )
            .unwrap();
            let (dropped, bodies) = count_after_open(dir.path()).await;
            let whole = cut / frame;
            assert_eq!(bodies.len(), whole, "cut at {cut}");
            assert_eq!(dropped, usize::from(cut % frame != 0), "cut at {cut}");
            for (i, b) in bodies.iter().enumerate() {
                assert_eq!(b, &format!("message-{i}"));
            }
        }
    }

    /// A flipped byte inside a record is caught by its checksum: the records before it survive,
    /// the damage is reported, the store opens and keeps working.
    #[tokio::test]
    async fn flipped_byte_is_detected_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        write_messages(dir.path(), 10).await;
        let seg = segments(dir.path()).pop().unwrap();
        let mut bytes = std::fs::read(&seg).unwrap();
        let mid = written(&seg).len() / 2;
        bytes[mid] ^= 0xFF;
        std::fs::write(&seg, &bytes).unwrap();
        let (problems, bodies) = count_after_open(dir.path()).await;
        assert_eq!(problems, 1);
        // Reading resumes at the next good record: only the damaged message is lost.
        assert_eq!(bodies.len(), 9, "{bodies:?}");
        // And the store still accepts and serves new messages after the damage.
        write_messages(dir.path(), 1).await;
        let (_, after) = count_after_open(dir.path()).await;
        assert_eq!(after.len(), bodies.len() + 1);
    }

    /// Acked messages' segments are reclaimed by housekeeping once nothing live is in them.
    #[tokio::test]
    async fn segments_are_reclaimed() {
        let dir = tempfile::tempdir().unwrap();
        write_messages(dir.path(), 20).await;
        write_messages(dir.path(), 20).await; // a restart starts a new segment
        let before = segments(dir.path()).len();
        assert!(before >= 2);
        let (s, _) = EmbeddedStore::open(dir.path(), EmbeddedOptions::default(), T0).unwrap();
        let e = Engine::new(
            Arc::new(s),
            Arc::new(ManualClock::new(T0)),
            EngineOptions::default(),
        );
        let got = e
            .receive(
                "q",
                ReceiveOptions {
                    max_messages: 100,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let receipts: Vec<String> = got.iter().map(|d| e.receipt("q", &d.receipt)).collect();
        assert!(e
            .ack("q", &receipts)
            .await
            .unwrap()
            .iter()
            .all(|r| r.is_ok()));
        e.tick().await.unwrap();
        let after = segments(dir.path());
        assert_eq!(after.len(), 1, "only the active segment is left: {after:?}");
        e.close().await.unwrap();
    }

    /// Messages written into zero-filled spare segments (spare.rs) read back after a restart,
    /// in order, like those of sparse segments; the spare left behind is not replayed.
    #[tokio::test]
    async fn messages_in_spare_segments_survive_a_restart() {
        use std::os::unix::fs::MetadataExt;
        const SEG: u64 = 64 * 1024;
        let dir = tempfile::tempdir().unwrap();
        let opts = EmbeddedOptions {
            segment_bytes: SEG,
            spare_after_bytes: 4 * 1024,
            ..EmbeddedOptions::default()
        };
        let (s, _) = EmbeddedStore::open(dir.path(), opts, T0).unwrap();
        let e = Engine::new(
            Arc::new(s),
            Arc::new(ManualClock::new(T0)),
            EngineOptions::default(),
        );
        // Segments whose blocks were all written before any record: the spares taken.
        let spares_taken = || {
            segments(dir.path())
                .iter()
                .filter(|p| std::fs::metadata(p).unwrap().blocks() * 512 >= SEG)
                .count()
        };
        let mut n = 0;
        while n < 400 || spares_taken() < 2 {
            assert!(n < 20_000, "no spare segment was taken");
            e.publish(
                "q",
                vec![Publish {
                    body: format!("message-{n}-{}", "x".repeat(300)).into_bytes(),
                    ..Default::default()
                }],
            )
            .await
            .unwrap();
            n += 1;
        }
        e.close().await.unwrap();
        drop(e);
        let (problems, bodies) = count_after_open(dir.path()).await;
        assert_eq!(problems, 0);
        assert_eq!(bodies.len(), n);
        for (i, b) in bodies.iter().enumerate() {
            assert!(b.starts_with(&format!("message-{i}-")), "{i}: {b}");
        }
    }

    #[tokio::test]
    async fn a_second_process_cannot_open_the_same_directory() {
        let dir = tempfile::tempdir().unwrap();
        let (_s, _) = EmbeddedStore::open(dir.path(), EmbeddedOptions::default(), T0).unwrap();
        assert!(EmbeddedStore::open(dir.path(), EmbeddedOptions::default(), T0).is_err());
    }
}

mod compaction {
    use super::*;
    use sluice_engine::{Engine, EngineOptions, ManualClock, Publish, ReceiveOptions};

    fn small() -> EmbeddedOptions {
        EmbeddedOptions {
            segment_bytes: 16 * 1024,
            compact_interval_ms: 0,
            ..EmbeddedOptions::default()
        }
    }

    fn segment_count(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir.join("log"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "seg")
            })
            .count()
    }

    async fn open(dir: &std::path::Path, clock: &ManualClock) -> std::sync::Arc<Engine> {
        let (s, _) = EmbeddedStore::open(dir, small(), T0).unwrap();
        Engine::new(
            Arc::new(s),
            Arc::new(clock.clone()),
            EngineOptions::default(),
        )
    }

    /// Receive and ack everything in `queue`, 100 at a time.
    async fn drain(e: &Engine, queue: &str) {
        loop {
            let got = e
                .receive(
                    queue,
                    ReceiveOptions {
                        max_messages: 100,
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            if got.is_empty() {
                return;
            }
            let r: Vec<String> = got.iter().map(|d| e.receipt(queue, &d.receipt)).collect();
            e.ack(queue, &r).await.unwrap();
        }
    }

    /// One long-lived message no longer keeps every later segment on disk.
    #[tokio::test]
    async fn a_long_lived_message_is_copied_forward_and_dead_segments_go() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(T0);
        let e = open(dir.path(), &clock).await;
        let body = |s: &str| Publish {
            body: s.as_bytes().to_vec(),
            ..Default::default()
        };
        e.publish("keep", vec![body("the keeper")]).await.unwrap();
        // Receive it once, so its state (receive count) must survive the copy.
        let d = e
            .receive(
                "keep",
                ReceiveOptions {
                    visibility_timeout_seconds: Some(1),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(d.len(), 1);
        // Fill several segments with messages that are then acked.
        for i in 0..400 {
            e.publish("churn", vec![body(&format!("{i:0>200}"))])
                .await
                .unwrap();
        }
        drain(&e, "churn").await;
        let before = segment_count(dir.path());
        assert!(before >= 5, "the churn spans segments: {before}");
        clock.advance(std::time::Duration::from_secs(2));
        e.tick().await.unwrap(); // compacts the keeper's segment
        e.tick().await.unwrap(); // deletes the dead prefix
        let after = segment_count(dir.path());
        assert!(after <= 2, "dead segments deleted: {before} -> {after}");
        e.close().await.unwrap();
        drop(e);

        let e = open(dir.path(), &clock).await;
        let got = e
            .receive(
                "keep",
                ReceiveOptions {
                    max_messages: 10,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(got.len(), 1, "exactly one copy after a restart");
        assert_eq!(got[0].message.body, b"the keeper");
        assert_eq!(
            got[0].message.receive_count, 2,
            "its receive count was kept"
        );
        assert_eq!(
            e.stats("churn").await.unwrap().ready,
            0,
            "acked messages stay acked"
        );
        // The copy is all that is left of the keeper: records after it still count. Acked
        // now, it stays acked (before, the copy came back at every restart).
        let r = e.receipt("keep", &got[0].receipt);
        assert_eq!(e.ack("keep", &[r]).await.unwrap()[0], Ok(()));
        e.close().await.unwrap();
        drop(e);
        let e = open(dir.path(), &clock).await;
        assert_eq!(e.stats("keep").await.unwrap().ready, 0, "acked stays acked");
        e.close().await.unwrap();
    }

    /// Idempotency keys outlive the segments holding their messages: when the segment of an
    /// acked message is deleted, its key (still in the window) is carried forward.
    #[tokio::test]
    async fn dedup_keys_survive_the_deletion_of_their_segments() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(T0);
        let e = open(dir.path(), &clock).await;
        let keyed = |i: usize| Publish {
            body: format!("{i:0>200}").into_bytes(),
            dedup_id: Some(format!("key-{i}")),
            ..Default::default()
        };
        let mut first = Vec::new();
        for i in 0..400 {
            first.push(e.publish("idem", vec![keyed(i)]).await.unwrap()[0]);
        }
        drain(&e, "idem").await;
        let before = segment_count(dir.path());
        e.tick().await.unwrap();
        e.tick().await.unwrap();
        let after = segment_count(dir.path());
        assert!(after < before, "segments were deleted: {before} -> {after}");
        e.close().await.unwrap();
        drop(e);
        let e = open(dir.path(), &clock).await;
        for (i, id) in first.iter().enumerate() {
            let again = e
                .publish_detailed("idem", vec![keyed(i)], sluice_engine::IfMissing::Refuse)
                .await
                .unwrap();
            assert!(again[0].duplicate, "key-{i} was forgotten");
            assert_eq!(again[0].id, *id);
        }
        assert_eq!(e.stats("idem").await.unwrap().ready, 0);
        e.close().await.unwrap();
    }
}
