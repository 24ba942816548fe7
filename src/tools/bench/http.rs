//! A minimal HTTP/1.1 over tokio for the load generator and the receivers: requests are built
//! once as bytes, connections are kept alive, and a response is read by its `Content-Length`.
//! It does far less work per request than reqwest/hyper, which matters because the generator
//! shares the machine's cores with the server it measures.
use std::{io, net::SocketAddr};

use bytes::{Buf, Bytes, BytesMut};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// A request's bytes, head and body, ready to be written.
pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(256 + body.len());
    out.extend_from_slice(format!("{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n").as_bytes());
    for (name, value) in headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out.freeze()
}

/// The parsed head of a request or response.
pub struct Head {
    /// The status code of a response (0 for a request).
    pub status: u16,
    pub content_length: usize,
    /// Bytes the head takes in the buffer, blank line included.
    pub len: usize,
}

/// Finds a complete head at the start of `buf`; `None` until one has arrived.
pub fn parse_head(buf: &[u8]) -> Option<Head> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let text = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = text.split("\r\n");
    let first = lines.next()?;
    let status = if first.starts_with("HTTP/") {
        first.split(' ').nth(1)?.parse().ok()?
    } else {
        0
    };
    let content_length = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    Some(Head {
        status,
        content_length,
        len: end,
    })
}

/// The value of header `name` in a complete head (case-insensitive name).
pub fn header<'a>(head: &'a [u8], name: &str) -> Option<&'a str> {
    std::str::from_utf8(head)
        .ok()?
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// Reads one message (head + body) from `stream` into `buf`, which may already hold the start
/// of it; returns the head and leaves exactly that message at the front of `buf`.
pub async fn read_message(stream: &mut TcpStream, buf: &mut BytesMut) -> io::Result<Head> {
    loop {
        if let Some(head) = parse_head(buf) {
            while buf.len() < head.len + head.content_length {
                read_more(stream, buf).await?;
            }
            return Ok(head);
        }
        read_more(stream, buf).await?;
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut BytesMut) -> io::Result<()> {
    buf.reserve(16 * 1024);
    if stream.read_buf(buf).await? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    Ok(())
}

/// One keep-alive client connection.
pub struct Conn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: BytesMut,
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Conn {
        Conn {
            addr,
            stream: None,
            buf: BytesMut::with_capacity(16 * 1024),
        }
    }

    /// Sends `req` and reads the response: (status, body). Reconnects once if the server had
    /// closed the idle connection.
    pub async fn send(&mut self, req: &[u8]) -> io::Result<(u16, Bytes)> {
        let reused = self.stream.is_some();
        match self.try_send(req).await {
            Err(_) if reused => {
                self.stream = None;
                self.try_send(req).await
            }
            other => other,
        }
    }

    async fn try_send(&mut self, req: &[u8]) -> io::Result<(u16, Bytes)> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr).await?;
            s.set_nodelay(true)?;
            self.stream = Some(s);
            self.buf.clear();
        }
        let stream = self.stream.as_mut().expect("connected above");
        let buf = &mut self.buf;
        let result = async {
            stream.write_all(req).await?;
            let head = read_message(stream, buf).await?;
            let mut msg = buf.split_to(head.len + head.content_length);
            let body = msg.split_off(head.len).freeze();
            Ok((head.status, body))
        }
        .await;
        if result.is_err() {
            self.stream = None;
        }
        result
    }
}

/// Decodes a `Transfer-Encoding: chunked` body as it arrives (the SSE clients read endless
/// ones). Chunk extensions and trailers are not expected from our server and not handled.
#[derive(Debug, Default)]
pub struct Chunked {
    /// Body bytes still due in the current chunk.
    left: usize,
    /// The CRLF that ends the current chunk is still due.
    crlf: bool,
}

impl Chunked {
    /// Moves the body bytes at the front of `raw` to `body`, leaving an incomplete size line in
    /// `raw` for the next read. `Err` once the last chunk arrived or the framing is invalid.
    pub fn decode(&mut self, raw: &mut BytesMut, body: &mut Vec<u8>) -> Result<(), &'static str> {
        loop {
            if self.left > 0 {
                let n = self.left.min(raw.len());
                body.extend_from_slice(&raw[..n]);
                raw.advance(n);
                self.left -= n;
                if self.left > 0 {
                    return Ok(());
                }
                self.crlf = true;
            }
            if self.crlf {
                if raw.len() < 2 {
                    return Ok(());
                }
                if &raw[..2] != b"\r\n" {
                    return Err("a chunk does not end with CRLF");
                }
                raw.advance(2);
                self.crlf = false;
            }
            let Some(nl) = raw.windows(2).position(|w| w == b"\r\n") else {
                return Ok(());
            };
            let size = std::str::from_utf8(&raw[..nl])
                .ok()
                .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
                .ok_or("invalid chunk size")?;
            raw.advance(nl + 2);
            if size == 0 {
                return Err("the body ended");
            }
            self.left = size;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_found_only_when_complete_and_read_case_insensitively() {
        assert!(parse_head(b"HTTP/1.1 202 Accepted\r\nContent-Length: 3\r\n").is_none());
        let h = parse_head(b"HTTP/1.1 202 Accepted\r\nContent-Length: 3\r\n\r\nabc").unwrap();
        assert_eq!((h.status, h.content_length, h.len), (202, 3, 44));
        let raw = b"POST /s0 HTTP/1.1\r\nWebhook-Id: evt_1\r\n\r\n";
        let h = parse_head(raw).unwrap();
        assert_eq!((h.status, h.content_length), (0, 0));
        assert_eq!(header(raw, "webhook-id"), Some("evt_1"));
    }

    #[test]
    fn chunked_bodies_are_decoded_whatever_the_read_boundaries() {
        let wire = b"5\r\nhello\r\na\r\n, world\n\n!\r\n0\r\n\r\n";
        for split in 0..wire.len() {
            let (mut dec, mut raw, mut body) = (Chunked::default(), BytesMut::new(), Vec::new());
            raw.extend_from_slice(&wire[..split]);
            let mut end = dec.decode(&mut raw, &mut body);
            if end.is_ok() {
                raw.extend_from_slice(&wire[split..]);
                end = dec.decode(&mut raw, &mut body);
            }
            assert_eq!(end, Err("the body ended"), "split at {split}");
            assert_eq!(body, b"hello, world\n\n!", "split at {split}");
        }
    }
}
