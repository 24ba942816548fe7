//! The SSRF guard and the safe delivery client. Literal addresses are judged without any
//! connection; real traffic goes only to tiny receivers on 127.0.0.1, and the only name resolved
//! is `localhost`, so no test depends on (or sends anything to) the outside network.
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fluxgate::config::Cidr;
use fluxgate::delivery::client::{ErrorClass, SafeClient, Timeouts, EXCERPT_LIMIT, USER_AGENT};
use fluxgate::delivery::ssrf::{check_url, is_globally_routable, resolve, TargetPolicy};
use reqwest::header::{HeaderMap, HeaderValue, COOKIE, LOCATION, RETRY_AFTER};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use url::Url;

fn url(s: &str) -> Url {
    Url::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn policy(allow_http: bool, allowed: &[&str]) -> TargetPolicy {
    TargetPolicy {
        allow_http,
        allowed: allowed.iter().map(|c| Cidr::parse(c).unwrap()).collect(),
    }
}

/// Loopback allowed. `::1` too, because some hosts also resolve `localhost` to it and one
/// refused address refuses the whole answer.
fn loopback_allowed() -> TargetPolicy {
    policy(true, &["127.0.0.0/8", "::1/128"])
}

fn client(policy: TargetPolicy, attempt: Duration) -> SafeClient {
    let timeouts = Timeouts {
        attempt,
        connect: attempt,
    };
    SafeClient::new(policy, timeouts).unwrap()
}

fn json_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h
}

// ---------------------------------------------------------------- a tiny receiver

#[derive(Clone)]
enum Reply {
    /// Answer every request on the connection (keep-alive) with this status, headers and body.
    Answer(&'static str, Vec<(&'static str, String)>, Vec<u8>),
    /// Read the request and never answer.
    Hang,
    /// Send the head and part of the body, then stall.
    Stall(&'static str, &'static str),
    /// Write plain HTTP at once, without reading (a TLS client gets garbage).
    NotTls,
}

struct Receiver {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    async fn start(reply: Reply) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (c, r) = (connections.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(sock, reply.clone(), r.clone()));
            }
        });
        Receiver {
            addr,
            connections,
            requests,
        }
    }

    fn url(&self, host: &str) -> Url {
        url(&format!("http://{host}:{}/hook", self.addr.port()))
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

async fn serve(mut sock: TcpStream, reply: Reply, requests: Arc<Mutex<Vec<String>>>) {
    let mut buf = Vec::new();
    if let Reply::NotTls = reply {
        let _ = sock.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        return;
    }
    while let Some(request) = read_request(&mut sock, &mut buf).await {
        requests.lock().unwrap().push(request);
        match &reply {
            Reply::Answer(status, headers, body) => {
                let mut out = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n", body.len());
                for (k, v) in headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                let mut out = out.into_bytes();
                out.extend_from_slice(body);
                if sock.write_all(&out).await.is_err() {
                    return;
                }
            }
            Reply::Stall(status, partial) => {
                let head = format!("HTTP/1.1 {status}\r\ncontent-length: 100000\r\n\r\n{partial}");
                let _ = sock.write_all(head.as_bytes()).await;
                std::future::pending::<()>().await;
            }
            Reply::Hang => std::future::pending::<()>().await,
            Reply::NotTls => unreachable!(),
        }
    }
}

/// One request's head and body as text, or `None` at the end of the connection.
async fn read_request(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse::<usize>().unwrap());
            if buf.len() >= end + 4 + length {
                let request: Vec<u8> = buf.drain(..end + 4 + length).collect();
                return Some(String::from_utf8_lossy(&request).into_owned());
            }
        }
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

// ---------------------------------------------------------------- the guard, without sockets

#[test]
fn literal_internal_addresses_are_refused_as_ssrf_without_the_allow_list() {
    let policy = policy(true, &[]);
    for target in [
        "http://127.0.0.1/",
        "http://10.0.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]/",
        "http://[64:ff9b::a00:1]/",
        "http://[2002:0a00:0001::]/",
        "http://[fd00::1]/",
        "http://[fe80::1]/",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "http://2130706433/",
        "http://0x7f.1/",
        "http://017700000001/",
        "https://192.168.1.1:8443/x",
    ] {
        let err = check_url(&policy, &url(target)).expect_err(target);
        assert_eq!(err.class(), "ssrf_blocked", "{target}: {err}");
    }
}

#[test]
fn public_literal_addresses_pass_the_check() {
    // Checked only: nothing here ever connects to them.
    for target in [
        "https://93.184.216.34/hook",
        "https://[2606:4700::1111]/",
        "https://[::ffff:93.184.216.34]/",
    ] {
        check_url(&TargetPolicy::default(), &url(target)).expect(target);
    }
    assert!(is_globally_routable("93.184.216.34".parse().unwrap()));
    assert!(!is_globally_routable("169.254.169.254".parse().unwrap()));
}

