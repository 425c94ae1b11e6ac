//! RabbitMQ through lapin: a durable classic queue, persistent messages (delivery mode 2),
//! publisher confirms and manual acks. For a persistent message on a durable queue the broker
//! sends the confirm once the message is written to disk (fsynced), so a confirm is the
//! durability ack.
//!
//! - publish: `basic.publish` then wait for its confirm
//! - publish-batch: 10 `basic.publish`, then wait for all 10 confirms
//! - receive-ack: a consumer with prefetch = batch; take the next delivery (waiting at most 1 s),
//!   plus whatever else of the prefetch has already arrived, up to batch, then one `basic.ack`
//!   with `multiple` for all of them. AMQP 0-9-1 acks have no reply, so the ack's latency is the
//!   time to send it; the broker persists the removal on its own schedule.
//! - prefill: 1,000 publishes, then wait for all confirms.

use std::time::Duration;

use anyhow::bail;
use futures_util::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};

use crate::driver::{body, Mode, Seq, System, Worker};
use crate::Args;

pub struct Rabbitmq {
    url: String,
    queue: String,
    size: usize,
}

impl Rabbitmq {
    pub fn new(args: &Args) -> Rabbitmq {
        Rabbitmq {
            url: args.url(),
            queue: args.queue('-'),
            size: args.size,
        }
    }

    async fn channel(&self) -> anyhow::Result<(Connection, Channel)> {
        let conn = Connection::connect(&self.url, ConnectionProperties::default()).await?;
        let channel = conn.create_channel().await?;
        Ok((conn, channel))
    }
}

impl System for Rabbitmq {
    type W = RabbitmqWorker;

    async fn prepare(&self) -> anyhow::Result<()> {
        let (conn, ch) = self.channel().await?;
        ch.queue_delete(self.queue.as_str().into(), QueueDeleteOptions::default())
            .await?;
        ch.queue_declare(
            self.queue.as_str().into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await?;
        conn.close(200, "bye".into()).await?;
        Ok(())
    }

    async fn worker(&self, index: usize, mode: Mode) -> anyhow::Result<RabbitmqWorker> {
        let (conn, channel) = self.channel().await?;
        let mut consumer = None;
        match mode {
            Mode::Publish(_) | Mode::Fill => {
                channel
                    .confirm_select(ConfirmSelectOptions::default())
                    .await?;
            }
            Mode::ReceiveAck(n) => {
                channel
                    .basic_qos(n as u16, BasicQosOptions::default())
                    .await?;
                consumer = Some(
                    channel
                        .basic_consume(
                            self.queue.as_str().into(),
                            format!("bench-{index}").as_str().into(),
                            BasicConsumeOptions::default(), // manual acks (no_ack: false)
                            FieldTable::default(),
                        )
                        .await?,
                );
            }
        }
        Ok(RabbitmqWorker {
            _conn: conn,
            channel,
            consumer,
            queue: self.queue.clone(),
            size: self.size,
            seq: Seq::new(index),
            mode,
        })
    }

    async fn cleanup(&self) -> anyhow::Result<()> {
        let (conn, ch) = self.channel().await?;
        ch.queue_delete(self.queue.as_str().into(), QueueDeleteOptions::default())
            .await?;
        conn.close(200, "bye".into()).await?;
        Ok(())
    }
}

pub struct RabbitmqWorker {
    _conn: Connection,
    channel: Channel,
    consumer: Option<Consumer>,
    queue: String,
    size: usize,
    seq: Seq,
    mode: Mode,
}

impl RabbitmqWorker {
    /// Publish `n` persistent messages, then wait for every confirm.
    async fn publish(&mut self, n: usize) -> anyhow::Result<u64> {
        let props = BasicProperties::default().with_delivery_mode(2); // persistent
        let mut confirms = Vec::with_capacity(n);
        for _ in 0..n {
            let b = body(self.size, self.seq.next());
            confirms.push(
                self.channel
                    .basic_publish(
                        "".into(),
                        self.queue.as_str().into(),
                        BasicPublishOptions::default(),
                        &b,
                        props.clone(),
                    )
                    .await?,
            );
        }
        for c in confirms {
            if !c.await?.is_ack() {
                bail!("RabbitMQ nacked a publish");
            }
        }
        Ok(n as u64)
    }

    async fn receive_ack(&mut self, n: usize) -> anyhow::Result<u64> {
        let consumer = self
            .consumer
            .as_mut()
            .expect("consumer in receive-ack mode");
        let first = match tokio::time::timeout(Duration::from_secs(1), consumer.next()).await {
            Err(_) => return Ok(0), // nothing for a second: empty
            Ok(None) => bail!("RabbitMQ cancelled the consumer"),
            Ok(Some(d)) => d?,
        };
        let mut last = first;
        let mut got = 1;
        // Take what else of the prefetch has already arrived, without waiting.
        while got < n {
            match consumer.next().now_or_never() {
                Some(Some(d)) => {
                    last = d?;
                    got += 1;
                }
                Some(None) => bail!("RabbitMQ cancelled the consumer"),
                None => break,
            }
        }
        // One ack for every delivery up to and including `last`.
        last.ack(BasicAckOptions { multiple: true }).await?;
        Ok(got as u64)
    }
}

impl Worker for RabbitmqWorker {
    async fn op(&mut self) -> anyhow::Result<u64> {
        match self.mode {
            Mode::Publish(n) => self.publish(n).await,
            Mode::Fill => self.publish(1000).await,
            Mode::ReceiveAck(n) => self.receive_ack(n).await,
        }
    }
}
