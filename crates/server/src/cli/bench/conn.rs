//! The bench's own HTTP connections to the server: HTTP/1.1 through a minimal client of its
//! own ([`RawH1`]), h2c (prior knowledge) through hyper. The queue scenarios drive one [`Conn`]
//! per `--connections` in a closed loop, so this is the request path the figures measure.

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;

use super::args::Protocol;
use crate::cli::client::bearer_header;

pub struct Conn {
    h1: Option<RawH1>,
    h2: Option<hyper::client::conn::http2::SendRequest<Full<Bytes>>>,
    pub authority: String,
}

/// A minimal HTTP/1.1 client connection: one request written with one `write`, the response
/// read in the same task. hyper's client runs the connection in a second task, which costs a
/// cross-task (often cross-thread) wake-up per request; on a 2-core machine shared with the
/// server that showed as ~20% fewer requests per second than `wrk` got from the same server.
struct RawH1 {
    stream: tokio::net::TcpStream,
    host: String,
    auth: Option<String>,
    out: Vec<u8>,
    buf: Vec<u8>,
}

impl RawH1 {
    /// Requests written together with one `write` (pipelined), their answers read in order.
    async fn call(
        &mut self,
        method: &str,
        path: &str,
        bodies: &[Bytes],
    ) -> anyhow::Result<Vec<(u16, Bytes)>> {
        use tokio::io::AsyncWriteExt;
        self.out.clear();
        for body in bodies {
            self.head(method, path, body)?;
        }
        self.stream.write_all(&self.out).await?;
        let mut answers = Vec::with_capacity(bodies.len());
        for _ in bodies {
            answers.push(self.read_response().await?);
        }
        Ok(answers)
    }

    fn head(&mut self, method: &str, path: &str, body: &[u8]) -> anyhow::Result<()> {
        use std::io::Write;
        write!(
            self.out,
            "{method} {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            self.host,
            body.len()
        )?;
        if let Some(auth) = &self.auth {
            write!(self.out, "authorization: {auth}\r\n")?;
        }
        self.out.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(body);
        Ok(())
    }

    /// The next answer at the start of the buffer; its bytes are taken off the buffer.
    async fn read_response(&mut self) -> anyhow::Result<(u16, Bytes)> {
        let (status, head_len, length, chunked) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(n) = resp.parse(&self.buf)? {
                let mut length = None;
                let mut chunked = false;
                for h in resp.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        length = Some(std::str::from_utf8(h.value)?.trim().parse::<usize>()?);
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        chunked = h.value.eq_ignore_ascii_case(b"chunked");
                    }
                }
                break (resp.code.unwrap_or(0), n, length, chunked);
            }
            self.read_more().await?;
        };
        let (body, end) = if chunked {
            self.read_chunked(head_len).await?
        } else {
            let len = length.unwrap_or(0);
            while self.buf.len() < head_len + len {
                self.read_more().await?;
            }
            let body = Bytes::copy_from_slice(&self.buf[head_len..head_len + len]);
            (body, head_len + len)
        };
        self.buf.drain(..end);
        Ok((status, body))
    }

    async fn read_more(&mut self) -> anyhow::Result<()> {
        use tokio::io::AsyncReadExt;
        let at = self.buf.len();
        self.buf.resize(at + 16 * 1024, 0);
        let n = self.stream.read(&mut self.buf[at..]).await?;
        self.buf.truncate(at + n);
        if n == 0 {
            bail!("connection closed by the server");
        }
        Ok(())
    }

    /// Decode a chunked body that starts at `pos` in the buffer; also returns where it ends.
    async fn read_chunked(&mut self, mut pos: usize) -> anyhow::Result<(Bytes, usize)> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = self.buf[pos..].windows(2).position(|w| w == b"\r\n") {
                    break pos + i;
                }
                self.read_more().await?;
            };
            let size_text = std::str::from_utf8(&self.buf[pos..line_end])?;
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .with_context(|| format!("bad chunk size {size_text:?}"))?;
            pos = line_end + 2;
            while self.buf.len() < pos + size + 2 {
                self.read_more().await?;
            }
            body.extend_from_slice(&self.buf[pos..pos + size]);
            pos += size + 2;
            if size == 0 {
                return Ok((Bytes::from(body), pos));
            }
        }
    }
}

