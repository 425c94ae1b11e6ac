//! NATS JetStream through async-nats: a stream with file storage and work-queue retention
//! (a message is removed once acked), one subject per workload.
//!
//! - publish: JetStream publish, then wait for the stream's PubAck
//! - publish-batch: 10 publishes sent back to back, then wait for all 10 PubAcks
//! - receive-ack: a durable pull consumer with explicit acks shared by all workers; each
//!   operation fetches up to batch messages (no wait: returns what is there) and double-acks
//!   each (an ack the server confirms), the 10 acks in flight together
//! - prefill: 1,000 publishes, then wait for all PubAcks
//!
//! Durability caveat: a PubAck means the message is in the stream's file store, not fsynced.
//! nats-server 2.9 (Debian 12) fsyncs its file store on an interval (2 minutes by default) and
//! has no per-message sync option (`sync_interval: always` arrived in 2.10), so NATS runs at a
//! weaker durability level than the other systems here.

use anyhow::{anyhow, bail};
use async_nats::jetstream::{self, consumer, stream, Context};
use futures_util::future::join_all;
use futures_util::StreamExt;

use crate::driver::{body, Mode, Seq, System, Worker};
use crate::{Args, Workload};

const CONSUMER: &str = "bench";

pub struct Nats {
    url: String,
    stream: String,
    subject: String,
    size: usize,
    workload: Workload,
}

impl Nats {
    pub fn new(args: &Args) -> Nats {
        Nats {
            url: args.url(),
            // Stream names may not contain '.'; subjects are dot-separated.
            stream: args.queue('_').to_uppercase(),
            subject: args.queue('.').replace('-', "_"),
            size: args.size,
            workload: args.workload,
        }
    }

    async fn context(&self) -> anyhow::Result<Context> {
        let client = async_nats::connect(self.url.as_str()).await?;
        Ok(jetstream::new(client))
    }
}

impl System for Nats {
    type W = NatsWorker;

    async fn prepare(&self) -> anyhow::Result<()> {
        let js = self.context().await?;
        let _ = js.delete_stream(&self.stream).await; // absent on a fresh server
        let s = js
            .create_stream(stream::Config {
                name: self.stream.clone(),
                subjects: vec![self.subject.clone()],
                storage: stream::StorageType::File,
                retention: stream::RetentionPolicy::WorkQueue,
                ..Default::default()
            })
            .await?;
        if self.workload == Workload::ReceiveAck {
            s.create_consumer(consumer::pull::Config {
                durable_name: Some(CONSUMER.to_string()),
                ack_policy: consumer::AckPolicy::Explicit,
                // Room for every worker's batch in flight (the default is 1,000).
                max_ack_pending: 100_000,
                ..Default::default()
            })
            .await?;
        }
        Ok(())
    }

    async fn worker(&self, index: usize, mode: Mode) -> anyhow::Result<NatsWorker> {
        // Each worker has its own client connection.
        let js = self.context().await?;
        let consumer = match mode {
            Mode::ReceiveAck(_) => Some(
                js.get_stream(&self.stream)
                    .await?
                    .get_consumer::<consumer::pull::Config>(CONSUMER)
                    .await
                    .map_err(|e| anyhow!(e))?,
            ),
            _ => None,
        };
        Ok(NatsWorker {
            js,
            consumer,
            subject: self.subject.clone(),
            size: self.size,
            seq: Seq::new(index),
            mode,
        })
    }

    async fn cleanup(&self) -> anyhow::Result<()> {
        self.context().await?.delete_stream(&self.stream).await?;
        Ok(())
    }
}

pub struct NatsWorker {
    js: Context,
    consumer: Option<consumer::PullConsumer>,
    subject: String,
    size: usize,
    seq: Seq,
    mode: Mode,
}

impl NatsWorker {
    /// Send `n` publishes, then wait for all their PubAcks.
    async fn publish(&mut self, n: usize) -> anyhow::Result<u64> {
        let mut acks = Vec::with_capacity(n);
        for _ in 0..n {
            let b = body(self.size, self.seq.next());
            acks.push(self.js.publish(self.subject.clone(), b.into()).await?);
        }
        for a in acks {
            a.await?;
        }
        Ok(n as u64)
    }

    async fn receive_ack(&mut self, n: usize) -> anyhow::Result<u64> {
        let consumer = self
            .consumer
            .as_ref()
            .expect("consumer in receive-ack mode");
        let mut batch = consumer.fetch().max_messages(n).messages().await?;
        let mut msgs = Vec::with_capacity(n);
        while let Some(m) = batch.next().await {
            msgs.push(m.map_err(|e| anyhow!(e))?);
        }
        if msgs.is_empty() {
            return Ok(0);
        }
        for r in join_all(msgs.iter().map(|m| m.double_ack())).await {
            if let Err(e) = r {
                bail!("double ack: {e}");
            }
        }
        Ok(msgs.len() as u64)
    }
}

impl Worker for NatsWorker {
    async fn op(&mut self) -> anyhow::Result<u64> {
        match self.mode {
            Mode::Publish(n) => self.publish(n).await,
            Mode::Fill => self.publish(1000).await,
            Mode::ReceiveAck(n) => self.receive_ack(n).await,
        }
    }
}
