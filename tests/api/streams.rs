//! Live SSE streams over real loopback HTTP: tenant streams with type filters and exact resume,
//! per-generation streams that end with the generation, heartbeats, several instances on one
//! database, and a client that stops reading.
use fluxgate::domain::event_type::EventType;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::{timeout, Instant};

use crate::helpers::{
    problem, spawn_app, spawn_app_with, start_app, test_settings, TestApp, TestOptions,
};
use fluxgate::{startup::Workers, storage};

/// Longest wait for any one frame: generous, since a healthy stream answers in milliseconds.
const FRAME_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq)]
struct Event {
    id: Option<String>,
    kind: String,
    data: Value,
}

#[derive(Debug)]
enum Frame {
    Event(Event),
    Comment(String),
    Retry,
}

/// A minimal SSE client over a reqwest response.
struct Sse {
    res: reqwest::Response,
    buf: Vec<u8>,
}

impl Sse {
    async fn open(app: &TestApp, key: &str, path: &str, last_event_id: Option<&str>) -> Sse {
        let mut req = app.client.get(app.url(path)).bearer_auth(key);
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let res = req.send().await.expect("stream request");
        assert_eq!(res.status(), 200, "{path}");
        let header = |name: &str| res.headers()[name].to_str().unwrap().to_owned();
        assert_eq!(header("content-type"), "text/event-stream");
        assert_eq!(header("cache-control"), "no-cache");
        assert_eq!(header("x-accel-buffering"), "no");
        Sse {
            res,
            buf: Vec::new(),
        }
    }

    async fn tenant(app: &TestApp, query: &str, last_event_id: Option<&str>) -> Sse {
        let path = format!("/v1/events/stream{query}");
        Sse::open(app, &app.api_key, &path, last_event_id).await
    }

    /// The next frame, or `None` when the server ended the stream.
    async fn frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block = String::from_utf8(self.buf.drain(..end + 2).collect()).unwrap();
                return Some(parse(&block));
            }
            let chunk = timeout(FRAME_WAIT, self.res.chunk())
                .await
                .expect("a frame within the wait")
                .expect("stream body");
            match chunk {
                Some(bytes) => self.buf.extend_from_slice(&bytes),
                None => {
                    assert!(
                        self.buf.is_empty(),
                        "stream ended mid-frame: {:?}",
                        self.buf
                    );
                    return None;
                }
            }
        }
    }

    /// The next event, skipping comments and retry hints.
    async fn event(&mut self) -> Option<Event> {
        loop {
            match self.frame().await? {
                Frame::Event(e) => return Some(e),
                Frame::Comment(_) | Frame::Retry => {}
            }
        }
    }

    async fn events(&mut self, n: usize) -> Vec<Event> {
        let mut out = Vec::new();
        while out.len() < n {
            out.push(self.event().await.expect("stream ended early"));
        }
        out
    }

    /// Events up to and including the first that `last` accepts.
    async fn until(&mut self, last: impl Fn(&Event) -> bool) -> Vec<Event> {
        let mut out = Vec::new();
        loop {
            let e = self.event().await.expect("stream ended early");
            let done = last(&e);
            out.push(e);
            if done {
                return out;
            }
        }
    }

    async fn assert_ends(&mut self) {
        if let Some(f) = self.frame().await {
            panic!("expected the stream to end, got {f:?}");
        }
    }
}

fn parse(block: &str) -> Frame {
    let (mut id, mut kind, mut data, mut comment) = (None, None, Vec::new(), None);
    for line in block.lines().filter(|l| !l.is_empty()) {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "" => comment = Some(value.to_owned()),
            "id" => id = Some(value.to_owned()),
            "event" => kind = Some(value.to_owned()),
            "data" => data.push(value),
            "retry" => return Frame::Retry,
            other => panic!("unknown SSE field {other:?} in {block:?}"),
        }
    }
    match (kind, comment) {
        (Some(kind), _) => Frame::Event(Event {
            id,
            kind,
            data: serde_json::from_str(&data.join("\n")).expect("data is JSON"),
        }),
        (None, Some(c)) => Frame::Comment(c),
        (None, None) => panic!("empty frame {block:?}"),
    }
}

