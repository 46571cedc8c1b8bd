//! `loadgen`: a bounded HTTP load generator for `retrieve serve`, driven by `scripts/bench-serve.sh`.
//!
//! A fixed number of client threads, each holding one keep-alive loopback connection, send
//! `POST /search` with one query per request for a fixed time (or request count); the latencies of
//! the 200 answers are summarised as percentiles. HTTP/1.1 is spoken by hand over std sockets (no
//! async runtime) so the client's own cost stays small and predictable next to the server's, and
//! every socket has timeouts so that a stalled server cannot keep the run going past its deadline.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context};
use bench::percentile;
use clap::Parser;
use serde::Serialize;

/// Socket read/write limit: a slower answer counts as an error, and it bounds how far past the
/// deadline a client can run.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed connect, so a server that is down is not hammered in a tight loop.
const RECONNECT_PAUSE: Duration = Duration::from_millis(20);
/// Caps on what one response may hold, so a broken peer cannot grow memory without bound.
const MAX_LINE: u64 = 16 << 10;
const MAX_HEADERS: usize = 100;
const MAX_BODY: usize = 64 << 20;

/// Put bounded load on `retrieve serve` and report throughput and latency percentiles.
///
/// Each client is a thread with one persistent connection that sends POST /search with one query
/// per request, taking the queries round-robin from its own offset. Requests during --warmup are not
/// counted. Non-200 answers, timeouts and dropped connections count as errors (a dropped connection
/// is reopened). Latency percentiles are over the 200 answers; throughput is 200 answers per second.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Args {
    /// Server address, HOST:PORT (e.g. 127.0.0.1:8080).
    #[arg(long)]
    addr: String,
    /// Queries, one per line (blank lines skipped).
    #[arg(long)]
    queries: PathBuf,
    /// Concurrent clients, each a thread with one keep-alive connection.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1024))]
    clients: u64,
    /// Seconds of measured load, after the warm-up.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    duration: u64,
    /// Stop after this many measured requests in all, even before --duration is up.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_requests: Option<u64>,
    /// Hits asked for per query (the server caps it).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    k: u64,
    /// Seconds of load before measuring starts (connections open, caches warm); not counted.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(0..=60))]
    warmup: u64,
    /// Bearer token, sent as Authorization: Bearer TOKEN.
    #[arg(long, env = "TWIN_SERVE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the summary as one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// One parsed HTTP response.
#[derive(Debug, PartialEq)]
struct Response {
    status: u16,
    body: Vec<u8>,
    /// Whether the connection may carry another request.
    keep_alive: bool,
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, msg.into())
}

/// Reads one line into `buf` without its CR LF; a closed connection or an overlong line is an error.
fn read_line<R: BufRead>(r: &mut R, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    r.by_ref().take(MAX_LINE).read_until(b'\n', buf)?;
    if buf.last() != Some(&b'\n') {
        return Err(io::Error::new(ErrorKind::UnexpectedEof, "connection closed mid-response (or line too long)"));
    }
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    Ok(())
}

/// Reads exactly one response (status line, headers, body), leaving what follows it unread, so
/// keep-alive connections stay in step.
fn read_response<R: BufRead>(r: &mut R) -> io::Result<Response> {
    let mut line = Vec::new();
    read_line(r, &mut line)?;
    let status_line = String::from_utf8_lossy(&line).into_owned();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let status = parts.next().and_then(|s| s.parse::<u16>().ok());
    let (true, Some(status)) = (version.starts_with("HTTP/1."), status) else {
        return Err(invalid(format!("bad status line {status_line:?}")));
    };
    let (mut keep_alive, mut length, mut chunked) = (version == "HTTP/1.1", None, false);
    read_headers(r, &mut line, |name, value| match name {
        "content-length" => length = Some(value.to_string()),
        "transfer-encoding" => chunked = value.split(',').any(|c| c.trim() == "chunked"),
        "connection" if value.contains("close") => keep_alive = false,
        "connection" if value.contains("keep-alive") => keep_alive = true,
        _ => {}
    })?;
    let length = length.map(|v| v.parse::<usize>().map_err(|_| invalid(format!("bad Content-Length {v:?}")))).transpose()?;
    let body = if chunked {
        read_chunked(r)?
    } else if let Some(n) = length {
        if n > MAX_BODY {
            return Err(invalid(format!("body of {n} bytes is too large")));
        }
        let mut body = vec![0; n];
        r.read_exact(&mut body)?;
        body
    } else if status / 100 == 1 || status == 204 || status == 304 {
        Vec::new()
    } else {
        // No length given: the body runs to the end of the connection.
        keep_alive = false;
        let mut body = Vec::new();
        r.take(MAX_BODY as u64).read_to_end(&mut body)?;
        body
    };
    Ok(Response { status, body, keep_alive })
}

