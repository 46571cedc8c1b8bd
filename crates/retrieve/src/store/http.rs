//! A minimal blocking HTTP/1.1 client for the Milvus REST API: one connection per request
//! (`Connection: close`), timeouts on connect and on every read and write, bodies by
//! `Content-Length`, chunked, or read to the end, and a bound on the size of an answer.
//!
//! Why not a client crate: the ones that fit (ureq, reqwest) bring `url` and its Unicode tables
//! into the build, and those change the features of crates the burn stack shares, which rebuilds
//! it. Milvus' REST API needs plain HTTP/1.1 requests with JSON bodies and nothing more.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Largest answer read, in bytes (a page of stored vectors is a few megabytes).
const MAX_BODY: usize = 256 << 20;
/// Longest status or header line.
const MAX_LINE: usize = 64 << 10;

/// Why a request got no answer.
#[derive(Debug)]
pub(crate) enum Failure {
    /// No connection was made: nothing was sent, so any request may be sent again.
    Connect(String),
    /// The connection broke or timed out after the request may have been sent.
    Io(String),
    /// The answer is not HTTP, or too large.
    Protocol(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Connect(m) | Failure::Io(m) | Failure::Protocol(m) => f.write_str(m),
        }
    }
}

/// A server's address and the timeouts of every request to it.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    host: String,
    port: u16,
    connect_timeout: Duration,
    io_timeout: Duration,
}

impl Client {
    pub(crate) fn new(host: &str, port: u16, connect_timeout: Duration, io_timeout: Duration) -> Self {
        Self { host: host.to_string(), port, connect_timeout, io_timeout }
    }

    /// The server's host, as given.
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// The server's port.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// A connection with the client's timeouts set.
    pub(crate) fn connect(&self) -> Result<TcpStream, Failure> {
        let addrs = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| Failure::Connect(format!("cannot resolve {}: {e}", self.host)))?;
        let mut last = format!("{} resolves to no address", self.host);
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.connect_timeout) {
                Ok(s) => {
                    let set = s
                        .set_read_timeout(Some(self.io_timeout))
                        .and_then(|()| s.set_write_timeout(Some(self.io_timeout)))
                        .and_then(|()| s.set_nodelay(true));
                    set.map_err(|e| Failure::Connect(e.to_string()))?;
                    return Ok(s);
                }
                Err(e) => last = format!("{addr}: {e}"),
            }
        }
        Err(Failure::Connect(last))
    }

    /// Sends one request with a JSON `body` (or none) and answers the status and the body.
    pub(crate) fn send(&self, method: &str, path: &str, token: Option<&str>, body: Option<&[u8]>) -> Result<(u16, Vec<u8>), Failure> {
        let stream = self.connect()?;
        let io = |e: std::io::Error| Failure::Io(e.to_string());
        let mut head =
            format!("{method} {path} HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\nAccept: application/json\r\n", self.host, self.port);
        if let Some(t) = token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        if let Some(b) = body {
            head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len()));
        }
        head.push_str("\r\n");
        let mut writer = std::io::BufWriter::new(&stream);
        writer.write_all(head.as_bytes()).map_err(io)?;
        if let Some(b) = body {
            writer.write_all(b).map_err(io)?;
        }
        writer.flush().map_err(io)?;
        drop(writer);
        read_response(BufReader::new(&stream))
    }
}

/// One line without its `\r\n`, at most [`MAX_LINE`] bytes.
fn line(r: &mut impl BufRead) -> Result<String, Failure> {
    let mut buf = Vec::new();
    r.by_ref().take(MAX_LINE as u64).read_until(b'\n', &mut buf).map_err(|e| Failure::Io(e.to_string()))?;
    if !buf.ends_with(b"\n") {
        return Err(if buf.is_empty() {
            Failure::Io("the server closed the connection without answering".into())
        } else {
            Failure::Protocol("an over-long or unterminated line in the answer".into())
        });
    }
    while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        buf.pop();
    }
    String::from_utf8(buf).map_err(|_| Failure::Protocol("a header line is not UTF-8".into()))
}

/// Reads a status line, headers and body.
pub(crate) fn read_response(mut r: impl BufRead) -> Result<(u16, Vec<u8>), Failure> {
    let status_line = line(&mut r)?;
    let mut parts = status_line.splitn(3, ' ');
    let status = match (parts.next(), parts.next()) {
        (Some(v), Some(code)) if v.starts_with("HTTP/1.") => code.parse::<u16>().ok(),
        _ => None,
    }
    .ok_or_else(|| Failure::Protocol(format!("not an HTTP answer: {:?}", status_line.chars().take(80).collect::<String>())))?;
    let (mut length, mut chunked) = (None, false);
    loop {
        let h = line(&mut r)?;
        if h.is_empty() {
            break;
        }
        let Some((name, value)) = h.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n: usize = value.parse().map_err(|_| Failure::Protocol(format!("bad Content-Length {value:?}")))?;
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") && value.to_ascii_lowercase().contains("chunked") {
            chunked = true;
        }
    }
    let too_big = || Failure::Protocol(format!("the answer is larger than {MAX_BODY} bytes"));
    let io = |e: std::io::Error| Failure::Io(e.to_string());
    let mut body = Vec::new();
    if chunked {
        loop {
            let size_line = line(&mut r)?;
            let hex = size_line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(hex, 16).map_err(|_| Failure::Protocol(format!("bad chunk size {hex:?}")))?;
            if size == 0 {
                break;
            }
            if body.len() + size > MAX_BODY {
                return Err(too_big());
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..]).map_err(io)?;
            line(&mut r)?;
        }
    } else if let Some(n) = length {
        if n > MAX_BODY {
            return Err(too_big());
        }
        body.resize(n, 0);
        r.read_exact(&mut body).map_err(io)?;
    } else {
        r.take(MAX_BODY as u64 + 1).read_to_end(&mut body).map_err(io)?;
        if body.len() > MAX_BODY {
            return Err(too_big());
        }
    }
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_by_length_by_chunks_or_to_the_end() {
        let by_length = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{\"code\":200}";
        assert_eq!(read_response(&by_length[..]).unwrap(), (200, b"{\"code\":200}".to_vec()));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3;x=y\r\n:1}\r\n0\r\n\r\n";
        assert_eq!(read_response(&chunked[..]).unwrap(), (200, b"{\"a\":1}".to_vec()));
        let to_end = b"HTTP/1.0 503 Service Unavailable\r\n\r\nbusy";
        assert_eq!(read_response(&to_end[..]).unwrap(), (503, b"busy".to_vec()));
    }

    #[test]
    fn broken_and_oversized_answers_are_errors() {
        assert!(matches!(read_response(&b""[..]), Err(Failure::Io(_))));
        assert!(matches!(read_response(&b"SSH-2.0-OpenSSH\r\n\r\n"[..]), Err(Failure::Protocol(_))));
        assert!(matches!(read_response(&b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n"[..]), Err(Failure::Protocol(_))));
        assert!(matches!(read_response(&b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"[..]), Err(Failure::Io(_))));
        assert!(matches!(read_response(&b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"[..]), Err(Failure::Protocol(_))));
        let huge = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n", MAX_BODY + 1);
        assert!(matches!(read_response(huge.as_bytes()), Err(Failure::Protocol(_))));
    }

    #[test]
    fn a_closed_port_is_a_connect_failure() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let c = Client::new("127.0.0.1", port, Duration::from_secs(1), Duration::from_secs(1));
        assert!(matches!(c.send("GET", "/", None, None), Err(Failure::Connect(_))));
    }
}
