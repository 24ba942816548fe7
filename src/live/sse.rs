//! The Server-Sent-Events wire format (WHATWG HTML §9.2): frames are built once as `Bytes` and
//! shared by every stream that sends them.
use bytes::{BufMut, Bytes, BytesMut};

/// The heartbeat: a comment line, ignored by every client, that keeps proxies from timing out.
pub const PING: &[u8] = b": ping\n\n";

/// One event. `id` is omitted for frames that are not stored events (the client's
/// Last-Event-ID then stays where it was). `data` is JSON on one line; should a line break ever
/// slip in, it is split over `data:` lines, which clients join back with `\n`.
pub fn frame(id: Option<&str>, event: &str, data: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + event.len() + 64);
    put_frame(&mut out, id, event, data);
    out.freeze()
}

pub fn put_frame(out: &mut BytesMut, id: Option<&str>, event: &str, data: &str) {
    if let Some(id) = id {
        put_field(out, "id", id);
    }
    put_field(out, "event", event);
    for line in data.split('\n') {
        put_field(out, "data", line.strip_suffix('\r').unwrap_or(line));
    }
    out.put_u8(b'\n');
}

/// `data.end_user` of a framed event's body (its `data:` lines joined), if it has one.
pub fn end_user_of(frame: &[u8]) -> Option<Box<str>> {
    #[derive(serde::Deserialize)]
    struct Body {
        data: Option<Data>,
    }
    #[derive(serde::Deserialize)]
    struct Data {
        end_user: Option<Box<str>>,
    }
    let text = std::str::from_utf8(frame).ok()?;
    let body: String = text
        .split('\n')
        .filter_map(|line| line.strip_prefix("data: "))
        .collect::<Vec<_>>()
        .join("\n");
    serde_json::from_str::<Body>(&body).ok()?.data?.end_user
}

/// How long a disconnected EventSource waits before reconnecting (it then sends Last-Event-ID).
pub fn retry(millis: u64) -> Bytes {
    Bytes::from(format!("retry: {millis}\n\n"))
}

fn put_field(out: &mut BytesMut, name: &str, value: &str) {
    out.reserve(name.len() + value.len() + 3);
    out.put_slice(name.as_bytes());
    out.put_slice(b": ");
    // A line break would end the field early: ids and types are validated and data is split
    // above, so this only guards against a future caller.
    if value.contains(['\r', '\n']) {
        out.put_slice(value.replace(['\r', '\n'], "").as_bytes());
    } else {
        out.put_slice(value.as_bytes());
    }
    out.put_u8(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_one_field_per_line_and_end_with_a_blank_line() {
        assert_eq!(
            &frame(Some("evt_1"), "generation.queued", r#"{"a":1}"#)[..],
            b"id: evt_1\nevent: generation.queued\ndata: {\"a\":1}\n\n"
        );
        assert_eq!(
            &frame(None, "x", "a\nb")[..],
            b"event: x\ndata: a\ndata: b\n\n"
        );
    }
}