/// The tenant's stored events as a stream sends them, in `seq` order.
async fn stored(app: &TestApp, tenant: fluxgate::domain::ids::TenantId) -> Vec<Event> {
    let rows: Vec<(fluxgate::domain::ids::EventId, String, Value)> =
        sqlx::query_as("SELECT id, type, payload FROM events WHERE tenant_id = $1 ORDER BY seq")
            .bind(tenant)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    rows.into_iter()
        .map(|(id, kind, data)| Event {
            id: Some(id.to_string()),
            kind,
            data,
        })
        .collect()
}

fn of_generation<'a>(events: &'a [Event], id: &str) -> Vec<&'a Event> {
    events
        .iter()
        .filter(|e| e.data["data"]["id"] == id)
        .collect()
}

fn is_end_of(id: &str) -> impl Fn(&Event) -> bool + '_ {
    move |e: &Event| {
        e.data["data"]["id"] == id
            && ["generation.completed", "generation.failed"].contains(&e.kind.as_str())
    }
}

/// Commits one `test.ping` event for the tenant, numbered `n`.
async fn ping(app: &TestApp, tenant: fluxgate::domain::ids::TenantId, n: usize) {
    let mut tx = app.pool.begin().await.unwrap();
    storage::events::append(&mut tx, tenant, EventType::TestPing, None, json!({"n": n}))
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

async fn generate_as(app: &TestApp, key: &str, prompt: &str) -> Value {
    let res = app
        .client
        .post(app.url("/v1/generations"))
        .bearer_auth(key)
        .json(&json!({ "prompt": prompt }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    res.json().await.unwrap()
}

#[tokio::test]
async fn a_tenant_stream_sends_each_event_with_its_stored_id_type_and_payload() {
    let app = spawn_app().await;
    let mut stream = Sse::tenant(&app, "", None).await;
    let g = app.generate(json!({"prompt": "a lighthouse"})).await;
    let id = g["id"].as_str().unwrap();
    let got = stream.until(is_end_of(id)).await;
    let kinds: Vec<_> = got.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["generation.queued", "generation.completed"]);
    assert_eq!(got, stored(&app, app.tenant_id).await);
    assert_eq!(got[1].data["data"]["status"], "completed");
    assert_eq!(got[1].id.as_deref(), got[1].data["id"].as_str());
}

#[tokio::test]
async fn the_types_filter_takes_exact_types_and_wildcards_and_refuses_anything_else() {
    let app = spawn_app().await;
    let mut completed = Sse::tenant(&app, "?types=generation.completed", None).await;
    let mut all = Sse::tenant(&app, "?types=generation.*,alert.*", None).await;
    let mut pings = Sse::tenant(&app, "?types=test.ping", None).await;
    let failed = app.generate(json!({"prompt": "[sim:fail] x"})).await;
    let failed = failed["id"].as_str().unwrap();
    app.wait_terminal(failed).await;
    let ok = app.generate(json!({"prompt": "a boat"})).await;
    let ok = ok["id"].as_str().unwrap();
    // Streams follow commit order, so the first completed event proves nothing before passed.
    let first = completed.event().await.unwrap();
    assert_eq!(
        (first.kind.as_str(), &first.data["data"]["id"]),
        ("generation.completed", &json!(ok))
    );
    let kinds: Vec<_> = all
        .until(is_end_of(ok))
        .await
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            "generation.queued",
            "generation.failed",
            "generation.queued",
            "generation.completed"
        ]
    );
    ping(&app, app.tenant_id, 1).await;
    assert_eq!(pings.event().await.unwrap().kind, "test.ping");

    for bad in [
        "Generation.completed",
        "generation.",
        "generation.**",
        "a,,b",
    ] {
        let res = app
            .get(&format!(
                "/v1/events/stream?types={}",
                bad.replace(',', "%2C")
            ))
            .await;
        let body = problem(res, 422, "validation_failed").await;
        assert_eq!(body["errors"][0]["field"], "types", "{bad}: {body}");
    }
}

