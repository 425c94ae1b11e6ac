//! beanstalkd through a minimal hand-written client of its text protocol (put, reserve, delete)
//! over a tokio TcpStream. Durability comes from the server: `-b DIR -f 0` writes every job and
//! every delete to the binlog and fsyncs it before replying.
//!
//! - publish: `put` and wait for `INSERTED`
//! - publish-batch: beanstalkd has no batch put, so 10 `put`s are pipelined (written at once),
//!   then the 10 `INSERTED` replies are read
//! - receive-ack: pipelined `reserve-with-timeout 0` x batch (a job stays reserved by this
//!   connection until deleted or its TTR runs out), then pipelined `delete` for each reserved job
//! - prefill: 100 pipelined puts per operation
//!
//! Each workload uses its own tube (bench-publish, ...). Tubes are not emptied before or after:
//! the script gives every run a fresh server.

use anyhow::{anyhow, bail, Context};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::driver::{body, Mode, Seq, System, Worker};
use crate::Args;

/// Seconds a reserved job may stay unacked before the server releases it again.
const TTR: u32 = 120;

pub struct Beanstalkd {
    addr: String,
    tube: String,
    size: usize,
}

impl Beanstalkd {
    pub fn new(args: &Args) -> Beanstalkd {
        let addr = args.url();
        let addr = addr
            .trim_start_matches("beanstalk://")
            .trim_end_matches('/')
            .to_string();
        Beanstalkd {
            addr,
            tube: args.queue('-'),
            size: args.size,
        }
    }
}

impl System for Beanstalkd {
    type W = BeanstalkdWorker;

    async fn prepare(&self) -> anyhow::Result<()> {
        // Check the server answers.
        Conn::open(&self.addr, &self.tube).await.map(|_| ())
    }

    async fn worker(&self, index: usize, mode: Mode) -> anyhow::Result<BeanstalkdWorker> {
        Ok(BeanstalkdWorker {
            conn: Conn::open(&self.addr, &self.tube).await?,
            size: self.size,
            seq: Seq::new(index),
            mode,
        })
    }

    async fn cleanup(&self) -> anyhow::Result<()> {
        // Deleting leftovers job by job would fsync each: leave them (see the module doc).
        Ok(())
    }
}

/// One protocol connection, using and watching one tube.
struct Conn {
    io: BufReader<TcpStream>,
    line: String,
}

impl Conn {
    async fn open(addr: &str, tube: &str) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to beanstalkd at {addr}"))?;
        stream.set_nodelay(true)?;
        let mut c = Conn {
            io: BufReader::new(stream),
            line: String::new(),
        };
        // Put into and reserve from `tube` only.
        let setup = format!("use {tube}\r\nwatch {tube}\r\nignore default\r\n");
        c.io.get_mut().write_all(setup.as_bytes()).await?;
        c.expect("USING").await?;
        c.expect("WATCHING").await?;
        c.expect("WATCHING").await?;
        Ok(c)
    }

    /// Read one reply line (without CRLF) into `self.line`.
    async fn read_line(&mut self) -> anyhow::Result<&str> {
        self.line.clear();
        if self.io.read_line(&mut self.line).await? == 0 {
            bail!("beanstalkd closed the connection");
        }
        Ok(self.line.trim_end())
    }

    async fn expect(&mut self, word: &str) -> anyhow::Result<()> {
        let line = self.read_line().await?;
        if !line.starts_with(word) {
            bail!("beanstalkd: expected {word}, got {line:?}");
        }
        Ok(())
    }
}

pub struct BeanstalkdWorker {
    conn: Conn,
    size: usize,
    seq: Seq,
    mode: Mode,
}

impl BeanstalkdWorker {
    /// Pipeline `n` puts, then read the `n` replies.
    async fn put(&mut self, n: usize) -> anyhow::Result<u64> {
        let mut buf = Vec::with_capacity(n * (self.size + 32));
        for _ in 0..n {
            let b = body(self.size, self.seq.next());
            buf.extend_from_slice(format!("put 0 0 {TTR} {}\r\n", b.len()).as_bytes());
            buf.extend_from_slice(&b);
            buf.extend_from_slice(b"\r\n");
        }
        self.conn.io.get_mut().write_all(&buf).await?;
        for _ in 0..n {
            self.conn.expect("INSERTED").await?;
        }
        Ok(n as u64)
    }

    /// Pipeline `n` non-blocking reserves, then delete every job we got.
    async fn receive_ack(&mut self, n: usize) -> anyhow::Result<u64> {
        let reserve = "reserve-with-timeout 0\r\n".repeat(n);
        self.conn.io.get_mut().write_all(reserve.as_bytes()).await?;
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            let line = self.conn.read_line().await?;
            if line == "TIMED_OUT" || line == "DEADLINE_SOON" {
                continue;
            }
            // RESERVED <id> <bytes>\r\n<data>\r\n
            let mut parts = line.split(' ');
            let (Some("RESERVED"), Some(id), Some(len)) =
                (parts.next(), parts.next(), parts.next())
            else {
                bail!("beanstalkd: unexpected reply to reserve: {line:?}");
            };
            let id: u64 = id.parse()?;
            let len: usize = len.parse()?;
            let mut data = vec![0u8; len + 2];
            self.conn.io.read_exact(&mut data).await?;
            ids.push(id);
        }
        if ids.is_empty() {
            return Ok(0);
        }
        let mut deletes = String::new();
        for id in &ids {
            deletes.push_str(&format!("delete {id}\r\n"));
        }
        self.conn.io.get_mut().write_all(deletes.as_bytes()).await?;
        for _ in &ids {
            let line = self.conn.read_line().await?;
            if line != "DELETED" {
                return Err(anyhow!("beanstalkd: unexpected reply to delete: {line:?}"));
            }
        }
        Ok(ids.len() as u64)
    }
}

impl Worker for BeanstalkdWorker {
    async fn op(&mut self) -> anyhow::Result<u64> {
        match self.mode {
            Mode::Publish(n) => self.put(n).await,
            Mode::Fill => self.put(100).await,
            Mode::ReceiveAck(n) => self.receive_ack(n).await,
        }
    }
}
