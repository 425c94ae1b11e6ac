//! The conformance suite against the Redis backend: once against a single redis-server and
//! once against a 3-master Redis Cluster, both started here on free loopback ports from the
//! Debian `redis-server` package (installed by `scripts/test`). They die with this process.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use sluice_engine::conformance::Harness;
use sluice_engine::redis_store::testing::{RedisCluster, RedisServer};
use sluice_engine::redis_store::{RedisOptions, RedisStore};
use sluice_engine::Store;

fn single() -> &'static str {
    static S: OnceLock<(RedisServer, String)> = OnceLock::new();
    &S.get_or_init(|| {
        let s = RedisServer::start(&[]);
        let url = s.url();
        (s, url)
    })
    .1
}

fn cluster() -> &'static str {
    static S: OnceLock<(RedisCluster, String)> = OnceLock::new();
    &S.get_or_init(|| {
        let c = RedisCluster::start();
        let url = c.url();
        (c, url)
    })
    .1
}

/// One test's data: a fresh key prefix on the shared servers. `open` again = a node restart.
struct Redis {
    url: &'static str,
    prefix: String,
}

#[async_trait]
impl Harness for Redis {
    async fn open(&mut self) -> Arc<dyn Store> {
        let store = RedisStore::open(RedisOptions {
            url: self.url.to_string(),
            prefix: self.prefix.clone(),
            ..RedisOptions::default()
        })
        .await
        .unwrap();
        Arc::new(store)
    }
}

fn prefix() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("t{}", N.fetch_add(1, Ordering::Relaxed))
}

fn on_single() -> Redis {
    Redis {
        url: single(),
        prefix: prefix(),
    }
}

fn on_cluster() -> Redis {
    Redis {
        url: cluster(),
        prefix: prefix(),
    }
}

mod conformance_single {
    use super::*;
    sluice_engine::conformance_suite!(on_single());
}

mod conformance_cluster {
    use super::*;
    sluice_engine::conformance_suite!(on_cluster());
}