#[test]
fn a_refusal_says_which_address_was_refused_and_why() {
    let policy = TargetPolicy::default();
    let message = |s: &str| check_url(&policy, &url(s)).unwrap_err().to_string();
    assert_eq!(
        message("https://169.254.169.254/"),
        "points at 169.254.169.254, a link-local address (where cloud metadata services live)"
    );
    assert_eq!(
        message("https://2130706433/"),
        "points at 127.0.0.1, a loopback address"
    );
    assert_eq!(
        message("https://[::ffff:10.0.0.5]/"),
        "points at ::ffff:10.0.0.5, which embeds 10.0.0.5, a private address"
    );
}

#[test]
fn the_allow_list_admits_private_literals() {
    let policy = policy(true, &["10.0.0.0/8", "127.0.0.0/8"]);
    for target in [
        "http://10.0.0.1/",
        "http://127.0.0.1:9/",
        "http://[::ffff:10.0.0.1]/",
    ] {
        check_url(&policy, &url(target)).expect(target);
    }
    let err = check_url(&policy, &url("http://192.168.0.1/")).unwrap_err();
    assert_eq!(err.class(), "ssrf_blocked");
}

#[test]
fn urls_of_the_wrong_shape_are_invalid_targets_and_localhost_is_blocked_by_name() {
    let strict = TargetPolicy::default();
    for target in [
        "http://hooks.example.com/",
        "ftp://hooks.example.com/",
        "file:///etc/passwd",
        "data:text/plain,hi",
        "https://user:pw@hooks.example.com/",
        "https://user@hooks.example.com/",
        "https://hooks.example.com:0/",
    ] {
        let err = check_url(&strict, &url(target)).expect_err(target);
        assert_eq!(err.class(), "invalid_target", "{target}: {err}");
    }
    assert!(check_url(&policy(true, &[]), &url("http://hooks.example.com/")).is_ok());
    for target in [
        "https://localhost/",
        "https://LOCALHOST./",
        "https://api.localhost/",
    ] {
        let err = check_url(&strict, &url(target)).expect_err(target);
        assert_eq!(err.class(), "ssrf_blocked", "{target}: {err}");
    }
}

#[tokio::test]
async fn resolution_vets_every_address_a_name_resolves_to() {
    // ::1 allowed lets the name `localhost` through to DNS, whose 127.0.0.1 is then refused.
    let only_v6 = policy(true, &["::1/128"]);
    let err = resolve(&only_v6, &url("http://localhost:8080/"))
        .await
        .unwrap_err();
    assert_eq!(err.class(), "ssrf_blocked");
    assert_eq!(
        err.to_string(),
        "host localhost resolves to 127.0.0.1, a loopback address"
    );

    let addrs = resolve(&loopback_allowed(), &url("http://localhost:8080/"))
        .await
        .unwrap();
    assert!(!addrs.is_empty());
    assert!(addrs
        .iter()
        .all(|a| a.ip().is_loopback() && a.port() == 8080));

    let literal = resolve(&loopback_allowed(), &url("http://0x7f.1/"))
        .await
        .unwrap();
    assert_eq!(literal, vec!["127.0.0.1:80".parse().unwrap()]);
}

// ---------------------------------------------------------------- the client, on 127.0.0.1

#[tokio::test]
async fn an_allow_listed_local_receiver_gets_the_post_by_ip_and_by_name() {
    let body = vec![b'x'; 10_000];
    let rx = Receiver::start(Reply::Answer(
        "429 Too Many Requests",
        vec![("retry-after", "7".into())],
        body,
    ))
    .await;
    let client = client(loopback_allowed(), Duration::from_secs(5));
    for host in ["127.0.0.1", "localhost"] {
        let mut headers = json_headers();
        headers.insert(COOKIE, HeaderValue::from_static("session=stolen"));
        let got = client
            .post(&rx.url(host), headers, Bytes::from_static(b"{\"n\":1}"))
            .await
            .unwrap_or_else(|e| panic!("{host}: {e}"));
        assert_eq!(got.status, 429);
        assert!(!got.is_success());
        assert_eq!(got.headers.get(RETRY_AFTER).unwrap(), "7");
        assert_eq!(got.body_excerpt.len(), EXCERPT_LIMIT);
        assert!(got.body_excerpt.bytes().all(|b| b == b'x'));
    }
    let requests = rx.requests();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        assert!(request.starts_with("POST /hook HTTP/1.1\r\n"), "{request}");
        let lower = request.to_lowercase();
        assert!(
            lower.contains(&format!("user-agent: {USER_AGENT}")),
            "{request}"
        );
        assert!(!lower.contains("cookie"), "{request}");
        assert!(request.ends_with("\r\n\r\n{\"n\":1}"), "{request}");
    }
}

