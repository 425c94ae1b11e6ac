//! The crash test: a server under concurrent publish/receive/ack load is killed with SIGKILL at
//! random moments and restarted, several times; then the queue is drained. Every publish that got
//! a 201 must be received at least once (acked before a kill, or drained after), and nothing that
//! was acked (200) before a kill may come back. An ack whose answer the kill cut off may have
//! happened or not: those messages may be drained or gone, and are counted apart.
//!
//! `SLUICE_CRASH_CYCLES` sets the number of cycles (default 4; the long test runs 100).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde_json::json;

use crate::common::{Http, Server};

#[derive(Default)]
struct Ledger {
    published: HashSet<String>,
    acked: HashSet<String>,
    /// Acks sent whose answer never came (the kill cut them off): they may or may not be done.
    ack_unknown: HashSet<String>,
    received: u64,
}

async fn publisher(h: Http, id: usize, ledger: Arc<Mutex<Ledger>>, cycle: usize) {
    let mut seq = 0u64;
    loop {
        seq += 1;
        let batch = seq.is_multiple_of(3);
        let bodies: Vec<String> = if batch {
            (0..5)
                .map(|k| format!("c{cycle}-p{id}-{seq}-{k}"))
                .collect()
        } else {
            vec![format!("c{cycle}-p{id}-{seq}")]
        };
        let body = if batch {
            json!({"messages": bodies.iter().map(|b| json!({"body": b})).collect::<Vec<_>>()})
        } else {
            json!({"body": bodies[0]})
        };
        let r =
            h.c.post(format!("{}/v1/queues/crash/messages", h.base))
                .json(&body)
                .send()
                .await;
        match r {
            Ok(r) if r.status() == 201 => {
                ledger.lock().unwrap().published.extend(bodies);
            }
            _ => return, // the server is gone
        }
    }
}

async fn consumer(h: Http, ledger: Arc<Mutex<Ledger>>) {
    loop {
        let r =
            h.c.post(format!("{}/v1/queues/crash/receive", h.base))
                .json(&json!({"max_messages": 10, "visibility_timeout_seconds": 600}))
                .send()
                .await;
        let Ok(r) = r else { return };
        let Ok(v) = r.json::<serde_json::Value>().await else {
            return;
        };
        let msgs = v["messages"].as_array().cloned().unwrap_or_default();
        if msgs.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let by_receipt: HashMap<String, String> = msgs
            .iter()
            .map(|m| {
                (
                    m["receipt"].as_str().unwrap().to_string(),
                    m["body"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        {
            let mut l = ledger.lock().unwrap();
            l.received += msgs.len() as u64;
            l.ack_unknown.extend(by_receipt.values().cloned());
        }
        let receipts: Vec<&String> = by_receipt.keys().collect();
        let r =
            h.c.post(format!("{}/v1/queues/crash/ack", h.base))
                .json(&json!({"receipts": receipts}))
                .send()
                .await;
        let Ok(r) = r else { return };
        if r.status() != 200 {
            return;
        }
        let Ok(v) = r.json::<serde_json::Value>().await else {
            return;
        };
        let failed: HashSet<String> = v["failed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["receipt"].as_str().unwrap().to_string())
            .collect();
        let mut l = ledger.lock().unwrap();
        for (receipt, body) in by_receipt {
            l.ack_unknown.remove(&body);
            if !failed.contains(&receipt) {
                l.acked.insert(body);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_loses_nothing_acknowledged() {
    let cycles: usize = std::env::var("SLUICE_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let mut s = Server::start().await;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut rng = rand::thread_rng();
    for cycle in 0..cycles {
        let h = Http::new(&s.base);
        let mut tasks = Vec::new();
        for p in 0..6 {
            tasks.push(tokio::spawn(publisher(h.clone(), p, ledger.clone(), cycle)));
        }
        for _ in 0..3 {
            tasks.push(tokio::spawn(consumer(h.clone(), ledger.clone())));
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(150..900))).await;
        s.kill();
        for t in tasks {
            t.await.unwrap();
        }
        s.spawn().await;
    }
    // Drain everything that is left.
    let h = Http::new(&s.base);
    let mut drained: Vec<String> = Vec::new();
    loop {
        let (_, v) = h
            .post(
                "/v1/queues/crash/receive",
                json!({"max_messages": 100, "visibility_timeout_seconds": 600}),
            )
            .await;
        let msgs = v["messages"].as_array().cloned().unwrap_or_default();
        if msgs.is_empty() {
            break;
        }
        drained.extend(msgs.iter().map(|m| m["body"].as_str().unwrap().to_string()));
    }
    let l = ledger.lock().unwrap();
    let drained_set: HashSet<&String> = drained.iter().collect();
    let lost: Vec<&String> = l
        .published
        .iter()
        .filter(|b| {
            !l.acked.contains(*b) && !l.ack_unknown.contains(*b) && !drained_set.contains(b)
        })
        .collect();
    let resurrected: Vec<&String> = l.acked.iter().filter(|b| drained_set.contains(b)).collect();
    let duplicates = drained.len() - drained_set.len();
    println!(
        "crash test: cycles={cycles} published_ok={} acked_ok={} ack_cut_off={} received={} drained={} lost={} resurrected={} duplicates_in_drain={duplicates}",
        l.published.len(),
        l.acked.len(),
        l.ack_unknown.len(),
        l.received,
        drained.len(),
        lost.len(),
        resurrected.len()
    );
    assert!(
        l.published.len() > 100,
        "the load did not run: {}",
        l.published.len()
    );
    assert!(
        lost.is_empty(),
        "acknowledged publishes lost: {:?}",
        &lost[..lost.len().min(10)]
    );
    assert!(
        resurrected.is_empty(),
        "acked messages came back: {:?}",
        &resurrected[..resurrected.len().min(10)]
    );
    assert_eq!(duplicates, 0, "a drain returned one message twice");
}

/// `sluice bench crash` (the published crash report, `scripts/crash-report`) runs its own
/// server, kills it under mixed load and finds everything acknowledged.
#[tokio::test]
async fn the_crash_report_runs() {
    let out = tokio::task::spawn_blocking(|| {
        std::process::Command::new(crate::common::BIN)
            .args(["--json", "bench", "crash", "--cycles", "2"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["per_cycle"].as_array().unwrap().len(), 2, "{v}");
    assert!(v["acknowledged"].as_u64().unwrap() > 100, "{v}");
    assert_eq!(v["lost"], 0, "{v}");
    assert_eq!(v["acked_then_returned"], 0, "{v}");
}
