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
        (report.dropped.len(), bodies)
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
            std::fs::copy(
                src.path().join("queues.json"),
                dir.path().join("queues.json"),
            )
            .unwrap();
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
        let (dropped, bodies) = count_after_open(dir.path()).await;
        assert_eq!(dropped, 1);
        assert!(bodies.len() < 10 && bodies.len() >= 4, "{}", bodies.len());
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
        let receipts: Vec<String> = got.iter().map(|d| d.receipt.encode()).collect();
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

    #[tokio::test]
    async fn a_second_process_cannot_open_the_same_directory() {
        let dir = tempfile::tempdir().unwrap();
        let (_s, _) = EmbeddedStore::open(dir.path(), EmbeddedOptions::default(), T0).unwrap();
        assert!(EmbeddedStore::open(dir.path(), EmbeddedOptions::default(), T0).is_err());
    }
}