#[tokio::test]
async fn attempts_to_one_receiver_share_a_kept_alive_connection() {
    let rx = Receiver::start(Reply::Answer("204 No Content", vec![], vec![])).await;
    let client = client(loopback_allowed(), Duration::from_secs(5));
    for _ in 0..3 {
        let got = client
            .post(
                &rx.url("localhost"),
                json_headers(),
                Bytes::from_static(b"{}"),
            )
            .await
            .unwrap();
        assert_eq!(got.status, 204);
        assert!(got.is_success());
    }
    assert_eq!((rx.connections(), rx.requests().len()), (1, 3));
}

#[tokio::test]
async fn without_the_allow_list_loopback_targets_are_refused_before_any_connection() {
    let rx = Receiver::start(Reply::Answer("200 OK", vec![], vec![])).await;
    let client = client(policy(true, &[]), Duration::from_secs(5));
    for host in ["localhost", "127.0.0.1", "[::ffff:127.0.0.1]"] {
        let err = client
            .post(&rx.url(host), json_headers(), Bytes::new())
            .await
            .unwrap_err();
        assert_eq!(err.class, ErrorClass::SsrfBlocked, "{host}: {err}");
    }
    assert_eq!(rx.connections(), 0);
}

#[tokio::test]
async fn the_clients_own_resolver_refuses_a_name_that_resolves_inward() {
    // `localhost` passes the name check (::1 is allowed) but resolves to 127.0.0.1: only the
    // resolver reqwest calls can stop it, and it must, before connecting.
    let rx = Receiver::start(Reply::Answer("200 OK", vec![], vec![])).await;
    let client = client(policy(true, &["::1/128"]), Duration::from_secs(5));
    let err = client
        .post(&rx.url("localhost"), json_headers(), Bytes::new())
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::SsrfBlocked, "{err}");
    assert_eq!(
        err.message,
        "host localhost resolves to 127.0.0.1, a loopback address"
    );
    assert_eq!(rx.connections(), 0);
}

#[tokio::test]
async fn a_redirect_is_returned_as_an_answer_and_never_followed() {
    let elsewhere = Receiver::start(Reply::Answer("200 OK", vec![], vec![])).await;
    let location = elsewhere.url("127.0.0.1").to_string();
    let rx = Receiver::start(Reply::Answer(
        "302 Found",
        vec![("location", location.clone())],
        vec![],
    ))
    .await;
    let got = client(loopback_allowed(), Duration::from_secs(5))
        .post(&rx.url("127.0.0.1"), json_headers(), Bytes::new())
        .await
        .unwrap();
    assert_eq!(got.status, 302);
    assert_eq!(got.headers.get(LOCATION).unwrap(), location.as_str());
    assert_eq!(elsewhere.connections(), 0);
}

#[tokio::test]
async fn a_receiver_that_never_answers_is_cut_at_the_attempt_timeout() {
    let rx = Receiver::start(Reply::Hang).await;
    let err = client(loopback_allowed(), Duration::from_millis(300))
        .post(&rx.url("127.0.0.1"), json_headers(), Bytes::new())
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Timeout, "{err}");
    assert_eq!(err.message, "no response within 300ms");
    assert!(
        err.duration >= Duration::from_millis(300) && err.duration < Duration::from_secs(3),
        "{:?}",
        err.duration
    );
    assert_eq!(rx.requests().len(), 1);
}

#[tokio::test]
async fn a_body_that_stalls_after_the_status_keeps_the_status_and_what_arrived() {
    let rx = Receiver::start(Reply::Stall("200 OK", "partial")).await;
    let got = client(loopback_allowed(), Duration::from_millis(300))
        .post(&rx.url("127.0.0.1"), json_headers(), Bytes::new())
        .await
        .unwrap();
    assert_eq!((got.status, got.body_excerpt.as_str()), (200, "partial"));
}

#[tokio::test]
async fn a_closed_port_is_a_connect_error() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let err = client(loopback_allowed(), Duration::from_secs(5))
        .post(
            &url(&format!("http://127.0.0.1:{port}/")),
            json_headers(),
            Bytes::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Connect, "{err}");
    assert!(err.message.contains("refused"), "{}", err.message);
    assert!(!err.message.contains("http://"), "{}", err.message);
}

#[tokio::test]
async fn a_receiver_that_does_not_speak_tls_is_a_tls_error() {
    let rx = Receiver::start(Reply::NotTls).await;
    let target = url(&format!("https://127.0.0.1:{}/hook", rx.addr.port()));
    let err = client(loopback_allowed(), Duration::from_secs(5))
        .post(&target, json_headers(), Bytes::new())
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Tls, "{err}");
    assert!(err.message.contains("corrupt message"), "{}", err.message);
}
