//! The message API: publish (fanned out on a push queue), receive (a long poll when asked
//! to wait), ack, nack, change a lease, peek. Receipts are opened here (checked against the
//! data set's key, `receipts.rs`) and per-receipt results merged in request order; the store
//! applies the rules.

use std::sync::atomic::Ordering;

use crate::clock::Millis;
use crate::error::{EngineError, Result};
use crate::limits;
use crate::model::{is_fifo, Delivery, Message, Placement, Receipt, ReceiptResult};
use crate::validate::{check_receipt_count, range, validate_queue_name};

use super::Engine;

/// A receive request.
#[derive(Debug, Clone)]
pub struct ReceiveOptions {
    pub max_messages: usize,
    /// None: the queue's `receive_wait_seconds`.
    pub wait_seconds: Option<u32>,
    /// None: the queue's visibility timeout.
    pub visibility_timeout_seconds: Option<u32>,
}

impl Default for ReceiveOptions {
    fn default() -> Self {
        ReceiveOptions {
            max_messages: 1,
            wait_seconds: None,
            visibility_timeout_seconds: None,
        }
    }
}

impl Engine {
    /// Receive up to `max_messages`, waiting up to `wait_seconds` for the first one.
    pub async fn receive(&self, queue: &str, opts: ReceiveOptions) -> Result<Vec<Delivery>> {
        validate_queue_name(queue)?;
        range(
            "max_messages",
            opts.max_messages as u64,
            1,
            limits::RECEIVE_BATCH_MAX as u64,
        )?;
        if let Some(w) = opts.wait_seconds {
            range("wait_seconds", w as u64, 0, limits::WAIT_MAX_S as u64)?;
        }
        if let Some(v) = opts.visibility_timeout_seconds {
            range(
                "visibility_timeout_seconds",
                v as u64,
                0,
                limits::VISIBILITY_TIMEOUT_MAX_S as u64,
            )?;
        }
        if self.push.is_push(queue) {
            return Err(EngineError::PushQueue(queue.to_string()));
        }
        // The queue's defaults (this lookup also answers 404 for unknown queues before waiting).
        let config = self
            .core
            .store
            .get_queue(queue)
            .await?
            .ok_or_else(|| EngineError::QueueNotFound(queue.to_string()))?
            .config;
        let visibility_s = opts
            .visibility_timeout_seconds
            .unwrap_or(config.visibility_timeout_seconds);
        let wait_seconds = opts.wait_seconds.unwrap_or(config.receive_wait_seconds);
        let visibility_ms = visibility_s as u64 * 1000;
        if wait_seconds == 0 {
            return self
                .core
                .store
                .receive(queue, opts.max_messages, visibility_ms, self.now())
                .await;
        }
        if self.waiters.fetch_add(1, Ordering::SeqCst) >= self.opts.max_waiters {
            self.waiters.fetch_sub(1, Ordering::SeqCst);
            return Err(EngineError::TooManyWaiters {
                limit: self.opts.max_waiters,
            });
        }
        let _guard = WaiterGuard(&self.waiters);
        // Only existing queues get a waker (so unknown names cannot grow the map).
        if opts.visibility_timeout_seconds.is_some()
            && self.core.store.get_queue(queue).await?.is_none()
        {
            return Err(EngineError::QueueNotFound(queue.to_string()));
        }
        self.core
            .wait_receive(
                queue,
                opts.max_messages,
                visibility_ms,
                wait_seconds as u64 * 1000,
            )
            .await
    }

    pub async fn ack(&self, queue: &str, receipts: &[String]) -> Result<Vec<ReceiptResult>> {
        validate_queue_name(queue)?;
        check_receipt_count(receipts.len())?;
        let out = self
            .per_receipt(queue, receipts, |rs| async move {
                self.core.store.ack(queue, &rs, self.now()).await
            })
            .await?;
        if out.iter().any(|r| r.is_ok()) && self.frees_groups(queue).await? {
            // Settling unlocks a message group: a waiting receive may take its next message.
            self.core.wake(queue, out.len());
        }
        Ok(out)
    }

