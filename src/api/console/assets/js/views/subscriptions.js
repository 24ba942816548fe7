// Subscriptions (`#/subscriptions`): the tenant's webhook endpoints from GET /v1/subscriptions
// and a form that creates one (POST /v1/subscriptions: `target_url`, `event_types` — exact types
// or `prefix.*` — `description`, an optional `filter` on `end_user` / `metadata`, extra
// `headers`, `max_in_flight`, `rate_limit_per_sec`). The 201 answer carries the `whsec_` signing
// secret this once: it is shown with a copy button and a warning until dismissed. A key without
// `subscriptions:manage` sees the refusal instead.
import { get, post, query } from '/console/js/api.js';
import { h, replace, pill, time, extLink, truncate, viewTitle, field, copyButton } from '/console/js/dom.js';
import { problemBox, showFieldErrors, clearFieldErrors } from '/console/js/problem.js';
import { getCatalog } from '/console/js/catalog.js';

const SUB = /^sub_[A-Za-z0-9]+$/;

export function render(ctx) {
  const { root, signal } = ctx;
  const listSlot = h('div', { class: 'list-slot' }, h('p', { class: 'muted' }, 'Loading subscriptions…'));
  const secretSlot = h('div', { class: 'secret-slot' });
  const more = h('button', { type: 'button', class: 'btn', hidden: true, 'data-testid': 'subscriptions-more' }, 'Load more');
  const rows = h('tbody');
  let cursor = null;
  const form = createForm(ctx, (created) => {
    showSecret(secretSlot, created, 'Subscription created');
    load(true);
  });

  replace(root, h('div', { class: 'view view-subscriptions' },
    viewTitle('Subscriptions', h('div', { class: 'view-tools' }, h('button', { type: 'button', class: 'btn', 'data-testid': 'subscriptions-refresh', on: { click: () => load(true) } }, 'Refresh'))),
    h('p', { class: 'lede' }, 'Each subscription receives every matching event as a signed Standard Webhooks delivery, retried on a schedule until it succeeds.'),
    secretSlot,
    listSlot,
    h('div', { class: 'more' }, more),
    form));

  more.addEventListener('click', () => load(false));

  async function load(first) {
    try {
      const page = await get(`/v1/subscriptions${query({ limit: 100, cursor: first ? null : cursor })}`, { signal });
      const data = Array.isArray(page && page.data) ? page.data : [];
      if (first) replace(rows);
      for (const s of data) if (s && SUB.test(String(s.id))) rows.appendChild(row(s));
      cursor = page && page.has_more && page.next_cursor ? String(page.next_cursor) : null;
      more.hidden = !cursor;
      replace(listSlot, rows.childElementCount
        ? h('div', { class: 'table-wrap' }, h('table', { class: 'table', 'data-testid': 'subscriptions' },
          h('thead', null, h('tr', null, ['Subscription', 'Target', 'Events', 'State', 'Description', 'Created'].map((c) => h('th', { scope: 'col' }, c)))), rows))
        : h('p', { class: 'empty' }, 'No subscriptions yet.'));
    } catch (problem) {
      if (signal.aborted) return;
      replace(listSlot, problemBox(problem, { action: 'manage subscriptions' }));
      // A key without the scope could not create one either: offer no form it would be refused.
      if (problem && problem.status === 403) form.hidden = true;
    }
  }
  load(true);
}

function row(s) {
  return h('tr', { 'data-subscription-id': s.id },
    h('td', null, h('a', { href: `#/subscriptions/${s.id}`, class: 'mono' }, s.id)),
    h('td', { class: 'wrap' }, extLink(s.target_url, truncate(s.target_url, 70))),
    h('td', null, (Array.isArray(s.event_types) ? s.event_types : []).map((t) => h('code', { class: 'tag' }, String(t)))),
    h('td', null, pill(s.status), s.failing_since ? h('span', { class: 'small warn', title: String(s.failing_since) }, ' failing') : null),
    h('td', { class: 'wrap' }, s.description ? truncate(String(s.description), 80) : h('span', { class: 'muted' }, '—')),
    h('td', null, time(s.created_at, { relative: true })));
}

/** The one-time secret panel (creation and rotation). */
export function showSecret(slot, sub, heading) {
  const secret = sub && typeof sub.secret === 'string' ? sub.secret : '';
  if (!secret) return;
  const dismiss = h('button', { type: 'button', class: 'btn btn-quiet', on: { click: () => replace(slot) } }, 'I have stored it');
  replace(slot, h('section', { class: 'notice notice-secret', 'data-testid': 'secret-panel', role: 'alert', 'aria-labelledby': 'secret-title' },
    h('h2', { id: 'secret-title' }, heading),
    h('p', null, h('strong', null, 'Copy the signing secret now: it is shown only this once.'), ' Receivers verify each delivery\'s webhook-signature with it.'),
    h('div', { class: 'secret-line' }, h('code', { class: 'secret', 'data-testid': 'secret' }, secret), copyButton(secret, 'secret')),
    sub.id ? h('p', { class: 'small' }, 'Subscription ', h('a', { href: `#/subscriptions/${sub.id}`, class: 'mono' }, String(sub.id))) : null,
    dismiss));
}

