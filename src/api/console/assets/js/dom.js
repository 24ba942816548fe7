// Safe DOM building and the console's small UI atoms. Every view builds its elements through
// `h()` / `svg()`, which only ever set text with text nodes and never parse HTML, refuse `style`
// and `on…` attributes (the page runs under a CSP without 'unsafe-inline'; listeners go through
// `on: {click: fn}`), and take URLs only through `safeUrl()` (http, https and data:image/ only).
// Also here: copy buttons, monospace ids, status pills, and number/time formatting.

const SVG_NS = 'http://www.w3.org/2000/svg';

function setAttrs(el, attrs) {
  if (!attrs) return;
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'on') {
      for (const [type, fn] of Object.entries(value)) el.addEventListener(type, fn);
    } else if (name === 'class') {
      el.setAttribute('class', Array.isArray(value) ? value.filter(Boolean).join(' ') : value);
    } else if (name === 'dataset') {
      for (const [k, v] of Object.entries(value)) if (v !== undefined && v !== null) el.dataset[k] = String(v);
    } else if (name === 'style' || /^on/i.test(name)) {
      throw new Error(`h(): attribute ${name} is not allowed (CSP); use el.style.x or on: {}`);
    } else if (name === 'href' || name === 'src') {
      const url = safeUrl(value, { image: name === 'src' });
      if (url) el.setAttribute(name, url);
    } else if (name === 'value' && 'value' in el) {
      el.value = String(value);
    } else if ((name === 'checked' || name === 'disabled' || name === 'selected') && name in el) {
      el[name] = Boolean(value);
    } else {
      el.setAttribute(name, value === true ? '' : String(value));
    }
  }
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false || child === true) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

/** An HTML element: h('a', {href, class, dataset: {x: 1}, on: {click}}, 'text', child, [more]). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** An SVG element (attributes set verbatim; SVG presentation attributes are CSP-safe). */
export function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null) continue;
    if (name === 'style' || /^on/i.test(name) || /href$/i.test(name)) throw new Error(`svg(): ${name} not allowed`);
    el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

/** Empties an element and fills it with `children`. */
export function replace(el, ...children) {
  while (el.firstChild) el.removeChild(el.firstChild);
  append(el, children);
  return el;
}

/**
 * A URL that may go in `a.href` / `img.src`: http(s) (absolute, or relative to the console), a
 * `data:image/…` URI, or an in-console `#/…` route. Anything else (javascript:, blob:,
 * data:text/html, …) answers null.
 */
