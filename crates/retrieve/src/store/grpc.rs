//! One unary gRPC call over cleartext HTTP/2, blocking, on its own connection: what a bulk
//! insert into Milvus needs, without an async runtime or a gRPC stack in the build.
//!
//! The client sends the connection preface and its settings (large receive windows, so the
//! server never waits on it) and one HEADERS frame (HPACK literals, no Huffman, no table), waits
//! for the server's settings, and sends the length-prefixed message in DATA frames within the
//! server's flow-control windows, answering
//! the server's SETTINGS and PINGs as they come. It reads the answer's DATA frames until the
//! stream ends. Response headers and trailers are not decoded (that needs HPACK's Huffman code
//! and tables): Milvus reports a refused request inside the answer message, and an answer
//! without a message is reported as a failed call.

use std::io::{Read, Write};
use std::net::TcpStream;

use super::http::{Client, Failure};

/// Frame types and flags (RFC 9113).
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;

/// The stream of the call (the first a client opens).
const STREAM: u32 = 1;
/// Largest frame either side may send before settings say otherwise (this client never
/// raises it, so a larger frame from the server is refused).
const DEFAULT_MAX_FRAME: usize = 16_384;
/// Flow-control windows before settings or updates.
const DEFAULT_WINDOW: i64 = 65_535;
/// Largest window, offered to the server for its answer.
const MAX_WINDOW: u32 = (1 << 31) - 1;
/// Largest answer accepted.
const MAX_ANSWER: usize = 64 << 20;