    pub async fn nack(
        &self,
        queue: &str,
        receipts: &[String],
        delay_seconds: u32,
        placement: Placement,
    ) -> Result<Vec<ReceiptResult>> {
        validate_queue_name(queue)?;
        check_receipt_count(receipts.len())?;
        range(
            "delay_seconds",
            delay_seconds as u64,
            0,
            limits::DELAY_MAX_S as u64,
        )?;
        let out = self
            .per_receipt(queue, receipts, |rs| async move {
                self.core
                    .store
                    .nack(
                        queue,
                        &rs,
                        delay_seconds as u64 * 1000,
                        placement,
                        self.now(),
                    )
                    .await
            })
            .await?;
        let released = out.iter().filter(|r| r.is_ok()).count();
        if released > 0 {
            // With a delay, a waiting receive must re-plan its sleep around the new due time.
            self.core.wake(queue, released);
        }
        Ok(out)
    }

    /// Open receipts (sealed for `queue`), run `op` on the good ones, and merge results in
    /// request order.
    async fn per_receipt<F, Fut>(
        &self,
        queue: &str,
        receipts: &[String],
        op: F,
    ) -> Result<Vec<ReceiptResult>>
    where
        F: FnOnce(Vec<Receipt>) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<ReceiptResult>>>,
    {
        let decoded: Vec<Result<Receipt>> = receipts
            .iter()
            .map(|r| self.receipts.open(queue, r))
            .collect();
        let good: Vec<Receipt> = decoded
            .iter()
            .filter_map(|r| r.as_ref().ok().copied())
            .collect();
        let mut results = if good.is_empty() {
            // No store call tells of a missing queue: say it before the receipts.
            self.existing(queue).await?;
            Vec::new()
        } else {
            op(good).await?
        }
        .into_iter();
        Ok(decoded
            .into_iter()
            .map(|d| match d {
                Ok(_) => results.next().expect("one result per receipt"),
                Err(e) => Err(e),
            })
            .collect())
    }

    /// Set the lease of a received message to end `timeout_seconds` from now (0 releases it).
    pub async fn change_visibility(
        &self,
        queue: &str,
        receipt: &str,
        timeout_seconds: u32,
    ) -> Result<Millis> {
        validate_queue_name(queue)?;
        range(
            "visibility_timeout_seconds",
            timeout_seconds as u64,
            0,
            limits::VISIBILITY_TIMEOUT_MAX_S as u64,
        )?;
        let r = match self.receipts.open(queue, receipt) {
            Ok(r) => r,
            Err(e) => {
                self.existing(queue).await?;
                return Err(e);
            }
        };
        let now = self.now();
        if timeout_seconds == 0 {
            // A zero timeout releases the message: that is a nack, for every store.
            let result = self
                .core
                .store
                .nack(queue, &[r], 0, Placement::Back, now)
                .await?;
            result.into_iter().next().expect("one result")?;
            self.core.wake(queue, 1);
            return Ok(now);
        }
        self.core
            .store
            .change_visibility(queue, r, timeout_seconds as u64 * 1000, now)
            .await
    }

    /// Does settling a message of `queue` let a waiting receive take another? On FIFO queues
    /// (a held group is released) and on queues with `max_in_flight_per_group` (a parked group
    /// takes turns again). With a shared store the store's own wake-up says so for every node.
    async fn frees_groups(&self, queue: &str) -> Result<bool> {
        if is_fifo(queue) {
            return Ok(true);
        }
        if self.core.shared {
            return Ok(false);
        }
        // Read once per queue (an ack must not copy the queue's settings); `put_queue` keeps
        // the answer current, and on one node it is the only writer of settings.
        if let Some(&limited) = self.group_limited.lock().get(queue) {
            return Ok(limited);
        }
        let limited = self
            .core
            .store
            .get_queue(queue)
            .await?
            .is_some_and(|q| q.config.max_in_flight_per_group.is_some());
        self.group_limited.lock().insert(queue.to_string(), limited);
        Ok(limited)
    }

    /// `QueueNotFound` unless `queue` exists.
    async fn existing(&self, queue: &str) -> Result<()> {
        match self.core.store.get_queue(queue).await? {
            Some(_) => Ok(()),
            None => Err(EngineError::QueueNotFound(queue.to_string())),
        }
    }

    pub async fn peek(&self, queue: &str, limit: usize) -> Result<Vec<Message>> {
        validate_queue_name(queue)?;
        range("limit", limit as u64, 1, limits::PEEK_MAX as u64)?;
        self.core.store.peek(queue, limit, self.now()).await
    }
}

struct WaiterGuard<'a>(&'a std::sync::atomic::AtomicUsize);
impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