export function safeUrl(value, { image = false } = {}) {
  if (typeof value !== 'string' || value === '') return null;
  const s = value.trim();
  if (/^data:image\/[a-z0-9.+-]+[;,]/i.test(s)) return s;
  if (/^#/.test(s)) return s; // in-console route links
  let url;
  try {
    url = new URL(s, window.location.href);
  } catch (_) {
    return null;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
  if (!image && url.username) return null; // no credentials in links
  return url.href;
}

/** A link to an untrusted URL, opened in a new tab without a referrer; plain text if unsafe. */
export function extLink(url, text) {
  const safe = safeUrl(url);
  if (!safe || safe.startsWith('#')) return h('span', { class: 'mono muted' }, text || String(url ?? '—'));
  return h('a', { href: safe, target: '_blank', rel: 'noopener noreferrer' }, text || safe);
}

/** A button that copies `text` to the clipboard and says so. */
export function copyButton(text, label = 'Copy') {
  const button = h('button', { type: 'button', class: 'copy', title: `Copy ${label === 'Copy' ? '' : label}`.trim() }, 'Copy');
  button.setAttribute('aria-label', label === 'Copy' ? 'Copy to clipboard' : `Copy ${label}`);
  button.addEventListener('click', async () => {
    const ok = await copyText(String(text));
    button.textContent = ok ? 'Copied' : 'Copy failed';
    setTimeout(() => { button.textContent = 'Copy'; }, 1500);
  });
  return button;
}

async function copyText(text) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch (_) {
    /* fall back below */
  }
  const area = h('textarea', { class: 'offscreen', readonly: true, 'aria-hidden': 'true' });
  area.value = text;
  document.body.appendChild(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand('copy');
  } catch (_) {
    ok = false;
  }
  area.remove();
  return ok;
}

/** A monospace id with a copy button; a route link when `href` is given. */
export function idChip(id, href) {
  const text = String(id ?? '');
  const code = h('code', { class: 'id' }, text);
  return h('span', { class: 'id-chip' }, href ? h('a', { href }, code) : code, text ? copyButton(text, 'id') : null);
}

/** A status pill coloured by state (class `pill-<state>`; unknown states are neutral). */
export function pill(status) {
  const s = String(status ?? 'unknown');
  const cls = /^[a-z_]{1,32}$/.test(s) ? s : 'unknown';
  return h('span', { class: ['pill', `pill-${cls}`] }, s.replace(/_/g, ' '));
}

/** A small key/value table: rows of [label, value-node-or-text]. Rows with undefined values are skipped. */
export function kvTable(rows, attrs = {}) {
  const body = rows
    .filter((r) => r && r[1] !== undefined)
    .map(([k, v]) => h('tr', null, h('th', { scope: 'row' }, k), h('td', null, v === null || v === '' ? dash() : v)));
  return h('table', { class: ['kv', attrs.class] }, h('tbody', null, body));
}

export function dash() {
  return h('span', { class: 'muted' }, '—');
}

/** JSON for display (BigInt-safe), in a <pre>. */
export function jsonBlock(value) {
  return h('pre', { class: 'json' }, stringify(value, 2));
}

export function stringify(value, space) {
  return JSON.stringify(value, (_, v) => (typeof v === 'bigint' ? v.toString() : v), space);
}

const usdFormat = new Intl.NumberFormat(undefined, { style: 'currency', currency: 'USD', minimumFractionDigits: 2, maximumFractionDigits: 6 });

/** `$0.008` from a number of dollars (or micro-dollars with `micros`). */
export function usd(value, { micros = false } = {}) {
  if (value === null || value === undefined || value === '') return '—';
  const n = Number(value) / (micros ? 1e6 : 1);
  if (!Number.isFinite(n)) return '—';
  return usdFormat.format(n);
}

export function num(value) {
  if (value === null || value === undefined) return '—';
  if (typeof value === 'bigint') return value.toString();
  const n = Number(value);
  return Number.isFinite(n) ? n.toLocaleString() : String(value);
}

/** A local date-time from an ISO string, in a <time> element with the exact value as its title. */
export function time(iso, { relative = false } = {}) {
  if (!iso) return dash();
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return h('span', null, String(iso));
  const text = relative ? ago(d) : d.toLocaleString();
  return h('time', { datetime: d.toISOString(), title: d.toISOString() }, text);
}

/** `3 s ago`, `5 min ago`, `in 2 h`. */
export function ago(date) {
  const secs = Math.round((Date.now() - date.getTime()) / 1000);
  const abs = Math.abs(secs);
  const [n, unit] = abs < 60 ? [abs, 's'] : abs < 3600 ? [Math.round(abs / 60), 'min'] : abs < 86400 ? [Math.round(abs / 3600), 'h'] : [Math.round(abs / 86400), 'd'];
  return secs >= 0 ? `${n} ${unit} ago` : `in ${n} ${unit}`;
}

/** The first `n` characters of a string, with an ellipsis. */
export function truncate(s, n) {
  const str = String(s ?? '');
  return str.length > n ? `${str.slice(0, n - 1)}…` : str;
}

/** A labelled form field: label, control, hint and an error slot keyed by the API's field name. */
export function field({ label, control, hint, name, className }) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 10)}`;
  control.id = id;
  const err = h('p', { class: 'field-error', id: `${id}-error`, hidden: true, role: 'status' });
  const hintEl = hint ? h('p', { class: 'hint', id: `${id}-hint` }, hint) : null;
  if (hintEl) control.setAttribute('aria-describedby', `${id}-hint`);
  return h('div', { class: ['field', className], dataset: { field: name } }, h('label', { for: id }, label), control, hintEl, err);
}

/** A heading for a view (focusable, so navigation can move focus to it). */
export function viewTitle(text, ...extra) {
  return h('div', { class: 'view-head' }, h('h1', { tabindex: '-1', class: 'view-title' }, text), ...extra);
}

/** Debounce: `fn` runs `ms` after the last call. */
export function debounce(fn, ms) {
  let t = 0;
  const wrapped = (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
  wrapped.cancel = () => clearTimeout(t);
  return wrapped;
}
