//! Redis as a reliable queue (the LMOVE pattern). Durability comes from the server's settings:
//! `--appendonly yes --appendfsync always` makes Redis fsync the AOF before it replies to a
//! write, so a reply is the durability ack.
//!
//! - publish: `LPUSH queue body`
//! - publish-batch: `LPUSH queue b1 .. b10` (one command, one AOF write)
//! - receive-ack: a pipeline of `LMOVE queue processing:<worker> RIGHT LEFT` x batch (receive:
//!   each message moves atomically to this worker's processing list, so a crash loses nothing),
//!   then a pipeline of `LREM processing:<worker> 1 body` for each (ack).
//! - prefill: `LPUSH` with 1,000 values per command.

use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Client};

use crate::driver::{body, Mode, Seq, System, Worker};
use crate::Args;

pub struct Redis {
    client: Client,
    queue: String,
    size: usize,
    connections: usize,
}

impl Redis {
    pub fn new(args: &Args) -> anyhow::Result<Redis> {
        Ok(Redis {
            client: Client::open(args.url())?,
            queue: args.queue(':'),
            size: args.size,
            connections: args.connections,
        })
    }

    async fn connect(&self) -> anyhow::Result<MultiplexedConnection> {
        // The default 500 ms response timeout is too short for fsync-per-write under load.
        let config = AsyncConnectionConfig::new()
            .set_response_timeout(Some(Duration::from_secs(60)))
            .set_connection_timeout(Some(Duration::from_secs(10)));
        Ok(self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?)
    }

    fn processing(&self, index: usize) -> String {
        format!("{}:processing:{index}", self.queue)
    }

    async fn delete_all(&self) -> anyhow::Result<()> {
        let mut con = self.connect().await?;
        let mut del = ::redis::cmd("DEL");
        del.arg(&self.queue);
        for i in 0..self.connections {
            del.arg(self.processing(i));
        }
        del.query_async::<()>(&mut con).await?;
        Ok(())
    }
}

impl System for Redis {
    type W = RedisWorker;

    async fn prepare(&self) -> anyhow::Result<()> {
        self.delete_all().await
    }

    async fn worker(&self, index: usize, mode: Mode) -> anyhow::Result<RedisWorker> {
        Ok(RedisWorker {
            con: self.connect().await?,
            queue: self.queue.clone(),
            processing: self.processing(index),
            size: self.size,
            seq: Seq::new(index),
            mode,
        })
    }

    async fn cleanup(&self) -> anyhow::Result<()> {
        self.delete_all().await
    }
}

pub struct RedisWorker {
    con: MultiplexedConnection,
    queue: String,
    processing: String,
    size: usize,
    seq: Seq,
    mode: Mode,
}

impl RedisWorker {
    async fn push(&mut self, n: usize) -> anyhow::Result<u64> {
        let mut cmd = ::redis::cmd("LPUSH");
        cmd.arg(&self.queue);
        for _ in 0..n {
            cmd.arg(body(self.size, self.seq.next()));
        }
        cmd.query_async::<i64>(&mut self.con).await?;
        Ok(n as u64)
    }

    async fn receive_ack(&mut self, n: usize) -> anyhow::Result<u64> {
        let mut pipe = ::redis::pipe();
        for _ in 0..n {
            pipe.cmd("LMOVE")
                .arg(&self.queue)
                .arg(&self.processing)
                .arg("RIGHT")
                .arg("LEFT");
        }
        let got: Vec<Option<Vec<u8>>> = pipe.query_async(&mut self.con).await?;
        let got: Vec<Vec<u8>> = got.into_iter().flatten().collect();
        if got.is_empty() {
            return Ok(0);
        }
        let mut ack = ::redis::pipe();
        for b in &got {
            ack.cmd("LREM").arg(&self.processing).arg(1).arg(b);
        }
        let removed: Vec<i64> = ack.query_async(&mut self.con).await?;
        let acked = removed.iter().sum::<i64>();
        if acked != got.len() as i64 {
            anyhow::bail!("LREM removed {acked} of {} received", got.len());
        }
        Ok(acked as u64)
    }
}

impl Worker for RedisWorker {
    async fn op(&mut self) -> anyhow::Result<u64> {
        match self.mode {
            Mode::Publish(n) => self.push(n).await,
            Mode::Fill => self.push(1000).await,
            Mode::ReceiveAck(n) => self.receive_ack(n).await,
        }
    }
}
