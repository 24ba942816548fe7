// The one door to fluxgate's HTTP API. Every call is a same-origin `fetch` to `/v1/…` carrying
// the signed-in key only as `Authorization: Bearer <key>` (no cookies, no key in any URL).
// Answers are parsed as JSON with integers beyond 2^53 (fal's 64-bit seeds) kept exact as
// BigInt, and request bodies written back the same way. Every failure becomes a `Problem`: the
// server's application/problem+json (`code`, `detail`, `errors[]`, `scope`, `resets_at`, the
// Retry-After header), or one made up for a network error or a non-JSON answer. A 401 also
// tells the app (setUnauthorizedHandler) so it can return to the sign-in form.
import { currentKey } from '/console/js/session.js';

export class Problem extends Error {
  constructor(status, body, headers) {
    const b = body && typeof body === 'object' ? body : {};
    super(typeof b.detail === 'string' ? b.detail : typeof b.title === 'string' ? b.title : `HTTP ${status}`);
    this.status = status;
    this.body = b;
    this.headers = headers || null;
  }

  get code() { return typeof this.body.code === 'string' ? this.body.code : this.status === 0 ? 'network' : `http_${this.status}`; }
  get title() { return typeof this.body.title === 'string' ? this.body.title : this.status === 0 ? 'Network error' : `HTTP ${this.status}`; }
  get detail() { return this.message; }
  /** The scope a 403 `insufficient_scope` names. */
  get scope() { return typeof this.body.scope === 'string' ? this.body.scope : null; }
  /** `[{field, message}]` of a 422. */
  get fieldErrors() {
    return Array.isArray(this.body.errors)
      ? this.body.errors.filter((e) => e && typeof e === 'object').map((e) => ({ field: String(e.field ?? ''), message: String(e.message ?? '') }))
      : [];
  }
  /** Seconds to wait, from Retry-After (a number or an HTTP date), or null. */
  get retryAfter() {
    const v = this.headers && this.headers.get('Retry-After');
    if (!v) return null;
    if (/^\d+$/.test(v.trim())) return Number(v.trim());
    const t = Date.parse(v);
    return Number.isNaN(t) ? null : Math.max(0, Math.round((t - Date.now()) / 1000));
  }
  get requestId() { return (this.headers && this.headers.get('X-Request-Id')) || null; }
  get isScopeRefusal() { return this.status === 403; }

  static network(err) {
    return new Problem(0, { code: 'network', title: 'Network error', detail: `Could not reach fluxgate: ${err && err.message ? err.message : err}` });
  }

  /** The problem a failed response carries (or one describing it, if it is not a problem document). */
  static async fromResponse(res) {
    let body = null;
    try {
      body = parseJson(await res.text());
    } catch (_) {
      body = null;
    }
    if (!body || typeof body !== 'object') body = { title: res.statusText || `HTTP ${res.status}`, detail: `fluxgate answered HTTP ${res.status} ${res.statusText || ''}`.trim() };
    return new Problem(res.status, body, res.headers);
  }
}

let unauthorized = () => {};

/** `fn(problem)` runs whenever the API answers 401 (a bad, revoked or expired key). */
export function setUnauthorizedHandler(fn) {
  unauthorized = fn;
}

export function notifyUnauthorized(problem) {
  unauthorized(problem);
}

/** JSON.parse keeping integers that a double cannot hold exactly as BigInt (needs source access). */
export function parseJson(text) {
  if (text === '') return null;
  return JSON.parse(text, function revive(_key, value, context) {
    if (typeof value === 'number' && Number.isInteger(value) && !Number.isSafeInteger(value) && context && typeof context.source === 'string' && /^-?\d+$/.test(context.source)) {
      return BigInt(context.source);
    }
    return value;
  });
}

/** JSON.stringify writing BigInt as a bare integer. */
export function toJson(value) {
  if (typeof JSON.rawJSON === 'function') {
    return JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? JSON.rawJSON(v.toString()) : v));
  }
  const marks = [];
  const text = JSON.stringify(value, (_k, v) => {
    if (typeof v !== 'bigint') return v;
    marks.push(v.toString());
    return `\u0000bigint${marks.length - 1}\u0000`;
  });
  return marks.length ? text.replace(/"\\u0000bigint(\d+)\\u0000"/g, (_, i) => marks[Number(i)]) : text;
}

/** The headers every API call carries. */
export function authHeaders(extra = {}) {
  const key = currentKey();
  const headers = { Accept: 'application/json', ...extra };
  if (key) headers.Authorization = `Bearer ${key}`;
  return headers;
}

/**
 * One call. `path` is `/v1/…` (with its query); `body` is sent as JSON. Answers
 * `{status, headers, data}`; throws a Problem (or the AbortError when `signal` aborted).
 */
export async function request(method, path, { body, signal, headers = {}, key } = {}) {
  if (typeof path !== 'string' || !path.startsWith('/v1/')) throw new Error(`not an API path: ${path}`);
  const h = authHeaders(headers);
  if (key) h.Authorization = `Bearer ${key}`;
  const init = { method, headers: h, signal, credentials: 'omit', cache: 'no-store', redirect: 'error', referrerPolicy: 'no-referrer' };
  if (body !== undefined) {
    h['Content-Type'] = 'application/json';
    init.body = toJson(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    if (signal && signal.aborted) throw err;
    throw Problem.network(err);
  }
  if (!res.ok) {
    const problem = await Problem.fromResponse(res);
    if (res.status === 401) unauthorized(problem);
    throw problem;
  }
  if (res.status === 204) return { status: res.status, headers: res.headers, data: null };
  const text = await res.text();
  let data = null;
  try {
    data = parseJson(text);
  } catch (_) {
    throw new Problem(res.status, { code: 'invalid_answer', title: 'Unreadable answer', detail: 'fluxgate answered with something that is not JSON' }, res.headers);
  }
  return { status: res.status, headers: res.headers, data };
}

export const get = async (path, opts) => (await request('GET', path, opts)).data;
export const post = async (path, body, opts = {}) => (await request('POST', path, { ...opts, body })).data;
export const patch = async (path, body, opts = {}) => (await request('PATCH', path, { ...opts, body })).data;
export const del = async (path, opts) => (await request('DELETE', path, opts)).data;

/** `?a=1&b=2` from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** Path segment for an id from the API or the address bar (ids are prefixed ASCII; encode anyway). */
export const seg = (id) => encodeURIComponent(String(id));

/** A fresh Idempotency-Key for one submission. */
export function idempotencyKey() {
  if (window.crypto && typeof window.crypto.randomUUID === 'function') return `console-${window.crypto.randomUUID()}`;
  return `console-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}
