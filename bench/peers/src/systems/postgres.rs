//! PostgreSQL as a queue table (the SKIP LOCKED pattern) through tokio-postgres. Durability:
//! the server runs with fsync=on and synchronous_commit=on, so a commit returns only once its
//! WAL is flushed to disk.
//!
//! Table: `bench_<workload> (id bigserial primary key, body text not null)`.
//! - publish: `INSERT INTO t (body) VALUES ($1)` (autocommit: one commit each)
//! - publish-batch: one `INSERT ... VALUES ($1), ($2), ... ($10)` (one commit for 10 rows)
//! - receive-ack: `BEGIN; SELECT id, body FROM t ORDER BY id LIMIT 10 FOR UPDATE SKIP LOCKED;`
//!   (receive: the rows stay locked to this consumer, and come back if it dies)
//!   `DELETE FROM t WHERE id = ANY($1); COMMIT` (ack)
//! - prefill: `INSERT INTO t (body) SELECT $1 FROM generate_series(1, 10000)`, then ANALYZE

use anyhow::Context as _;
use tokio_postgres::{Client, NoTls, Statement};

use crate::driver::{body, Mode, Seq, System, Worker};
use crate::Args;

const FILL_CHUNK: i32 = 10_000;

pub struct Postgres {
    url: String,
    table: String,
    size: usize,
}

impl Postgres {
    pub fn new(args: &Args) -> Postgres {
        Postgres {
            url: args.url(),
            table: args.queue('_'),
            size: args.size,
        }
    }
}

async fn connect(url: &str) -> anyhow::Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("peers: postgres connection: {e}");
        }
    });
    Ok(client)
}

impl System for Postgres {
    type W = PostgresWorker;

    async fn prepare(&self) -> anyhow::Result<()> {
        let c = connect(&self.url).await?;
        let t = &self.table;
        c.batch_execute(&format!(
            "DROP TABLE IF EXISTS {t};
             CREATE TABLE {t} (id bigserial PRIMARY KEY, body text NOT NULL);"
        ))
        .await?;
        // Refuse to measure a server that does not make commits durable.
        for setting in ["fsync", "synchronous_commit"] {
            let v: String = c.query_one(&format!("SHOW {setting}"), &[]).await?.get(0);
            if v != "on" {
                anyhow::bail!("postgres has {setting}={v}; the benchmark needs it on");
            }
        }
        Ok(())
    }

    async fn worker(&self, index: usize, mode: Mode) -> anyhow::Result<PostgresWorker> {
        let client = connect(&self.url).await?;
        let t = &self.table;
        let (insert, delete) = match mode {
            Mode::Publish(n) => {
                let values: Vec<String> = (1..=n).map(|i| format!("(${i})")).collect();
                let sql = format!("INSERT INTO {t} (body) VALUES {}", values.join(", "));
                (client.prepare(&sql).await?, None)
            }
            Mode::Fill => {
                let sql = format!(
                    "INSERT INTO {t} (body) SELECT $1 FROM generate_series(1, {FILL_CHUNK})"
                );
                (client.prepare(&sql).await?, None)
            }
            Mode::ReceiveAck(n) => {
                let select = format!(
                    "SELECT id, body FROM {t} ORDER BY id LIMIT {n} FOR UPDATE SKIP LOCKED"
                );
                let delete = format!("DELETE FROM {t} WHERE id = ANY($1)");
                (
                    client.prepare(&select).await?,
                    Some(client.prepare(&delete).await?),
                )
            }
        };
        Ok(PostgresWorker {
            client,
            insert_or_select: insert,
            delete,
            size: self.size,
            seq: Seq::new(index),
            mode,
        })
    }

    async fn after_prefill(&self) -> anyhow::Result<()> {
        let c = connect(&self.url).await?;
        c.batch_execute(&format!("ANALYZE {}", self.table)).await?;
        Ok(())
    }

    async fn cleanup(&self) -> anyhow::Result<()> {
        let c = connect(&self.url).await?;
        c.batch_execute(&format!("DROP TABLE IF EXISTS {}", self.table))
            .await?;
        Ok(())
    }
}

pub struct PostgresWorker {
    client: Client,
    /// The INSERT (publish, fill) or the SELECT ... FOR UPDATE SKIP LOCKED (receive-ack).
    insert_or_select: Statement,
    delete: Option<Statement>,
    size: usize,
    seq: Seq,
    mode: Mode,
}

impl PostgresWorker {
    async fn publish(&mut self, n: usize) -> anyhow::Result<u64> {
        let bodies: Vec<String> = (0..n)
            .map(|_| String::from_utf8(body(self.size, self.seq.next())).expect("ascii"))
            .collect();
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            bodies.iter().map(|b| b as _).collect();
        let inserted = self.client.execute(&self.insert_or_select, &params).await?;
        Ok(inserted)
    }

    async fn fill(&mut self) -> anyhow::Result<u64> {
        let b = String::from_utf8(body(self.size, self.seq.next())).expect("ascii");
        Ok(self.client.execute(&self.insert_or_select, &[&b]).await?)
    }

    async fn receive_ack(&mut self) -> anyhow::Result<u64> {
        let delete = self
            .delete
            .clone()
            .expect("delete statement in receive-ack mode");
        let tx = self.client.transaction().await?;
        let rows = tx.query(&self.insert_or_select, &[]).await?;
        if rows.is_empty() {
            tx.rollback().await?;
            return Ok(0);
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        let deleted = tx.execute(&delete, &[&ids]).await?;
        tx.commit().await?;
        Ok(deleted)
    }
}

impl Worker for PostgresWorker {
    async fn op(&mut self) -> anyhow::Result<u64> {
        match self.mode {
            Mode::Publish(n) => self.publish(n).await,
            Mode::Fill => self.fill().await,
            Mode::ReceiveAck(_) => self.receive_ack().await,
        }
    }
}
