// Server-Sent Events over fetch. EventSource cannot send an Authorization header, so a stream is
// read with `fetch` + `response.body.getReader()` + TextDecoder and parsed here as the WHATWG
// text/event-stream format (`id:`, `event:`, `data:` lines, a blank line ends a frame, `:`
// comments are heartbeats, `retry:` sets the reconnection delay). A dropped stream reconnects
// with backoff and `Last-Event-ID: <last id>` so no event is lost; a silent one (no heartbeat
// for 3 × 15 s) is dropped and resumed the same way. Leaving a view aborts its stream through
// the AbortSignal it was opened with.
import { authHeaders, Problem, notifyUnauthorized, parseJson } from '/console/js/api.js';

const WATCHDOG_MS = 45000;
const MAX_BACKOFF_MS = 30000;

/** Incremental text/event-stream parser: feed it text, it calls `onFrame({id, event, data})`. */
export class SseParser {
  constructor({ onFrame, onComment, onRetry }) {
    this.onFrame = onFrame;
    this.onComment = onComment || (() => {});
    this.onRetry = onRetry || (() => {});
    this.buffer = '';
    this.data = [];
    this.event = '';
    this.lastEventId = '';
    this.started = false;
  }

  push(text) {
    let buf = this.buffer + text;
    if (!this.started && buf.length > 0) {
      this.started = true;
      if (buf.charCodeAt(0) === 0xfeff) buf = buf.slice(1);
    }
    let pos = 0;
    for (;;) {
      let i = pos;
      while (i < buf.length && buf.charCodeAt(i) !== 10 && buf.charCodeAt(i) !== 13) i += 1;
      if (i >= buf.length) break; // no complete line yet
      const cr = buf.charCodeAt(i) === 13;
      if (cr && i + 1 >= buf.length) break; // a CR at the end may be half of a CRLF
      const line = buf.slice(pos, i);
      pos = i + (cr && buf.charCodeAt(i + 1) === 10 ? 2 : 1);
      this.line(line);
    }
    this.buffer = buf.slice(pos);
  }

  line(line) {
    if (line === '') return this.dispatch();
    if (line.charCodeAt(0) === 58 /* : */) return this.onComment(line.slice(1).trim());
    const colon = line.indexOf(':');
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    if (name === 'data') this.data.push(value);
    else if (name === 'event') this.event = value;
    else if (name === 'id') { if (!value.includes('\u0000')) this.lastEventId = value; }
    else if (name === 'retry') { if (/^\d+$/.test(value)) this.onRetry(Number(value)); }
    return undefined;
  }

  dispatch() {
    if (this.data.length === 0) {
      this.event = '';
      return;
    }
    const frame = { id: this.lastEventId, event: this.event || 'message', data: this.data.join('\n') };
    this.data = [];
    this.event = '';
    this.onFrame(frame);
  }
}

/**
 * Opens `path` as an event stream and keeps it open until `signal` aborts.
 *   onEvent(body, frame)  each frame whose data is JSON (the webhook body: {id, type, timestamp, data})
 *   onState(state)        'connecting' | 'live' | 'closed' | 'refused'
 *   onProblem(problem)    a refusal that ends the stream (403, 404, 422), or a passing error while retrying
 *   onGap()               the resume point was refused (events may have been missed): reload
 *   isFinal(body)         when it answers true the stream may end: the server closing it is then not an error
 * Answers {lastEventId()}.
 */
export function openStream(path, { signal, lastEventId = '', onEvent, onState = () => {}, onProblem = () => {}, onGap = () => {}, isFinal = () => false }) {
  let last = lastEventId;
  let retryMs = 1000;
  let backoff = retryMs;
  let finished = false;

  const setState = (s) => { if (!signal.aborted) onState(s); };

  const sleep = (ms) => new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });

  async function connectOnce() {
    const ctl = new AbortController();
    const abort = () => ctl.abort();
    signal.addEventListener('abort', abort, { once: true });
    let watchdog = 0;
    const arm = () => { clearTimeout(watchdog); watchdog = setTimeout(() => ctl.abort(), WATCHDOG_MS); };
    try {
      const headers = authHeaders({ Accept: 'text/event-stream' });
      if (last) headers['Last-Event-ID'] = last;
      arm();
      const res = await fetch(path, { headers, signal: ctl.signal, cache: 'no-store', credentials: 'omit', redirect: 'error' });
      if (!res.ok) return await refused(await Problem.fromResponse(res));
      setState('live');
      const reader = res.body.getReader();
      const decoder = new TextDecoder('utf-8');
      const parser = new SseParser({
        onFrame: (frame) => {
          if (frame.id) last = frame.id;
          let body;
          try {
            body = parseJson(frame.data);
          } catch (_) {
            return; // not JSON: not one of fluxgate's frames
          }
          if (isFinal(body, frame)) finished = true;
          try {
            onEvent(body, frame);
          } catch (err) {
            console.error('fluxgate console: an event handler failed', err);
          }
        },
        onRetry: (ms) => { retryMs = Math.min(Math.max(ms, 250), MAX_BACKOFF_MS); },
      });
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        arm();
        backoff = retryMs; // data flowed: the next drop starts from the server's delay again
        parser.push(decoder.decode(value, { stream: true }));
      }
      parser.push(decoder.decode());
      return finished ? 'end' : 'again';
    } catch (err) {
      if (signal.aborted) return 'end';
      return 'again'; // network error, or the watchdog fired
    } finally {
      clearTimeout(watchdog);
      signal.removeEventListener('abort', abort);
    }
  }

  async function refused(problem) {
    if (problem.status === 401) {
      notifyUnauthorized(problem);
      return 'end';
    }
    if (problem.status === 400 && problem.code === 'invalid_last_event_id') {
      last = '';
      onGap();
      return 'again';
    }
    if (problem.status === 429 || problem.status >= 500 || problem.status === 0) {
      onProblem(problem);
      const wait = problem.retryAfter;
      if (wait !== null) backoff = Math.max(backoff, Math.min(wait * 1000, 5 * 60000));
      return 'again';
    }
    setState('refused');
    onProblem(problem);
    return 'refused';
  }

  (async () => {
    while (!signal.aborted) {
      setState('connecting');
      const outcome = await connectOnce();
      if (signal.aborted) return;
      if (outcome === 'refused') return;
      if (outcome === 'end') {
        setState('closed');
        return;
      }
      const jitter = 0.8 + Math.random() * 0.4;
      await sleep(Math.round(backoff * jitter));
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    }
  })();

  return { lastEventId: () => last };
}

/** The live indicator: `data-testid="live"`, `data-state` = live | connecting | closed | refused. */
export function liveIndicator() {
  const dot = document.createElement('span');
  dot.className = 'live-dot';
  dot.setAttribute('aria-hidden', 'true');
  const label = document.createElement('span');
  const el = document.createElement('span');
  el.className = 'live';
  el.setAttribute('data-testid', 'live');
  el.setAttribute('role', 'status');
  el.append(dot, label);
  const texts = { live: 'Live', connecting: 'Reconnecting…', closed: 'Finished', refused: 'Live updates off' };
  let everLive = false;
  const set = (state) => {
    el.dataset.state = state;
    label.textContent = state === 'connecting' && !everLive ? 'Connecting…' : texts[state] || state;
    if (state === 'live') everLive = true;
  };
  set('connecting');
  return { el, set };
}