#[tokio::test]
async fn another_tenant_sees_none_of_our_events_and_none_of_our_generations() {
    let app = spawn_app().await;
    let (_, other_key) = app.new_tenant("globex").await;
    let mut theirs = Sse::open(&app, &other_key, "/v1/events/stream", None).await;
    let ours = app.generate(json!({"prompt": "ours"})).await;
    let ours = ours["id"].as_str().unwrap();
    app.wait_terminal(ours).await;
    let mine = generate_as(&app, &other_key, "theirs").await;
    // Events arrive in commit order: if any of ours leaked, it would come first.
    let first = theirs.event().await.unwrap();
    assert_eq!(first.data["data"]["id"], mine["id"]);

    let res = app
        .client
        .get(app.url(&format!("/v1/generations/{ours}/events")))
        .bearer_auth(&other_key)
        .send()
        .await
        .unwrap();
    problem(res, 404, "not_found").await;
    problem(
        app.get("/v1/generations/gen_nope/events").await,
        404,
        "not_found",
    )
    .await;
    // Resuming after another tenant's event is refused like an unknown id.
    let our_event = stored(&app, app.tenant_id).await[0].id.clone().unwrap();
    let res = app
        .client
        .get(app.url("/v1/events/stream"))
        .bearer_auth(&other_key)
        .header("Last-Event-ID", our_event)
        .send()
        .await
        .unwrap();
    problem(res, 400, "invalid_last_event_id").await;
}

#[tokio::test]
async fn malformed_or_unknown_last_event_ids_are_400_problems() {
    let app = spawn_app().await;
    let unknown = fluxgate::domain::ids::EventId::new().to_string();
    for id in ["42", "gen_0123", unknown.as_str()] {
        let res = app
            .client
            .get(app.url("/v1/events/stream"))
            .bearer_auth(&app.api_key)
            .header("Last-Event-ID", id)
            .send()
            .await
            .unwrap();
        problem(res, 400, "invalid_last_event_id").await;
        let res = app
            .get(&format!("/v1/events/stream?last_event_id={id}"))
            .await;
        problem(res, 400, "invalid_last_event_id").await;
    }
}

#[tokio::test]
async fn idle_streams_get_heartbeat_comments() {
    let mut settings = test_settings();
    settings.server.sse_heartbeat = Duration::from_secs(1);
    let app = spawn_app_with(TestOptions {
        settings,
        ..Default::default()
    })
    .await;
    let mut stream = Sse::tenant(&app, "", None).await;
    let started = Instant::now();
    let mut pings = 0;
    while pings < 2 {
        match stream.frame().await.unwrap() {
            Frame::Comment(c) => {
                assert_eq!(c, "ping");
                pings += 1;
            }
            Frame::Retry => {}
            Frame::Event(e) => panic!("no events were committed, got {e:?}"),
        }
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1500) && elapsed < Duration::from_secs(4),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn a_resumed_stream_gets_every_event_exactly_once_in_order_while_more_are_committed() {
    let app = spawn_app().await;
    let tenant = app.tenant_id;
    let mut first = Sse::tenant(&app, "", None).await;
    // Two writers committing concurrently, plus real generations, throughout.
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let pool = app.pool.clone();
            tokio::spawn(async move {
                for i in 0..30 {
                    let mut tx = pool.begin().await.unwrap();
                    let data = json!({"writer": w, "n": i});
                    storage::events::append(&mut tx, tenant, EventType::TestPing, None, data)
                        .await
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    tx.commit().await.unwrap();
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
            })
        })
        .collect();
    let mut gens = Vec::new();
    for i in 0..3 {
        let g = app
            .generate(json!({"prompt": format!("[sim:delay={}] g{i}", 40 * i)}))
            .await;
        gens.push(g["id"].as_str().unwrap().to_owned());
    }
    let mut got = first.events(10).await;
    drop(first);
    let mut second = Sse::tenant(&app, "", Some(got.last().unwrap().id.as_deref().unwrap())).await;
    got.extend(second.events(15).await);
    drop(second);
    let last = got.last().unwrap().id.clone().unwrap();
    let mut third = Sse::tenant(&app, &format!("?last_event_id={last}"), None).await;
    for w in writers {
        w.await.unwrap();
    }
    for g in &gens {
        app.wait_terminal(g).await;
    }
    let expected = stored(&app, tenant).await;
    assert_eq!(expected.len(), 60 + 6);
    got.extend(third.events(expected.len() - got.len()).await);
    assert_eq!(got, expected);
}