/// Reads header lines up to the blank one, handing each name and value (both lower case) to `f`.
fn read_headers<R: BufRead>(r: &mut R, line: &mut Vec<u8>, mut f: impl FnMut(&str, &str)) -> io::Result<()> {
    for _ in 0..=MAX_HEADERS {
        read_line(r, line)?;
        if line.is_empty() {
            return Ok(());
        }
        let header = String::from_utf8_lossy(line).to_ascii_lowercase();
        let (name, value) = header.split_once(':').ok_or_else(|| invalid(format!("bad header {header:?}")))?;
        f(name.trim(), value.trim());
    }
    Err(invalid("too many headers"))
}

/// Reads a `Transfer-Encoding: chunked` body; chunk extensions and trailers are skipped.
fn read_chunked<R: BufRead>(r: &mut R) -> io::Result<Vec<u8>> {
    let (mut body, mut line) = (Vec::new(), Vec::new());
    loop {
        read_line(r, &mut line)?;
        let text = String::from_utf8_lossy(&line);
        let hex = text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(hex, 16).map_err(|_| invalid(format!("bad chunk size {text:?}")))?;
        if size == 0 {
            return read_headers(r, &mut line, |_, _| {}).map(|()| body);
        }
        if size > MAX_BODY - body.len() {
            return Err(invalid("chunked body too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        read_line(r, &mut line)?;
        if !line.is_empty() {
            return Err(invalid("chunk not followed by CR LF"));
        }
    }
}

/// The bytes of one request, head and body, so that it goes out in a single write.
fn request(method: &str, path: &str, host: &str, token: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// A `POST /search` for one query; serde_json does the escaping.
fn search_request(host: &str, token: Option<&str>, query: &str, k: u64) -> anyhow::Result<Vec<u8>> {
    let body = serde_json::to_vec(&serde_json::json!({ "queries": [query], "k": k }))?;
    Ok(request("POST", "/search", host, token, &body))
}

/// Non-blank lines, trimmed.
fn parse_queries(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect()
}

fn load_queries(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read queries from {}", path.display()))?;
    let queries = parse_queries(&text);
    ensure!(!queries.is_empty(), "{} holds no queries (one per line expected)", path.display());
    Ok(queries)
}

fn connect(addr: &SocketAddr) -> io::Result<BufReader<TcpStream>> {
    let stream = TcpStream::connect_timeout(addr, CONNECT_TIMEOUT)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(BufReader::with_capacity(64 << 10, stream))
}

fn exchange(conn: &mut BufReader<TcpStream>, request: &[u8]) -> io::Result<Response> {
    conn.get_mut().write_all(request)?;
    read_response(conn)
}

/// The error class of a failed exchange, as reported in the summary.
fn error_kind(e: &io::Error) -> &'static str {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => "timeout",
        ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => "closed",
        ErrorKind::ConnectionRefused => "refused",
        _ => "io",
    }
}

/// What all clients share: the prepared requests and the bounds of the run.
struct Plan {
    addr: SocketAddr,
    requests: Vec<Vec<u8>>,
    measure_from: Instant,
    deadline: Instant,
    max_requests: Option<u64>,
    claimed: AtomicU64,
}

/// One client's measured outcomes.
#[derive(Default)]
struct ClientStats {
    ok_ms: Vec<f64>,
    errors: BTreeMap<String, u64>,
}

/// Sends requests over one connection (reopened when lost) until the deadline or the shared cap.
fn run_client(plan: &Plan, id: usize, clients: usize) -> ClientStats {
    let mut next = id * plan.requests.len() / clients;
    let (mut conn, mut stats) = (None, ClientStats::default());
    loop {
        let now = Instant::now();
        let measured = now >= plan.measure_from;
        if now >= plan.deadline || (measured && plan.max_requests.is_some_and(|max| plan.claimed.fetch_add(1, Ordering::Relaxed) >= max)) {
            return stats;
        }
        let outcome = match conn.take().map_or_else(|| connect(&plan.addr), Ok) {
            Ok(mut c) => {
                let started = Instant::now();
                let response = exchange(&mut c, &plan.requests[next % plan.requests.len()]);
                let ms = started.elapsed().as_secs_f64() * 1e3;
                next += 1;
                if matches!(&response, Ok(r) if r.keep_alive) {
                    conn = Some(c);
                }
                response.map(|r| (r.status, ms))
            }
            Err(e) => {
                thread::sleep(RECONNECT_PAUSE);
                Err(e)
            }
        };
        let kind = match outcome {
            _ if !measured => continue,
            Ok((200, ms)) => {
                stats.ok_ms.push(ms);
                continue;
            }
            Ok((status, _)) => status.to_string(),
            Err(e) => error_kind(&e).to_string(),
        };
        *stats.errors.entry(kind).or_default() += 1;
    }
}

/// The report printed at the end of a run.
#[derive(Debug, Serialize)]
struct Summary {
    /// Measured requests: 200 answers plus errors.
    requests: u64,
    errors: u64,
    /// Errors by status code, or "timeout", "closed", "refused", "io".
    errors_by_kind: BTreeMap<String, u64>,
    seconds: f64,
    /// 200 answers per second.
    qps: f64,
    p50_ms: Option<f64>,
    p90_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
    clients: u64,
}

fn summarize(stats: Vec<ClientStats>, seconds: f64, clients: u64) -> Summary {
    let (mut ms, mut errors_by_kind) = (Vec::new(), BTreeMap::new());
    for s in stats {
        ms.extend(s.ok_ms);
        for (kind, n) in s.errors {
            *errors_by_kind.entry(kind).or_default() += n;
        }
    }
    ms.sort_by(f64::total_cmp);
    let errors: u64 = errors_by_kind.values().sum();
    let qps = if seconds > 0.0 { ms.len() as f64 / seconds } else { 0.0 };
    let [p50_ms, p90_ms, p99_ms] = [50.0, 90.0, 99.0].map(|q| percentile(&ms, q));
    let (requests, max_ms) = (ms.len() as u64 + errors, ms.last().copied());
    Summary { requests, errors, errors_by_kind, seconds, qps, p50_ms, p90_ms, p99_ms, max_ms, clients }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let queries = load_queries(&args.queries)?;
    let health_url = format!("http://{}/health", args.addr);
    let addr = args.addr.to_socket_addrs().map_err(|e| anyhow!("cannot reach {health_url}: {e}"))?.next();
    let addr = addr.ok_or_else(|| anyhow!("cannot reach {health_url}: {} resolves to no address", args.addr))?;
    let token = args.token.as_deref();
    let health = connect(&addr)
        .and_then(|mut c| exchange(&mut c, &request("GET", "/health", &args.addr, token, &[])))
        .map_err(|e| anyhow!("cannot reach {health_url}: {e}"))?;
    ensure!(health.status == 200, "{health_url} answered {}: {}", health.status, String::from_utf8_lossy(&health.body).trim());
    let requests = queries.iter().map(|q| search_request(&args.addr, token, q, args.k)).collect::<anyhow::Result<_>>()?;
    let clients = args.clients as usize;
    let measure_from = Instant::now() + Duration::from_secs(args.warmup);
    let deadline = measure_from + Duration::from_secs(args.duration);
    let plan = Plan { addr, requests, measure_from, deadline, max_requests: args.max_requests, claimed: AtomicU64::new(0) };
    let stats = thread::scope(|s| -> anyhow::Result<Vec<ClientStats>> {
        let plan = &plan;
        let mut handles = Vec::with_capacity(clients);
        for id in 0..clients {
            let builder = thread::Builder::new().name(format!("client-{id}"));
            handles.push(builder.spawn_scoped(s, move || run_client(plan, id, clients)).context("cannot start a client thread")?);
        }
        handles.into_iter().map(|h| h.join().map_err(|_| anyhow!("a client thread panicked"))).collect()
    })?;
    let summary = summarize(stats, Instant::now().saturating_duration_since(measure_from).as_secs_f64(), args.clients);
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        let (s, ms) = (&summary, |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}")));
        println!("requests   {} ({} errors {:?})", s.requests, s.errors, s.errors_by_kind);
        println!("seconds    {:.2} ({} clients)", s.seconds, s.clients);
        println!("throughput {:.1} req/s", s.qps);
        println!("latency ms p50 {}  p90 {}  p99 {}  max {}", ms(s.p50_ms), ms(s.p90_ms), ms(s.p99_ms), ms(s.max_ms));
    }
    if summary.requests == summary.errors {
        bail!("no request was answered 200 (errors: {:?})", summary.errors_by_kind);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out at most `step` bytes per read, like a socket delivering in pieces.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    const CHUNKED: &[u8] =
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Trailer: 1\r\n\r\n";

    #[test]
    fn content_length_response_leaves_the_next_one_unread() {
        let data = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\ncontent-length: 11\r\n\r\n{\"a\":[1,2]}HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy";
        let mut r = &data[..];
        assert_eq!(read_response(&mut r).unwrap(), Response { status: 200, body: b"{\"a\":[1,2]}".to_vec(), keep_alive: true });
        assert_eq!(read_response(&mut r).unwrap(), Response { status: 503, body: b"busy".to_vec(), keep_alive: false });
        assert!(r.is_empty());
    }

    #[test]
    fn chunked_response_is_joined_and_trailers_skipped() {
        let data = [CHUNKED, b"HTTP/1.1 204 No Content\r\n\r\n"].concat();
        let mut r = &data[..];
        assert_eq!(read_response(&mut r).unwrap(), Response { status: 200, body: b"Wikipedia".to_vec(), keep_alive: true });
        assert_eq!(read_response(&mut r).unwrap().status, 204);
        assert!(r.is_empty());
    }

    #[test]
    fn responses_split_across_reads_parse_the_same() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        for step in [1, 2, 3, 7] {
            let mut r = BufReader::with_capacity(4, Trickle { data: plain, step });
            assert_eq!(read_response(&mut r).unwrap().body, b"hello");
            let mut r = BufReader::with_capacity(4, Trickle { data: CHUNKED, step });
            assert_eq!(read_response(&mut r).unwrap().body, b"Wikipedia");
        }
    }

    #[test]
    fn close_delimited_and_http10_responses_end_the_connection() {
        let mut r = &b"HTTP/1.1 200 OK\r\n\r\nuntil close"[..];
        assert_eq!(read_response(&mut r).unwrap(), Response { status: 200, body: b"until close".to_vec(), keep_alive: false });
        let mut r = &b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"[..];
        assert!(!read_response(&mut r).unwrap().keep_alive);
    }

    #[test]
    fn truncated_or_garbled_responses_are_errors() {
        let kind = |data: &[u8]| read_response(&mut &data[..]).unwrap_err().kind();
        assert_eq!(kind(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"), ErrorKind::UnexpectedEof);
        assert_eq!(kind(b"HTTP/1.1 200 OK\r\nContent-Le"), ErrorKind::UnexpectedEof);
        assert_eq!(kind(b""), ErrorKind::UnexpectedEof);
        assert_eq!(kind(b"SSH-2.0-OpenSSH\r\n\r\n"), ErrorKind::InvalidData);
        assert_eq!(kind(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"), ErrorKind::InvalidData);
    }

    #[test]
    fn search_request_escapes_the_query_and_counts_body_bytes() {
        let query = "say \"hi\"\n\\ é";
        let bytes = search_request("127.0.0.1:9", Some("s3cret"), query, 7).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("POST /search HTTP/1.1\r\nHost: 127.0.0.1:9\r\nAuthorization: Bearer s3cret\r\n"));
        assert!(head.ends_with(&format!("Content-Length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json, serde_json::json!({ "queries": [query], "k": 7 }));
    }

    #[test]
    fn queries_skip_blank_lines_and_summary_merges_clients() {
        assert_eq!(parse_queries("a\n\n  \r\n b \r\nc"), ["a", "b", "c"]);
        let one = ClientStats { ok_ms: vec![3.0, 1.0], errors: BTreeMap::from([("503".into(), 2)]) };
        let two = ClientStats { ok_ms: vec![2.0, 4.0], errors: BTreeMap::from([("503".into(), 1), ("timeout".into(), 1)]) };
        let s = summarize(vec![one, two], 2.0, 2);
        assert_eq!((s.requests, s.errors, s.qps, s.p50_ms, s.max_ms), (8, 4, 2.0, Some(2.0), Some(4.0)));
        assert_eq!(s.errors_by_kind, BTreeMap::from([("503".into(), 3), ("timeout".into(), 1)]));
    }

    #[test]
    fn client_keeps_its_connection_reconnects_after_a_drop_and_stops_at_the_cap() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Each connection: two 200s, one 503, then the fourth request is read and left unanswered.
        let server = thread::spawn(move || {
            for stream in listener.incoming().take(2) {
                let mut r = BufReader::new(stream.unwrap());
                for answer in ["200 OK", "200 OK", "503 Service Unavailable", ""] {
                    let (mut line, mut length) = (Vec::new(), 0);
                    read_line(&mut r, &mut line).unwrap();
                    read_headers(&mut r, &mut line, |name, value| {
                        if name == "content-length" {
                            length = value.parse().unwrap()
                        }
                    })
                    .unwrap();
                    let mut body = vec![0; length];
                    r.read_exact(&mut body).unwrap();
                    assert_eq!(serde_json::from_slice::<serde_json::Value>(&body).unwrap()["k"], 3);
                    if !answer.is_empty() {
                        r.get_mut().write_all(format!("HTTP/1.1 {answer}\r\nContent-Length: 2\r\n\r\n{{}}").as_bytes()).unwrap();
                    }
                }
            }
        });
        let requests = ["a", "b"].map(|q| search_request(&addr.to_string(), None, q, 3).unwrap()).to_vec();
        let now = Instant::now();
        let (measure_from, deadline) = (now, now + Duration::from_secs(30));
        let plan = Plan { addr, requests, measure_from, deadline, max_requests: Some(8), claimed: AtomicU64::new(0) };
        let stats = run_client(&plan, 0, 1);
        server.join().unwrap();
        assert_eq!(stats.ok_ms.len(), 4);
        assert_eq!(stats.errors, BTreeMap::from([("503".into(), 2), ("closed".into(), 2)]));
    }
}
