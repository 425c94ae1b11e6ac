//! The Redis store's side data, outside the queues: settings (`meta`), the outcomes of finished
//! timers (`archive`), the attempts log (`hist/...`) and node heartbeats (`nodes`). Each is a
//! plain hash, list or sorted set under the global hash tag, so one command or pipeline reads or
//! writes it; only the attempts log needs a script (`history.lua`), to cap its lists in one step.

use redis::Value;

use crate::clock::Millis;
use crate::error::Result;
use crate::model::MessageId;

use super::reply::{hex, unhex};
use super::RedisStore;

pub(super) async fn meta_put(store: &RedisStore, key: &str, value: Option<String>) -> Result<()> {
    let mut conn = store.conn.clone();
    let cmd = match &value {
        Some(v) => {
            let mut c = redis::cmd("HSET");
            c.arg(store.global("meta")).arg(key).arg(v);
            c
        }
        None => {
            let mut c = redis::cmd("HDEL");
            c.arg(store.global("meta")).arg(key);
            c
        }
    };
    let _: i64 = store.ok(cmd.query_async(&mut conn).await)?;
    store.replicate(&store.global("meta")).await?;
    // Only settings other nodes keep in memory are announced (not ingestion checkpoints).
    if key.starts_with("sub/") || key.starts_with("schedule/") {
        store.announce(&format!("meta:{key}")).await;
    }
    Ok(())
}

pub(super) async fn meta_list(store: &RedisStore, prefix: &str) -> Result<Vec<(String, String)>> {
    let mut conn = store.conn.clone();
    let mut all: Vec<(String, String)> = store.ok(redis::cmd("HGETALL")
        .arg(store.global("meta"))
        .query_async(&mut conn)
        .await)?;
    all.retain(|(k, _)| k.starts_with(prefix));
    all.sort();
    Ok(all)
}

pub(super) async fn archive_put(store: &RedisStore, entries: &[(MessageId, u8)]) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut conn = store.conn.clone();
    let mut cmd = redis::cmd("HSET");
    cmd.arg(store.global("archive"));
    for (id, code) in entries {
        cmd.arg(hex(*id)).arg(*code);
    }
    let _: i64 = store.ok(cmd.query_async(&mut conn).await)?;
    // Not announced: timer outcomes are many, and other nodes read one fresh when they
    // need it (Engine::timer_fresh, timer_outcome_fresh) and all of them every 10 s.
    store.replicate(&store.global("archive")).await?;
    Ok(())
}

pub(super) async fn archive_list(store: &RedisStore) -> Result<Vec<(MessageId, u8)>> {
    let mut conn = store.conn.clone();
    let all: Vec<(String, u8)> = store.ok(redis::cmd("HGETALL")
        .arg(store.global("archive"))
        .query_async(&mut conn)
        .await)?;
    all.into_iter()
        .map(|(k, v)| Ok((unhex(k.as_bytes())?, v)))
        .collect()
}

pub(super) async fn history_put(
    store: &RedisStore,
    key: &str,
    ids: &[MessageId],
    attempt: String,
    at: Millis,
    expires_at: Millis,
) -> Result<()> {
    use crate::history::limits as hl;
    let mut conn = store.conn.clone();
    let mut inv = store.scripts.history.prepare_invoke();
    inv.key(store.global(&format!("hist/k/{key}")));
    for id in ids {
        inv.key(store.global(&format!("hist/{}", hex(*id))));
    }
    inv.arg(attempt)
        .arg(at)
        .arg((expires_at - at).max(1))
        .arg(hl::ATTEMPTS_PER_MESSAGE)
        .arg(hl::RECENT_PER_KEY);
    for id in ids {
        inv.arg(hex(*id));
    }
    let _: Value = store.ok(inv.invoke_async(&mut conn).await)?;
    store.replicate(&store.global("hist")).await
}

pub(super) async fn history_get(
    store: &RedisStore,
    ids: &[MessageId],
    _now: Millis,
) -> Result<Vec<Vec<String>>> {
    let mut conn = store.conn.clone();
    let mut pipe = redis::pipe();
    for id in ids {
        pipe.cmd("LRANGE")
            .arg(store.global(&format!("hist/{}", hex(*id))))
            .arg(0)
            .arg(-1);
    }
    store.ok(pipe.query_async(&mut conn).await)
}

pub(super) async fn history_recent(
    store: &RedisStore,
    key: &str,
    limit: usize,
    _now: Millis,
) -> Result<Vec<MessageId>> {
    let mut conn = store.conn.clone();
    let ids: Vec<String> = store.ok(redis::cmd("ZREVRANGE")
        .arg(store.global(&format!("hist/k/{key}")))
        .arg(0)
        .arg(limit.saturating_sub(1))
        .query_async(&mut conn)
        .await)?;
    ids.iter().map(|s| unhex(s.as_bytes())).collect()
}

pub(super) async fn heartbeat(
    store: &RedisStore,
    node: &str,
    info: String,
    now: Millis,
) -> Result<Vec<String>> {
    let mut conn = store.conn.clone();
    let key = store.global("nodes");
    let (_, _, all): (i64, i64, Vec<String>) = store.ok(redis::pipe()
        .cmd("HSET")
        .arg(&key)
        .arg(node)
        .arg(format!("{now} {info}"))
        .cmd("PEXPIRE")
        .arg(&key)
        .arg(60_000)
        .cmd("HVALS")
        .arg(&key)
        .query_async(&mut conn)
        .await)?;
    let mut alive = Vec::new();
    for v in all {
        if let Some((at, info)) = v.split_once(' ') {
            if at.parse::<Millis>().is_ok_and(|at| now - at <= 10_000) {
                alive.push(info.to_string());
            }
        }
    }
    alive.sort();
    Ok(alive)
}

pub(super) async fn archive_get(store: &RedisStore, id: MessageId) -> Result<Option<u8>> {
    let mut conn = store.conn.clone();
    store.ok(redis::cmd("HGET")
        .arg(store.global("archive"))
        .arg(hex(id))
        .query_async(&mut conn)
        .await)
}