fn io(e: std::io::Error) -> Failure {
    Failure::Io(e.to_string())
}

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let n = payload.len() as u32;
    out.extend_from_slice(&n.to_be_bytes()[1..]);
    out.extend([kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// HPACK integer with an `n`-bit prefix whose other bits are `first`.
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// The request's header block: every field a literal without indexing, with a new name.
fn header_block(authority: &str, path: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        out.push(0);
        hpack_int(&mut out, 0, 7, name.len());
        out.extend_from_slice(name.as_bytes());
        hpack_int(&mut out, 0, 7, value.len());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// Reads one frame: its type, flags, stream and payload (refusing frames over `max`).
fn read_frame(s: &mut TcpStream, max: usize) -> Result<(u8, u8, u32, Vec<u8>), Failure> {
    let mut head = [0u8; 9];
    s.read_exact(&mut head).map_err(|e| Failure::Io(format!("the server closed the connection: {e}")))?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    if len > max {
        return Err(Failure::Protocol(format!("a {len}-byte frame, over the {max} bytes allowed")));
    }
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).map_err(io)?;
    Ok((head[3], head[4], stream, payload))
}

/// The state of the call as frames come in.
struct Call {
    /// What the server lets this side send: on the connection and on the stream.
    send_conn: i64,
    send_stream: i64,
    /// The server's initial stream window (changes to it move the stream's window).
    initial: i64,
    answer: Vec<u8>,
    ended: bool,
}

impl Call {
    /// Handles one frame from the server, writing what it asks for (acks) to `out`.
    fn take(&mut self, (kind, flags, stream, payload): (u8, u8, u32, Vec<u8>), out: &mut Vec<u8>) -> Result<(), Failure> {
        match kind {
            SETTINGS if flags & ACK == 0 => {
                for s in payload.chunks_exact(6) {
                    let (id, value) = (u16::from_be_bytes([s[0], s[1]]), u32::from_be_bytes([s[2], s[3], s[4], s[5]]));
                    if id == 0x4 {
                        self.send_stream += i64::from(value) - self.initial;
                        self.initial = i64::from(value);
                    }
                }
                frame(out, SETTINGS, ACK, 0, &[]);
            }
            PING if flags & ACK == 0 => frame(out, PING, ACK, 0, &payload),
            WINDOW_UPDATE if payload.len() == 4 => {
                let inc = i64::from(u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & 0x7fff_ffff);
                if stream == 0 {
                    self.send_conn += inc;
                } else if stream == STREAM {
                    self.send_stream += inc;
                }
            }
            DATA if stream == STREAM => {
                let body = if flags & PADDED != 0 {
                    let pad = usize::from(*payload.first().ok_or_else(|| Failure::Protocol("an empty padded frame".into()))?);
                    payload.get(1..payload.len().saturating_sub(pad)).unwrap_or(&[])
                } else {
                    &payload[..]
                };
                if self.answer.len() + body.len() > MAX_ANSWER {
                    return Err(Failure::Protocol(format!("an answer over {MAX_ANSWER} bytes")));
                }
                self.answer.extend_from_slice(body);
                self.ended |= flags & END_STREAM != 0;
            }
            HEADERS if stream == STREAM => self.ended |= flags & END_STREAM != 0,
            RST_STREAM if stream == STREAM => {
                let code = payload.get(..4).map_or(0, |c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
                return Err(Failure::Io(format!("the server reset the call (HTTP/2 error {code})")));
            }
            GOAWAY if !self.ended => {
                let text = String::from_utf8_lossy(payload.get(8..).unwrap_or(&[])).into_owned();
                return Err(Failure::Io(format!(
                    "the server closed the connection (GOAWAY{})",
                    if text.is_empty() { String::new() } else { format!(": {text}") }
                )));
            }
            _ => {}
        }
        Ok(())
    }
}

impl Call {
    /// Reads one frame from the server, handles it and sends what it asks for; answers the
    /// frame's type and flags.
    fn receive(&mut self, s: &mut TcpStream) -> Result<(u8, u8), Failure> {
        let f = read_frame(s, DEFAULT_MAX_FRAME)?;
        let (kind, flags) = (f.0, f.1);
        let mut acks = Vec::new();
        self.take(f, &mut acks)?;
        if !acks.is_empty() {
            s.write_all(&acks).map_err(io)?;
        }
        Ok((kind, flags))
    }
}

/// Calls the gRPC method at `path` (`/package.Service/Method`) with the encoded `message` and
/// answers the encoded answer message.
pub(crate) fn call(client: &Client, path: &str, message: &[u8]) -> Result<Vec<u8>, Failure> {
    let mut s = client.connect()?;
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // Settings: the largest initial stream window; then the connection window to the same.
    let mut settings = Vec::new();
    settings.extend(0x4u16.to_be_bytes());
    settings.extend(MAX_WINDOW.to_be_bytes());
    frame(&mut out, SETTINGS, 0, 0, &settings);
    frame(&mut out, WINDOW_UPDATE, 0, 0, &(MAX_WINDOW - DEFAULT_WINDOW as u32).to_be_bytes());
    let block = header_block(&format!("{}:{}", client.host(), client.port()), path);
    if block.len() > DEFAULT_MAX_FRAME {
        return Err(Failure::Protocol("request headers over one frame".into()));
    }
    frame(&mut out, HEADERS, END_HEADERS, STREAM, &block);
    s.write_all(&out).map_err(io)?;

    let mut body = Vec::with_capacity(message.len() + 5);
    body.push(0); // not compressed
    body.extend((message.len() as u32).to_be_bytes());
    body.extend_from_slice(message);
    let mut call =
        Call { send_conn: DEFAULT_WINDOW, send_stream: DEFAULT_WINDOW, initial: DEFAULT_WINDOW, answer: Vec::new(), ended: false };
    // The server's preface is its settings: wait for them, so that its windows bound the data
    // from the first frame on (one round trip).
    while !matches!(call.receive(&mut s)?, (SETTINGS, flags) if flags & ACK == 0) {}
    let mut sent = 0;
    while sent < body.len() {
        let room = call.send_conn.min(call.send_stream).min(DEFAULT_MAX_FRAME as i64);
        if room <= 0 {
            // Wait for the server to open its windows, answering what it sends meanwhile.
            call.receive(&mut s)?;
            if call.ended {
                break;
            }
            continue;
        }
        let n = (room as usize).min(body.len() - sent);
        let last = sent + n == body.len();
        let mut f = Vec::with_capacity(n + 9);
        frame(&mut f, DATA, if last { END_STREAM } else { 0 }, STREAM, &body[sent..sent + n]);
        s.write_all(&f).map_err(io)?;
        sent += n;
        call.send_conn -= n as i64;
        call.send_stream -= n as i64;
    }
    while !call.ended {
        call.receive(&mut s)?;
    }
    // The answer: one length-prefixed, uncompressed message.
    match call.answer.as_slice() {
        [] => Err(Failure::Protocol("the call failed without an answer message (see the server's log)".into())),
        [0, a, b, c, d, rest @ ..] if u32::from_be_bytes([*a, *b, *c, *d]) as usize == rest.len() => Ok(rest.to_vec()),
        [1, ..] => Err(Failure::Protocol("a compressed answer (not asked for)".into())),
        _ => Err(Failure::Protocol("the answer is not one gRPC message".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpack_integers_follow_the_rfc_examples() {
        // RFC 7541 C.1: 10 with a 5-bit prefix, 1337 with a 5-bit prefix.
        let mut out = Vec::new();
        hpack_int(&mut out, 0, 5, 10);
        assert_eq!(out, [10]);
        out.clear();
        hpack_int(&mut out, 0, 5, 1337);
        assert_eq!(out, [31, 154, 10]);
        out.clear();
        hpack_int(&mut out, 0, 7, 127);
        assert_eq!(out, [127, 0]);
    }

    #[test]
    fn frames_move_windows_and_collect_the_answer() {
        let mut call = Call { send_conn: 10, send_stream: 10, initial: DEFAULT_WINDOW, answer: Vec::new(), ended: false };
        let mut acks = Vec::new();
        // The server's settings raise the initial stream window by 100: the stream's window follows.
        let settings = [0u8, 4, 0, 1, 0, 0x63]; // 0x4 = 65,635
        call.take((SETTINGS, 0, 0, settings.to_vec()), &mut acks).unwrap();
        assert_eq!((call.send_conn, call.send_stream), (10, 110));
        assert_eq!(acks, [0, 0, 0, SETTINGS, ACK, 0, 0, 0, 0]);
        call.take((WINDOW_UPDATE, 0, 0, 5u32.to_be_bytes().to_vec()), &mut acks).unwrap();
        assert_eq!(call.send_conn, 15);
        // Padded data, then trailers that end the stream.
        call.take((DATA, PADDED, STREAM, vec![2, b'h', b'i', 0, 0]), &mut acks).unwrap();
        call.take((HEADERS, END_STREAM | END_HEADERS, STREAM, vec![]), &mut acks).unwrap();
        assert_eq!((call.answer.as_slice(), call.ended), (&b"hi"[..], true));
        assert!(call.take((RST_STREAM, 0, STREAM, vec![0, 0, 0, 2]), &mut acks).is_err());
    }

    /// A server on loopback that allows 10 bytes at a time and opens its windows only as data
    /// arrives: the call waits on it, never oversteps a window, answers its PING, and returns
    /// the answer message.
    #[test]
    fn a_call_respects_tight_windows_and_returns_the_answer() {
        use std::net::TcpListener;
        use std::time::Duration;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut preface = [0u8; 24];
            s.read_exact(&mut preface).unwrap();
            assert_eq!(&preface, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
            // A 10-byte initial stream window, and a PING to answer while sending.
            let mut out = Vec::new();
            frame(&mut out, SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 10]);
            frame(&mut out, PING, 0, 0, &[7; 8]);
            s.write_all(&out).unwrap();
            let (mut body, mut pinged) = (Vec::new(), false);
            loop {
                let (kind, flags, stream, payload) = read_frame(&mut s, DEFAULT_MAX_FRAME).unwrap();
                match kind {
                    PING => {
                        assert_eq!((flags, payload.as_slice()), (ACK, &[7u8; 8][..]));
                        pinged = true;
                    }
                    DATA => {
                        assert!(payload.len() <= 10, "a {}-byte frame in a 10-byte window", payload.len());
                        body.extend_from_slice(&payload);
                        let mut update = Vec::new();
                        frame(&mut update, WINDOW_UPDATE, 0, stream, &(payload.len() as u32).to_be_bytes());
                        s.write_all(&update).unwrap();
                        if flags & END_STREAM != 0 {
                            break;
                        }
                    }
                    _ => {}
                }
            }
            // Headers, the answer, and trailers that end the stream.
            let mut out = Vec::new();
            frame(&mut out, HEADERS, END_HEADERS, STREAM, &[0x88]);
            frame(&mut out, DATA, 0, STREAM, &[0, 0, 0, 0, 3, b'y', b'e', b's']);
            frame(&mut out, HEADERS, END_HEADERS | END_STREAM, STREAM, &[]);
            s.write_all(&out).unwrap();
            (body, pinged)
        });
        let client = Client::new("127.0.0.1", port, Duration::from_secs(5), Duration::from_secs(5));
        let message: Vec<u8> = (0..100u8).collect();
        let answer = call(&client, "/pkg.Service/Method", &message).unwrap();
        assert_eq!(answer, b"yes");
        let (body, pinged) = server.join().unwrap();
        assert!(pinged, "the PING was answered");
        assert_eq!(body[..5], [0, 0, 0, 0, 100]);
        assert_eq!(body[5..], message[..]);
    }
}