impl Conn {
    pub async fn open(server: &str, protocol: Protocol) -> anyhow::Result<Conn> {
        let authority = server
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        if server.starts_with("https://") {
            bail!("bench talks plain HTTP (h1 or h2c); got {server}");
        }
        let stream = tokio::net::TcpStream::connect(&authority)
            .await
            .with_context(|| format!("connecting to {authority}"))?;
        stream.set_nodelay(true)?;
        match protocol {
            Protocol::Http1 => Ok(Conn {
                h1: Some(RawH1 {
                    stream,
                    host: authority.clone(),
                    auth: bearer_header(),
                    out: Vec::with_capacity(4096),
                    buf: Vec::with_capacity(16 * 1024),
                }),
                h2: None,
                authority,
            }),
            Protocol::Http2 => {
                let io = TokioIo::new(stream);
                let (send, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
                tokio::spawn(conn);
                Ok(Conn {
                    h1: None,
                    h2: Some(send),
                    authority,
                })
            }
        }
    }

    pub async fn call(
        &mut self,
        method: &str,
        path: &str,
        body: Bytes,
    ) -> anyhow::Result<(u16, Bytes)> {
        let mut answers = self
            .call_many(method, path, std::slice::from_ref(&body))
            .await?;
        Ok(answers.pop().expect("one answer per request"))
    }

    /// Several requests in flight at once: pipelined on HTTP/1.1, concurrent streams on h2c.
    /// The answers come back in request order.
    pub async fn call_many(
        &mut self,
        method: &str,
        path: &str,
        bodies: &[Bytes],
    ) -> anyhow::Result<Vec<(u16, Bytes)>> {
        if let Some(h1) = &mut self.h1 {
            return h1.call(method, path, bodies).await;
        }
        let s = self.h2.clone().expect("a connection");
        let authority = &self.authority;
        futures::future::try_join_all(
            bodies
                .iter()
                .map(|b| Self::h2_call(s.clone(), authority, method, path, b.clone())),
        )
        .await
    }

    async fn h2_call(
        mut s: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
        authority: &str,
        method: &str,
        path: &str,
        body: Bytes,
    ) -> anyhow::Result<(u16, Bytes)> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{authority}{path}"))
            .header("host", authority)
            .header("content-type", "application/json");
        if let Some(auth) = bearer_header() {
            req = req.header("authorization", auth);
        }
        let req = req.body(Full::new(body))?;
        s.ready().await?;
        let resp = s.send_request(req).await?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }

    pub async fn json(&mut self, method: &str, path: &str, body: &Value) -> anyhow::Result<Value> {
        let (status, bytes) = self
            .call(method, path, Bytes::from(serde_json::to_vec(body)?))
            .await?;
        if !(200..300).contains(&status) {
            bail!(
                "{method} {path}: {status} {}",
                String::from_utf8_lossy(&bytes)
            );
        }
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_slice(&bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The raw HTTP/1.1 client reads content-length and chunked bodies, split over reads.
    #[tokio::test]
    async fn raw_h1_reads_sized_and_chunked_bodies() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            let replies: [&[&[u8]]; 2] = [
                &[
                    b"HTTP/1.1 201 Created\r\ncontent-le",
                    b"ngth: 5\r\n\r\nhel",
                    b"lo",
                ],
                &[
                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nab",
                    b"c\r\n2;x=y\r\nde\r\n0\r\n\r\n",
                ],
            ];
            for parts in replies {
                // Read one request (headers and a 2-byte body).
                let mut buf = [0u8; 1024];
                loop {
                    let n = s.read(&mut buf).await.unwrap();
                    got.extend_from_slice(&buf[..n]);
                    if got.ends_with(b"\r\n\r\n{}") {
                        break;
                    }
                }
                got.clear();
                for p in parts {
                    s.write_all(p).await.unwrap();
                    s.flush().await.unwrap();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        });
        let mut c = Conn::open(&format!("http://{addr}"), Protocol::Http1)
            .await
            .unwrap();
        let (status, body) = c
            .call("POST", "/a", Bytes::from_static(b"{}"))
            .await
            .unwrap();
        assert_eq!((status, &body[..]), (201, &b"hello"[..]));
        let (status, body) = c
            .call("POST", "/b", Bytes::from_static(b"{}"))
            .await
            .unwrap();
        assert_eq!((status, &body[..]), (200, &b"abcde"[..]));
        server.await.unwrap();
    }

    /// Pipelined requests go out in one write; answers that arrive together, split anywhere,
    /// are told apart and returned in order.
    #[tokio::test]
    async fn raw_h1_pipelines_requests() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            while got.windows(6).filter(|w| w == b"\r\n\r\n{}").count() < 3 {
                let n = s.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            let answers: &[u8] = b"HTTP/1.1 201 Created\r\ncontent-length: 1\r\n\r\naHTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nbc\r\n0\r\n\r\nHTTP/1.1 400 Bad\r\ncontent-length: 0\r\n\r\n";
            for part in answers.chunks(7) {
                s.write_all(part).await.unwrap();
            }
        });
        let mut c = Conn::open(&format!("http://{addr}"), Protocol::Http1)
            .await
            .unwrap();
        let bodies = vec![Bytes::from_static(b"{}"); 3];
        let answers = c.call_many("POST", "/p", &bodies).await.unwrap();
        let got: Vec<(u16, &[u8])> = answers.iter().map(|(s, b)| (*s, &b[..])).collect();
        assert_eq!(got, vec![(201, &b"a"[..]), (200, b"bc"), (400, b"")]);
        server.await.unwrap();
    }
}
