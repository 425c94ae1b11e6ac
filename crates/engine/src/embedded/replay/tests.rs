//! Recovery's own tests: which messages pass 1 tracks (`named_keys`), and that records
//! reach the newest incarnation of an id either way.

use super::*;
use crate::embedded::catalog::CatalogQueue;
use crate::embedded::log::Log;
use crate::model::{QueueConfig, QueueInfo};

fn publish(id: u128) -> Record<'static> {
    Record::Publish(record::PublishRec {
        queue: 1,
        id,
        enqueued_at: 1,
        visible_at: 0,
        receive_count: 0,
        nonce: 0,
        first_received_at: 0,
        source: 0,
        group: "",
        dedup: "",
        attributes: vec![],
        body: b"b",
        relocated: false,
        priority: crate::limits::PRIORITY_DEFAULT,
        expires_at: 0,
    })
}

/// Ready messages after recovering `records` (plus `tail` bytes after them): (id, receive
/// count) in delivery order.
fn recover(records: &[Record<'_>], tail: &[u8]) -> Vec<(u128, u32)> {
    let dir = tempfile::tempdir().unwrap();
    let mut seg = Vec::new();
    records.iter().for_each(|r| _ = r.encode_frame(&mut seg));
    seg.extend_from_slice(tail);
    std::fs::write(Log::segment_path(dir.path(), 1), seg).unwrap();
    let info = QueueInfo {
        name: "q".into(),
        config: QueueConfig::default(),
        created_at: 0,
        updated_at: 0,
    };
    let catalog = Catalog {
        next_queue_id: 2,
        queues: vec![CatalogQueue { id: 1, info }],
    };
    let (mut state, _) = replay(&catalog, dir.path(), 10).unwrap();
    let ready = &mut state.queues.get_mut(&1).unwrap().ready;
    std::iter::from_fn(|| ready.pop(&mut |_| false))
        .map(|e| (e.id(), e.receive_count))
        .collect()
}

/// Only the messages a later record names are tracked through pass 1 (`named_keys`). An
/// id published again after its ack is a new incarnation, and the records after it apply
/// to it, not to the acked one, whether or not the log is damaged (then every message is
/// tracked).
#[test]
fn records_apply_to_the_newest_incarnation_tracked_or_not() {
    let receive = |id, receive_count| Record::Receive {
        queue: 1,
        id,
        receive_count,
        nonce: 1,
        first_received_at: 5,
    };
    let log = [
        publish(7),
        receive(7, 1),
        Record::Ack { queue: 1, id: 7 },
        publish(8), // no later record names it
        publish(7), // again, after its ack
        receive(7, 3),
        publish(9),
        receive(9, 2),
    ];
    let expected = vec![(8, 0), (7, 3), (9, 2)];
    assert_eq!(recover(&log, &[]), expected);
    let torn = [40u8, 0, 0, 0, 1, 2, 3, 4, 1];
    assert_eq!(
        recover(&log, &torn),
        expected,
        "a torn tail: every message tracked"
    );
}