#[tokio::test]
async fn events_committed_out_of_seq_order_are_streamed_in_seq_order_and_holes_are_skipped() {
    let app = spawn_app().await;
    let tenant = app.tenant_id;
    let mut stream = Sse::tenant(&app, "", None).await;
    let append = |n: i64| {
        let pool = app.pool.clone();
        async move {
            let mut tx = pool.begin().await.unwrap();
            let e = storage::events::append(
                &mut tx,
                tenant,
                EventType::TestPing,
                None,
                json!({"n": n}),
            )
            .await
            .unwrap();
            (tx, e.seq)
        }
    };
    let (early, s1) = append(1).await;
    let (late, s2) = append(2).await;
    let (rolled_back, s3) = append(3).await;
    assert!(s1 < s2 && s2 < s3);
    late.commit().await.unwrap();
    rolled_back.rollback().await.unwrap();
    // The hub has seen seq s2 committed before s1: it must hold s2 back until s1 commits.
    tokio::time::sleep(Duration::from_millis(50)).await;
    early.commit().await.unwrap();
    let (after_hole, _) = append(4).await;
    after_hole.commit().await.unwrap();
    let got: Vec<_> = stream
        .events(3)
        .await
        .into_iter()
        .map(|e| e.data["data"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(got, [1, 2, 4]);
    let resumed_after_first = stored(&app, tenant).await[0].id.clone();
    let mut resumed = Sse::tenant(&app, "", resumed_after_first.as_deref()).await;
    let got: Vec<_> = resumed
        .events(2)
        .await
        .into_iter()
        .map(|e| e.data["data"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(got, [2, 4]);
}

#[tokio::test]
async fn a_generation_stream_starts_with_the_current_state_and_closes_after_completion() {
    let app = spawn_app_with(TestOptions {
        workers: Workers::NONE,
        ..Default::default()
    })
    .await;
    let g = app.generate(json!({"prompt": "a kite"})).await;
    let id = g["id"].as_str().unwrap();
    let path = format!("/v1/generations/{id}/events");
    let mut stream = Sse::open(&app, &app.api_key, &path, None).await;
    let state = stream.event().await.unwrap();
    assert_eq!(state.kind, "generation.state");
    assert_eq!(state.id, None, "a state frame is not a stored event");
    assert_eq!(state.data["data"], app.generation(id).await);
    fluxgate::pipeline::submitter::drain_once(&app.pipeline)
        .await
        .unwrap();
    let rest = stream.events(2).await;
    let kinds: Vec<_> = rest.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["generation.queued", "generation.completed"]);
    assert_eq!(rest, stored(&app, app.tenant_id).await);
    stream.assert_ends().await;
}

#[tokio::test]
async fn a_finished_generation_streams_its_events_and_closes_at_once() {
    let app = spawn_app().await;
    let g = app.generate(json!({"prompt": "[sim:fail] x"})).await;
    let id = g["id"].as_str().unwrap();
    app.wait_terminal(id).await;
    let path = format!("/v1/generations/{id}/events");
    let mut stream = Sse::open(&app, &app.api_key, &path, None).await;
    let got = stream.events(2).await;
    assert_eq!(got, stored(&app, app.tenant_id).await);
    assert_eq!(got[1].kind, "generation.failed");
    stream.assert_ends().await;
    // Resuming after its first event sends only the rest.
    let first = got[0].id.as_deref();
    let mut resumed = Sse::open(&app, &app.api_key, &path, first).await;
    assert_eq!(resumed.events(1).await, got[1..]);
    resumed.assert_ends().await;
}

#[tokio::test]
async fn an_event_committed_through_one_instance_reaches_streams_on_another() {
    let a = spawn_app().await;
    let pool_b = storage::connect(&a.db_url, 4).await.unwrap();
    let sim_b = fluxgate::tools::simulator::start(TestOptions::default().sim)
        .await
        .unwrap();
    let b = start_app(
        pool_b,
        a.db_url.clone(),
        sim_b,
        test_settings(),
        Workers::NONE,
    )
    .await;
    let mut on_b = Sse::tenant(&b, "", None).await;
    let g = a.generate(json!({"prompt": "far away"})).await;
    let id = g["id"].as_str().unwrap();
    let got = on_b.until(is_end_of(id)).await;
    assert_eq!(of_generation(&got, id).len(), 2);
    assert_eq!(got, stored(&a, a.tenant_id).await);
}

async fn metric(app: &TestApp, name: &str) -> f64 {
    app.metric(name).await
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_loose_without_delaying_others_and_catches_up_later() {
    let app = spawn_app().await;
    let tenant = app.tenant_id;
    let mut slow = Sse::tenant(&app, "", None).await;
    let mut fast = Sse::tenant(&app, "?types=test.ping", None).await;
    // Big events nobody reads on the slow stream, until the hub has had to let go of it (its
    // socket and its buffer full); a ping after each batch must reach the fast stream at once.
    let blob = "x".repeat(16 << 10);
    let mut batch = 0;
    while metric(&app, "fluxgate_sse_lagged_total").await < 1.0 {
        assert!(batch < 100, "the stalled stream was never cut off");
        let mut tx = app.pool.begin().await.unwrap();
        for i in 0..50 {
            let data = json!({"n": batch * 50 + i, "blob": blob});
            storage::events::append(&mut tx, tenant, EventType::SubscriptionDisabled, None, data)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
        let committed = Instant::now();
        ping(&app, tenant, batch).await;
        let got = timeout(Duration::from_secs(2), fast.event())
            .await
            .expect("the fast stream is not held back")
            .unwrap();
        assert_eq!(got.data["data"]["n"], batch);
        assert!(committed.elapsed() < Duration::from_secs(1));
        batch += 1;
    }
    // The stalled stream holds no buffer in the hub any more: only the fast one does.
    assert_eq!(metric(&app, "fluxgate_sse_streams").await, 1.0);
    // Reading at last, the slow client gets everything once and in order: what was buffered,
    // then the rest from memory or the database.
    let expected = stored(&app, tenant).await;
    let mut caught_up = Vec::new();
    while caught_up.len() < expected.len() {
        caught_up.push(slow.event().await.unwrap().id);
    }
    let expected: Vec<_> = expected.into_iter().map(|e| e.id).collect();
    assert_eq!(caught_up, expected);
}

/// While no stream is open the hub passes committed events by without reading their bodies
/// (and keeps none in memory). A stream that then resumes from before them still gets each one
/// whole, once, in order — from the database — and then the live ones.
#[tokio::test]
async fn events_passed_by_while_no_stream_was_open_reach_a_stream_resuming_from_before_them() {
    let app = spawn_app().await;
    let tenant = app.tenant_id;
    let append = |n: i64| {
        let pool = app.pool.clone();
        async move {
            let mut tx = pool.begin().await.unwrap();
            storage::events::append(&mut tx, tenant, EventType::TestPing, None, json!({"n": n}))
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
    };
    for n in 0..=20 {
        append(n).await;
    }
    // No stream has been open: the hub passes these by as they commit.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = stored(&app, tenant).await;
    assert_eq!(before.len(), 21);
    let from = before[0].id.clone().unwrap();
    let mut stream = Sse::tenant(&app, "", Some(&from)).await;
    let mut got = vec![before[0].clone()];
    got.extend(stream.events(20).await);
    append(21).await;
    got.extend(stream.events(1).await);
    assert_eq!(got, stored(&app, tenant).await);
}

#[tokio::test]
async fn a_browser_tokens_stream_carries_only_its_end_users_generations_live_and_on_resume() {
    let a = spawn_app().await;
    let res = a
        .post("/v1/tokens", &json!({"end_user": "customer-7"}))
        .await;
    assert_eq!(res.status(), 201);
    let token = res.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut live = Sse::open(&a, &token, "/v1/events/stream", None).await;
    let theirs = a
        .generate(json!({"prompt": "theirs", "end_user": "customer-8"}))
        .await;
    let ours = a
        .generate(json!({"prompt": "ours", "end_user": "customer-7"}))
        .await;
    let ours_id = ours["id"].as_str().unwrap();
    a.wait_terminal(theirs["id"].as_str().unwrap()).await;
    let got = live.until(is_end_of(ours_id)).await;
    assert!(
        got.iter()
            .all(|e| e.data["data"]["end_user"] == "customer-7"),
        "{got:?}"
    );
    assert_eq!(of_generation(&got, ours_id).len(), got.len());

    // A second instance has none of it in memory: resuming there reads the log, filtered alike.
    let pool_b = storage::connect(&a.db_url, 4).await.unwrap();
    let sim_b = fluxgate::tools::simulator::start(TestOptions::default().sim)
        .await
        .unwrap();
    let b = start_app(
        pool_b,
        a.db_url.clone(),
        sim_b,
        test_settings(),
        Workers::NONE,
    )
    .await;
    let first = got[0].id.clone().unwrap();
    let mut resumed = Sse::open(&b, &token, "/v1/events/stream", Some(&first)).await;
    let again = resumed.until(is_end_of(ours_id)).await;
    assert_eq!(again, got[1..]);
}
