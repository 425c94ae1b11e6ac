//! TLS on the one port: ALPN h2 and http/1.1, the miniqueue duplex flow over HTTP/2 + TLS with
//! a certificate the test generates (rcgen), and certificate reload on SIGHUP.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::common::Server;
use crate::receiver::wait_until;

struct Pair {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

fn generate() -> Pair {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    Pair {
        cert_pem: ck.cert.pem(),
        key_pem: ck.signing_key.serialize_pem(),
        der: ck.cert.der().to_vec(),
    }
}

fn connector(trusted: &[&Pair], alpn: &[u8]) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for p in trusted {
        roots.add(CertificateDer::from(p.der.clone())).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    TlsConnector::from(Arc::new(cfg))
}

async fn connect(
    port: u16,
    c: &TlsConnector,
) -> (
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    Vec<u8>,
) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let tls = c
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let peer = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    (tls, peer)
}

async fn start(pair: &Pair) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), &pair.cert_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), &pair.key_pem).unwrap();
    let cert = dir.path().join("cert.pem").display().to_string();
    let key = dir.path().join("key.pem").display().to_string();
    // Server::start waits for plain-HTTP health; over TLS, wait by connecting ourselves.
    let s = Server::start_tls(&["--tls-cert", &cert, "--tls-key", &key]).await;
    (s, dir)
}

#[tokio::test]
async fn http2_and_http1_over_tls_with_the_miniqueue_flow() {
    let pair = generate();
    let (s, _dir) = start(&pair).await;

    // HTTP/1.1 over TLS (ALPN http/1.1).
    let (tls, _) = connect(s.port, &connector(&[&pair], b"http/1.1")).await;
    let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let r = h1
        .send_request(
            hyper::Request::get("/healthz")
                .header("host", "localhost")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["strict-transport-security"],
        "max-age=31536000",
        "HSTS over TLS"
    );
    assert_eq!(r.into_body().collect().await.unwrap().to_bytes(), "OK");

    // HTTP/2 over TLS (ALPN h2): publish, then the duplex subscribe flow.
    let (tls, _) = connect(s.port, &connector(&[&pair], b"h2")).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let publish = hyper::Request::post("https://localhost/publish/secure")
        .body(
            Full::new(Bytes::from("hello over tls"))
                .map_err(|e: Infallible| match e {})
                .boxed(),
        )
        .unwrap();
    assert_eq!(h2.send_request(publish).await.unwrap().status(), 201);
    let (up, mut rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    let body = StreamBody::new(futures::stream::poll_fn(move |cx| rx.poll_recv(cx))).boxed();
    let resp = h2
        .send_request(
            hyper::Request::post("https://localhost/subscribe/secure")
                .body(body)
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    up.send(Ok(Frame::data(Bytes::from("\"INIT\"\n"))))
        .await
        .unwrap();
    let mut down = resp.into_body();
    let mut buf = Vec::new();
    while !buf.contains(&b'\n') {
        let f = tokio::time::timeout(Duration::from_secs(20), down.frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Ok(d) = f.into_data() {
            buf.extend_from_slice(&d);
        }
    }
    let v: serde_json::Value =
        serde_json::from_slice(&buf[..buf.iter().position(|&b| b == b'\n').unwrap()]).unwrap();
    use base64::Engine as _;
    let msg = base64::engine::general_purpose::STANDARD
        .decode(v["msg"].as_str().unwrap())
        .unwrap();
    assert_eq!(msg, b"hello over tls");
}

#[tokio::test]
async fn the_certificate_is_reloaded_on_sighup() {
    let first = generate();
    let (s, dir) = start(&first).await;
    let second = generate();
    let both = connector(&[&first, &second], b"h2");
    let (_, peer) = connect(s.port, &both).await;
    assert_eq!(peer, first.der);
    // A broken file is refused and the old certificate stays.
    std::fs::write(dir.path().join("cert.pem"), "not a certificate").unwrap();
    s.signal(libc::SIGHUP);
    // The server has made the reload attempt (and logged that it failed) before this connects.
    wait_until("the failed reload logged", 30, || async {
        s.log().contains("TLS reload failed")
    })
    .await;
    let (_, peer) = connect(s.port, &both).await;
    assert_eq!(peer, first.der, "a failed reload keeps the old certificate");
    std::fs::write(dir.path().join("cert.pem"), &second.cert_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), &second.key_pem).unwrap();
    s.signal(libc::SIGHUP);
    let mut seen = Vec::new();
    for _ in 0..100 {
        seen = connect(s.port, &both).await.1;
        if seen == second.der {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, second.der, "new connections get the new certificate");
}
