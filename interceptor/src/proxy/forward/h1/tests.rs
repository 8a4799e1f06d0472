use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::Request;
use http::header::HOST;
use http_body::Body;
use http_body_util::{BodyExt, Empty, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::proxy::forward::pool::Http1Pool;

/// What a raw backend does with the `n`th request (from 0) of a connection.
#[derive(Clone)]
enum Script {
    /// Writes these bytes, in pieces of at most `piece` bytes with a pause between, then keeps the
    /// connection open or closes it.
    Answer { bytes: Vec<u8>, piece: usize, close: bool },
    /// Closes the connection without an answer.
    Hangup,
}

fn answer(bytes: &[u8]) -> Script {
    Script::Answer { bytes: bytes.to_vec(), piece: usize::MAX, close: true }
}

/// A backend speaking raw bytes: what it answers, the request heads it read, the connections it accepted.
struct Backend {
    authority: Authority,
    heads: Arc<Mutex<Vec<Vec<u8>>>>,
    accepted: Arc<AtomicUsize>,
}

async fn backend(script: impl Fn(usize) -> Script + Send + Sync + 'static) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
    let (heads, accepted) = (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicUsize::new(0)));
    let (h, a, script) = (heads.clone(), accepted.clone(), Arc::new(script));
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            let (heads, script) = (h.clone(), script.clone());
            tokio::spawn(async move {
                for n in 0.. {
                    let mut head = Vec::new();
                    while !head.ends_with(b"\r\n\r\n") {
                        let mut byte = [0u8; 1];
                        if s.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    heads.lock().unwrap().push(head);
                    match script(n) {
                        Script::Hangup => return,
                        Script::Answer { bytes, piece, close } => {
                            for part in bytes.chunks(piece) {
                                if s.write_all(part).await.is_err() {
                                    return;
                                }
                                tokio::time::sleep(Duration::from_millis(2)).await;
                            }
                            if close {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    Backend { authority, heads, accepted }
}

/// What a client made of an answer.
#[derive(Debug, PartialEq)]
enum Outcome {
    Answer {
        status: u16,
        reason: Option<Vec<u8>>,
        headers: Vec<(String, Vec<u8>)>,
        body: Vec<u8>,
        trailers: Vec<(String, Vec<u8>)>,
        /// The body ended with an error.
        broken: bool,
    },
    NoAnswer,
}

fn fields(map: &http::HeaderMap) -> Vec<(String, Vec<u8>)> {
    map.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())).collect()
}

/// What a client made of an answer, after the forwarder removed its hop-by-hop headers (ours leaves some of
/// them out of the head already).
async fn outcome<B: Body<Data = Bytes> + Unpin>(resp: Response<B>) -> Outcome {
    let (mut parts, mut body) = resp.into_parts();
    crate::proxy::headers::remove_hop_by_hop(&mut parts.headers);
    let (mut data, mut trailers, mut broken) = (Vec::new(), Vec::new(), false);
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) if f.is_data() => data.extend_from_slice(&f.into_data().unwrap()),
            Ok(f) => trailers = fields(&f.into_trailers().unwrap()),
            Err(_) => {
                broken = true;
                break;
            }
        }
    }
    Outcome::Answer {
        status: parts.status.as_u16(),
        reason: parts.extensions.get::<hyper::ext::ReasonPhrase>().map(|r| r.as_bytes().to_vec()),
        headers: fields(&parts.headers),
        body: data,
        trailers,
        broken,
    }
}

fn request(method: &Method, authority: &Authority) -> Request<Empty<Bytes>> {
    Request::builder()
        .method(method.clone())
        .uri("/p/a?q=1")
        .header(HOST, authority.as_str())
        .header("x-multi", "a")
        .header("user-agent", "test/1")
        .header("x-multi", "b")
        .body(Empty::new())
        .unwrap()
}

fn own_pool() -> Arc<Pool<Conn>> {
    Pool::new(Duration::from_millis(500), 8)
}

/// Our exchange of `req` (its method, target and headers) with `authority`.
async fn send<B>(
    pool: &Arc<Pool<Conn>>,
    authority: &Authority,
    req: &Request<B>,
) -> Result<Response<Answer>, SendError> {
    pool.exchange(authority, (req.method(), req.uri(), req.headers()), None).await
}

async fn through_own(pool: &Arc<Pool<Conn>>, method: &Method, authority: &Authority) -> Outcome {
    match send(pool, authority, &request(method, authority)).await {
        Ok(resp) => match resp.into_parts() {
            (parts, Answer::Whole(bytes)) => outcome(Response::from_parts(parts, Full::new(bytes))).await,
            (parts, Answer::Streaming(body)) => outcome(Response::from_parts(parts, body)).await,
        },
        Err(_) => Outcome::NoAnswer,
    }
}

async fn through_hyper(method: &Method, authority: &Authority) -> Outcome {
    let pool: Arc<Http1Pool<Empty<Bytes>>> = Pool::new(Duration::from_millis(500), 8);
    match pool.send(authority, request(method, authority)).await {
        Ok(resp) => outcome(resp).await,
        Err(_) => Outcome::NoAnswer,
    }
}

/// Answers from a backend, each sent through hyper's client and through ours: the same outcome (status,
/// reason, headers, body, trailers, or a failure) and the same request bytes on the wire.
/// Each: a name, the request's method, what comes out (status, body length, trailers, whether the body broke
/// off, or `none`: no answer, a `502`), and the backend's bytes.
const CORPUS: &[(&str, &str, &str, &[u8])] = &[
    ("length", "GET", "200 2", b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-b: 1\r\n\r\nok"),
    ("custom reason", "GET", "200 2", b"HTTP/1.1 200 Alright\r\ncontent-length: 2\r\n\r\nok"),
    ("empty reason", "GET", "404 0", b"HTTP/1.1 404 \r\ncontent-length: 0\r\n\r\n"),
    ("chunked, extensions, trailers", "GET", "200 12 +2 trailers", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2;a=b\r\nok\r\nA \r\n0123456789\r\n0\r\nx-t: 1\r\nx-u: 2\r\n\r\n"),
    ("chunked, no trailers", "GET", "200 3", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
    ("until close", "GET", "200 13", b"HTTP/1.1 200 OK\r\nx-a: 1\r\n\r\nuntil the end"),
    ("HTTP/1.0 until close", "GET", "200 3", b"HTTP/1.0 200 OK\r\n\r\nold"),
    ("204 ignores a length", "GET", "204 0", b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n"),
    ("304", "GET", "304 0", b"HTTP/1.1 304 Not Modified\r\netag: \"x\"\r\n\r\n"),
    ("HEAD has no body", "HEAD", "200 0", b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n"),
    ("100 then 200", "GET", "200 1", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nx"),
    ("103 then 200", "GET", "201 0", b"HTTP/1.1 103 Early Hints\r\nlink: </s.css>\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n"),
    ("chunked over a length", "GET", "200 1", b"HTTP/1.1 200 OK\r\ncontent-length: 99\r\ntransfer-encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n"),
    ("a coding but not chunked", "GET", "200 3", b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\nraw"),
    ("HTTP/1.0 with a coding", "GET", "none", b"HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("equal lengths", "GET", "200 2", b"HTTP/1.1 200 OK\r\ncontent-length: 2, 2\r\ncontent-length: 2\r\n\r\nok"),
    ("different lengths", "GET", "none", b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok!"),
    ("signed length", "GET", "none", b"HTTP/1.1 200 OK\r\ncontent-length: +2\r\n\r\nok"),
    ("empty length", "GET", "none", b"HTTP/1.1 200 OK\r\ncontent-length: \r\n\r\nok"),
    ("status under 100", "GET", "none", b"HTTP/1.1 099 Low\r\ncontent-length: 0\r\n\r\n"),
    ("not HTTP", "GET", "none", b"SSH-2.0-OpenSSH_9\r\n\r\n"),
    ("HTTP/0.9", "GET", "none", b"hello"),
    ("body cut short", "GET", "200 2 broken", b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nok"),
    ("chunks cut short", "GET", "200 2 broken", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nab"),
    ("head cut short", "GET", "none", b"HTTP/1.1 200 OK\r\ncontent-le"),
    ("nothing", "GET", "none", b""),
    ("bad chunk size", "GET", "200 0 broken", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n"),
    ("empty chunk size", "GET", "200 0 broken", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\r\n\r\n"),
    ("chunk size overflow", "GET", "200 0 broken", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1ffffffffffffffff\r\n"),
    ("no CRLF after data", "GET", "200 2 broken", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nokXX0\r\n\r\n"),
    ("bare LF in a size line", "GET", "200 0 broken", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\nok\r\n0\r\n\r\n"),
    ("newline in an extension", "GET", "200 0 broken", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2;a\nb\r\nok\r\n0\r\n\r\n"),
    ("folded header", "GET", "none", b"HTTP/1.1 200 OK\r\nx-a: 1\r\n  2\r\ncontent-length: 0\r\n\r\n"),
    ("space before a colon", "GET", "none", b"HTTP/1.1 200 OK\r\nx-a : 1\r\ncontent-length: 0\r\n\r\n"),
    ("LF line ends", "GET", "200 2", b"HTTP/1.1 200 OK\ncontent-length: 2\n\nok"),
    ("connection close", "GET", "200 2", b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"),
    ("connection keep-alive", "GET", "200 2", b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive\r\nkeep-alive: timeout=5\r\ncontent-length: 2\r\n\r\nok"),
    ("connection names a header", "GET", "200 2", b"HTTP/1.1 200 OK\r\nconnection: keep-alive, x-hop\r\nx-hop: 1\r\nx-end: 2\r\ncontent-length: 2\r\n\r\nok"),
    ("connection close, keep-alive", "GET", "200 2", b"HTTP/1.1 200 OK\r\nconnection: keep-alive\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"),
    ("connection names close", "GET", "200 2", b"HTTP/1.1 200 OK\r\nconnection: close\r\nclose: x\r\ncontent-length: 2\r\n\r\nok"),
    ("HTTP/1.0 keep-alive", "GET", "200 2", b"HTTP/1.0 200 OK\r\nconnection:  keep-alive \r\ncontent-length: 2\r\n\r\nok"),
    ("connection with obs-text", "GET", "200 2", b"HTTP/1.1 200 OK\r\nconnection: keep-alive\xff\r\ncontent-length: 2\r\n\r\nok"),
    ("obs-text value", "GET", "200 0", b"HTTP/1.1 200 OK\r\nx-a: caf\xc3\xa9\r\ncontent-length: 0\r\n\r\n"),
];

fn big_answers() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let many: String = (0..101).map(|i| format!("x-h{i}: v\r\n")).collect();
    let long = "v".repeat(500 * 1024);
    let body = vec![b'b'; 1 << 20];
    let mut large = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
    large.extend_from_slice(&body);
    vec![
        ("101 header lines", "none", format!("HTTP/1.1 200 OK\r\n{many}content-length: 0\r\n\r\n").into_bytes()),
        (
            "a 500 KiB header",
            "none",
            format!("HTTP/1.1 200 OK\r\nx-long: {long}\r\ncontent-length: 0\r\n\r\n").into_bytes(),
        ),
        ("a 1 MiB body", "200 1048576", large),
    ]
}

/// `200 2`, `200 12 +2 trailers`, `200 2 broken`, or `none`.
fn summary(outcome: &Outcome) -> String {
    let Outcome::Answer { status, body, trailers, broken, .. } = outcome else { return "none".into() };
    let mut s = format!("{status} {}", body.len());
    if !trailers.is_empty() {
        s += &format!(" +{} trailers", trailers.len());
    }
    if *broken {
        s += " broken";
    }
    s
}

async fn compare(name: &str, method: &str, expected_summary: &str, bytes: &[u8], piece: usize) {
    let method: Method = method.parse().unwrap();
    let script = Script::Answer { bytes: bytes.to_vec(), piece, close: true };
    let hyper_side = backend({
        let s = script.clone();
        move |_| s.clone()
    })
    .await;
    let ours = backend(move |_| script.clone()).await;
    let expected = through_hyper(&method, &hyper_side.authority).await;
    let got = through_own(&own_pool(), &method, &ours.authority).await;
    let short = |o: &Outcome| format!("{o:?}").chars().take(400).collect::<String>();
    assert!(got == expected, "{name} (in pieces of {piece}): ours {}, hyper's {}", short(&got), short(&expected));
    assert_eq!(summary(&got), expected_summary, "{name} (in pieces of {piece})");
    assert_eq!(heads(&ours), heads(&hyper_side), "{name}: the request heads differ");
}

/// The request heads a backend read, its address written `HOST`.
fn heads(backend: &Backend) -> Vec<String> {
    let host = backend.authority.as_str();
    let heads = backend.heads.lock().unwrap().clone();
    heads.into_iter().map(|h| String::from_utf8_lossy(&h).replace(host, "HOST")).collect()
}

#[tokio::test]
async fn every_answer_of_the_corpus_comes_out_as_through_hypers_client() {
    for (name, method, expected, bytes) in CORPUS {
        compare(name, method, expected, bytes, usize::MAX).await;
    }
    for (name, expected, bytes) in big_answers() {
        compare(name, "GET", expected, &bytes, usize::MAX).await;
    }
}

#[tokio::test]
async fn answers_that_arrive_in_small_pieces_come_out_the_same() {
    for (name, method, expected, bytes) in CORPUS.iter().filter(|c| !c.3.is_empty()) {
        compare(name, method, expected, bytes, 3).await;
    }
}

#[tokio::test]
async fn the_request_is_written_as_hyper_writes_it() {
    let script = || answer(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
    let (a, b) = (backend(move |_| script()).await, backend(move |_| script()).await);
    for method in [Method::GET, Method::DELETE, Method::OPTIONS] {
        through_hyper(&method, &a.authority).await;
        through_own(&own_pool(), &method, &b.authority).await;
    }
    let ours = heads(&b);
    assert_eq!(ours, heads(&a));
    assert_eq!(
        ours[0],
        "GET /p/a?q=1 HTTP/1.1\r\nhost: HOST\r\nx-multi: a\r\nx-multi: b\r\nuser-agent: test/1\r\n\r\n"
    );
}

#[tokio::test]
async fn a_101_for_a_request_that_asked_for_no_upgrade_is_no_answer() {
    // hyper's client hands the 101 on (and the forwarder then sends a 101 that upgrades nothing); ours
    // refuses it, so the client gets a 502 naming the cause.
    let b = backend(|_| answer(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n")).await;
    assert_eq!(through_own(&own_pool(), &Method::GET, &b.authority).await, Outcome::NoAnswer);
}

fn keep_open(bytes: &[u8]) -> Script {
    Script::Answer { bytes: bytes.to_vec(), piece: usize::MAX, close: false }
}

#[tokio::test]
async fn a_connection_is_reused_after_a_whole_a_streamed_and_a_chunked_answer() {
    let b = backend(|n| match n % 3 {
        0 => keep_open(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"),
        1 => Script::Answer {
            bytes: b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nstream".to_vec(),
            piece: 40,
            close: false,
        },
        _ => keep_open(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\nc\r\n0\r\n\r\n"),
    })
    .await;
    let pool = own_pool();
    for _ in 0..6 {
        assert!(matches!(through_own(&pool, &Method::GET, &b.authority).await, Outcome::Answer { broken: false, .. }));
        assert_eq!(pool.idle_count(&b.authority), 1);
    }
    assert_eq!(b.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_connection_is_not_reused_after_close_http10_or_a_body_until_close() {
    let cases: [(&[u8], bool); 4] = [
        (b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok", false),
        (b"HTTP/1.1 200 OK\r\nconnection: keep-alive\r\nConnection: Close\r\ncontent-length: 2\r\n\r\nok", false),
        (b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok", false),
        // The body runs until the backend closes.
        (b"HTTP/1.1 200 OK\r\n\r\nok", true),
    ];
    for (bytes, close) in cases {
        let b = backend(move |_| Script::Answer { bytes: bytes.to_vec(), piece: usize::MAX, close }).await;
        let pool = own_pool();
        assert!(matches!(through_own(&pool, &Method::GET, &b.authority).await, Outcome::Answer { broken: false, .. }));
        assert_eq!(pool.idle_count(&b.authority), 0, "{}", String::from_utf8_lossy(bytes));
    }
    // HTTP/1.0 with keep-alive is reused.
    let b = backend(|_| keep_open(b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\nok")).await;
    let pool = own_pool();
    through_own(&pool, &Method::GET, &b.authority).await;
    assert_eq!(pool.idle_count(&b.authority), 1);
}

#[tokio::test]
async fn a_body_dropped_before_its_end_closes_its_connection() {
    let b = backend(|_| Script::Answer {
        bytes: b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nab".to_vec(),
        piece: usize::MAX,
        close: false,
    })
    .await;
    let pool = own_pool();
    let resp = send(&pool, &b.authority, &request(&Method::GET, &b.authority)).await.unwrap();
    let Answer::Streaming(mut body) = resp.into_body() else { panic!("a partial body is streamed") };
    assert_eq!(body.frame().await.unwrap().unwrap().into_data().unwrap(), "ab");
    drop(body);
    assert_eq!(pool.idle_count(&b.authority), 0);
}

#[tokio::test]
async fn a_reused_connection_closed_before_an_answer_is_replaced_for_an_idempotent_request_only() {
    // Every connection answers its first request and hangs up on its second.
    let script = |n| if n == 0 { keep_open(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok") } else { Script::Hangup };
    let b = backend(script).await;
    let pool = own_pool();
    through_own(&pool, &Method::GET, &b.authority).await;
    // Reused; hung up on; sent again on a new connection.
    assert!(matches!(through_own(&pool, &Method::GET, &b.authority).await, Outcome::Answer { status: 200, .. }));
    assert_eq!(b.accepted.load(Ordering::SeqCst), 2);
    // A POST is not sent twice.
    assert_eq!(through_own(&pool, &Method::POST, &b.authority).await, Outcome::NoAnswer);
    assert_eq!(b.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_connection_the_backend_closed_while_idle_is_not_lent() {
    let b = backend(|_| answer(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")).await;
    let pool = own_pool();
    through_own(&pool, &Method::GET, &b.authority).await;
    assert_eq!(pool.idle_count(&b.authority), 1);
    // The backend closed it after answering (without saying so): the next request takes a new one.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(pool.checkout(&b.authority).is_none());
    assert!(matches!(through_own(&pool, &Method::POST, &b.authority).await, Outcome::Answer { status: 200, .. }));
    assert_eq!(b.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_idle_connection_is_lent_without_a_read_and_one_with_stray_bytes_is_not() {
    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
    let drained = |conn: &Conn| conn.stream.poll_read_ready(&mut Context::from_waker(Waker::noop())).is_pending();
    let b = backend(|_| keep_open(OK)).await;
    let mut conn = Conn::new(TcpStream::connect(b.authority.as_str()).await.unwrap());
    let req = request(&Method::GET, &b.authority);
    conn.round_trip(req.method(), req.uri(), req.headers(), None).await.unwrap();
    // The answer's read left room: the reactor knows the socket is drained, so lending it reads nothing.
    assert!(drained(&conn) && conn.reusable());
    let pool = own_pool();
    // A byte the backend sends after the answer, while the connection is idle, is seen before it is lent.
    let stray = [OK, b"x"].concat();
    let b = backend(move |_| Script::Answer { bytes: stray.clone(), piece: OK.len(), close: false }).await;
    through_own(&pool, &Method::GET, &b.authority).await;
    assert_eq!(pool.idle_count(&b.authority), 1);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(pool.checkout(&b.authority).is_none());
}

#[tokio::test]
async fn a_refused_connect_is_a_connect_error() {
    let addr = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let authority: Authority = addr.to_string().parse().unwrap();
    let Err(e) = send(&own_pool(), &authority, &request(&Method::GET, &authority)).await else {
        panic!("nothing listens there")
    };
    assert!(matches!(e, SendError::Connect(_)), "{e:?}");
}

/// A backend that reads 1 KiB of each request, answers `431` and closes, leaving the rest unread.
async fn early_answer() -> Authority {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authority = listener.local_addr().unwrap().to_string().parse().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut some = [0u8; 1024];
            let _ = s.read_exact(&mut some).await;
            let _ = s.write_all(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n").await;
        }
    });
    authority
}

#[tokio::test]
async fn an_answer_sent_before_the_head_was_written_is_relayed_as_through_hyper() {
    let big = "x".repeat(8 << 20);
    let req = |a: &Authority| {
        Request::get("/").header(HOST, a.as_str()).header("x-big", big.as_str()).body(Empty::<Bytes>::new()).unwrap()
    };
    let (a, b) = (early_answer().await, early_answer().await);
    let pool: Arc<Http1Pool<Empty<Bytes>>> = Pool::new(Duration::from_millis(500), 8);
    let theirs = match pool.send(&a, req(&a)).await {
        Ok(resp) => outcome(resp).await,
        Err(_) => Outcome::NoAnswer,
    };
    let ours = match send(&own_pool(), &b, &req(&b)).await {
        Ok(resp) => match resp.into_parts() {
            (parts, Answer::Whole(bytes)) => outcome(Response::from_parts(parts, Full::new(bytes))).await,
            (parts, Answer::Streaming(body)) => outcome(Response::from_parts(parts, body)).await,
        },
        Err(_) => Outcome::NoAnswer,
    };
    assert_eq!((summary(&ours), summary(&theirs)), ("431 0".to_owned(), "431 0".to_owned()));
}

#[test]
fn an_answers_header_map_takes_the_next_request_on_its_client_connection_without_growing() {
    let mut read = BytesMut::from(&b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"[..]);
    let (head, _) = codec::parse_response(&mut read, &Method::GET).unwrap().unwrap();
    let mut map = head.response.into_parts().0.headers;
    let room = map.capacity();
    map.clear();
    // A plain request's lines (Host, User-Agent, Accept) and the six forwarded headers the pipeline adds.
    map.reserve(3 + 6);
    assert_eq!(map.capacity(), room);
}

/// Passes a wake on to the test's task; its reference count shows who still holds it.
struct Relay(Waker);

impl std::task::Wake for Relay {
    fn wake(self: Arc<Self>) {
        self.0.wake_by_ref();
    }
}

#[tokio::test]
async fn a_connection_back_in_the_pool_holds_no_waker_of_the_request_it_served() {
    let b = backend(|_| keep_open(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")).await;
    let (pool, req) = (own_pool(), request(&Method::GET, &b.authority));
    let relay = poll_fn(|cx| Poll::Ready(Arc::new(Relay(cx.waker().clone())))).await;
    let waker = Waker::from(relay.clone());
    let timeout = Some(Duration::from_secs(300));
    let mut exchange = std::pin::pin!(pool.exchange(&b.authority, (req.method(), req.uri(), req.headers()), timeout));
    let answer = poll_fn(|_| exchange.as_mut().poll(&mut Context::from_waker(&waker))).await.unwrap();
    assert!(matches!(answer.into_body(), Answer::Whole(_)), "the whole answer came with its head");
    drop(waker);
    // The connection is idle in the pool with its response-header timer still set.
    assert_eq!(Arc::strong_count(&relay), 1, "something the connection keeps still holds the request's waker");
}