function createForm(ctx, onCreated) {
  const { signal } = ctx;
  const url = h('input', { type: 'url', name: 'target_url', required: true, placeholder: 'https://hooks.example.com/fluxgate', 'data-testid': 'sub-url', autocomplete: 'off', spellcheck: 'false' });
  const description = h('input', { type: 'text', name: 'description', maxlength: '1000', 'data-testid': 'sub-description' });
  const choices = ['generation.*', ...getCatalog().eventTypes, 'alert.*', '*'];
  const boxes = choices.map((t) => ({ t, box: h('input', { type: 'checkbox', value: t, checked: t === 'generation.*', 'data-testid': `sub-event-${t}` }) }));
  const otherTypes = h('input', { type: 'text', placeholder: 'other types, comma-separated', 'aria-label': 'Other event types', 'data-testid': 'sub-event-other' });
  const endUser = h('input', { type: 'text', maxlength: '255', autocomplete: 'off' });
  const metadata = h('textarea', { rows: '2', placeholder: '{"sku": "MUG-7"}', spellcheck: 'false' });
  const headers = h('textarea', { rows: '2', placeholder: '{"X-Team": "imaging"}', spellcheck: 'false' });
  const maxInFlight = h('input', { type: 'number', min: '1', max: '256', step: '1', placeholder: '8' });
  const rate = h('input', { type: 'number', min: '1', max: '10000', step: '1', placeholder: 'no limit' });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'sub-submit' }, 'Create subscription');
  const types = h('fieldset', { class: 'field checks', dataset: { field: 'event_types' } },
    h('legend', null, 'Event types'),
    h('div', { class: 'check-grid' }, boxes.map(({ t, box }) => h('label', { class: 'check' }, box, h('code', null, t)))),
    otherTypes,
    h('p', { class: 'field-error', id: 'sub-types-error', hidden: true }));
  const form = h('form', { class: 'form card-panel', novalidate: true, 'aria-labelledby': 'new-sub-title' },
    h('h2', { id: 'new-sub-title' }, 'New subscription'),
    h('div', { class: 'form-errors' }),
    field({ label: 'Target URL', control: url, name: 'target_url', hint: 'https; it must resolve to a public address (checked now and at every send).' }),
    types,
    field({ label: 'Description', control: description, name: 'description' }),
    h('details', { class: 'advanced' },
      h('summary', null, 'Filter, headers and limits'),
      h('div', { class: 'field-row' },
        field({ label: 'Only this end user', control: endUser, name: 'filter.end_user' }),
        field({ label: 'Only metadata containing (JSON object)', control: metadata, name: 'filter.metadata' })),
      field({ label: 'Extra headers (JSON object of strings)', control: headers, name: 'headers' }),
      h('div', { class: 'field-row' },
        field({ label: 'Max in flight', control: maxInFlight, name: 'max_in_flight', hint: '1–256, default 8' }),
        field({ label: 'Rate limit per second', control: rate, name: 'rate_limit_per_sec', hint: '1–10000, empty for none' }))),
    h('div', { class: 'actions' }, submit));

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearFieldErrors(form);
    const local = [];
    const body = { target_url: url.value.trim(), event_types: [] };
    for (const { box } of boxes) if (box.checked) body.event_types.push(box.value);
    for (const t of otherTypes.value.split(',').map((x) => x.trim()).filter(Boolean)) body.event_types.push(t);
    if (description.value.trim()) body.description = description.value.trim();
    const filter = {};
    if (endUser.value.trim()) filter.end_user = endUser.value.trim();
    const meta = parseObject(metadata.value, 'filter.metadata', local);
    if (meta) filter.metadata = meta;
    if (Object.keys(filter).length) body.filter = filter;
    const hdrs = parseObject(headers.value, 'headers', local);
    if (hdrs) body.headers = hdrs;
    if (maxInFlight.value !== '') body.max_in_flight = Number(maxInFlight.value);
    if (rate.value !== '') body.rate_limit_per_sec = Number(rate.value);
    if (local.length) {
      showFieldErrors(form, { fieldErrors: local, status: 422, title: 'Invalid input', detail: 'Fix the fields marked below.', body: {} });
      return;
    }
    submit.disabled = true;
    try {
      const created = await post('/v1/subscriptions', body, { signal });
      form.reset();
      for (const { t, box } of boxes) box.checked = t === 'generation.*';
      onCreated(created);
    } catch (problem) {
      if (signal.aborted) return;
      const { first } = showFieldErrors(form, problem, { action: 'manage subscriptions' });
      if (first) first.focus();
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

/** An optional JSON object from a textarea; a parse failure is recorded as a field error. */
export function parseObject(text, fieldName, errors) {
  const t = String(text || '').trim();
  if (!t) return null;
  try {
    const v = JSON.parse(t);
    if (v && typeof v === 'object' && !Array.isArray(v)) return v;
    errors.push({ field: fieldName, message: 'must be a JSON object, like {"key": "value"}' });
  } catch (err) {
    errors.push({ field: fieldName, message: `is not valid JSON: ${err.message}` });
  }
  return null;
}
