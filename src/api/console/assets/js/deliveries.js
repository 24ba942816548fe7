// The delivery log table, shared by a subscription's page and a generation's page. One row per
// delivery (`tr[data-delivery-id]`, `data-testid="delivery-row"`): state, event, attempts, last
// status code and error class, when. "Attempts" opens GET /v1/deliveries/{id} beneath the row
// (each attempt: `data-testid="attempt-row"` with its time, duration, status code, error class
// and response excerpt); "Retry" POSTs /v1/deliveries/{id}/retry and shows the delivery pending
// again. Nothing here polls.
import { get, post, seg } from '/console/js/api.js';
import { h, replace, pill, time, extLink, dash, truncate } from '/console/js/dom.js';
import { problemBox } from '/console/js/problem.js';

const DLV = /^dlv_[A-Za-z0-9]+$/;
const COLUMNS = ['State', 'Event', 'Attempts', 'Last answer', 'Created', 'Finished / next try', ''];

/** A table for deliveries; `showTarget` adds each delivery's target URL and subscription. */
export function deliveryTable({ signal, showTarget = false }) {
  const head = h('thead', null, h('tr', null, COLUMNS.map((c) => h('th', { scope: 'col' }, c))));
  const table = h('table', { class: 'table deliveries', 'data-testid': 'delivery-log' }, head);
  const empty = h('p', { class: 'empty', hidden: true }, 'No deliveries.');
  table.hidden = true; // until the first set(): an empty header says nothing
  const el = h('div', { class: 'table-wrap' }, table, empty);
  const rows = new Map();

  function set(deliveries) {
    for (const body of table.querySelectorAll('tbody')) body.remove();
    rows.clear();
    add(deliveries);
  }

  function add(deliveries) {
    for (const d of deliveries) {
      if (!d || !DLV.test(String(d.id)) || rows.has(d.id)) continue;
      const group = group_(d);
      rows.set(d.id, group);
      table.appendChild(group.body);
    }
    empty.hidden = rows.size > 0;
    table.hidden = rows.size === 0;
  }

  function group_(d) {
    const body = h('tbody', { class: 'delivery' });
    const detail = h('td', { colspan: String(COLUMNS.length) });
    const detailRow = h('tr', { class: 'attempts-row', hidden: true }, detail);
    const message = h('div', { class: 'row-message' });
    const toggle = h('button', { type: 'button', class: 'btn btn-small', 'aria-expanded': 'false', 'data-testid': 'attempts-toggle' }, 'Attempts');
    const retry = h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'retry' }, 'Retry');
    const state = { d, open: false };

    const draw = () => {
      const cur = state.d;
      const row = h('tr', { 'data-delivery-id': cur.id, 'data-testid': 'delivery-row', dataset: { status: cur.status } },
        h('td', null, pill(cur.status)),
        h('td', null,
          h('div', null, h('code', { class: 'small' }, String(cur.event_type || ''))),
          h('div', { class: 'small muted mono' }, String(cur.event_id || '')),
          showTarget ? h('div', { class: 'small' }, extLink(cur.target_url, truncate(cur.target_url, 60)), cur.subscription_id ? [' · ', h('a', { href: `#/subscriptions/${cur.subscription_id}` }, 'subscription')] : ' · per-request webhook_url') : null),
        h('td', { class: 'num' }, String(cur.attempts ?? 0)),
        h('td', null, cur.last_status_code !== null && cur.last_status_code !== undefined ? h('code', { class: codeClass(cur.last_status_code) }, String(cur.last_status_code)) : null, cur.last_error_class ? h('span', { class: 'small muted' }, ` ${cur.last_error_class}`) : null, cur.last_status_code == null && !cur.last_error_class ? dash() : null),
        h('td', null, time(cur.created_at, { relative: true })),
        h('td', null, cur.finished_at ? time(cur.finished_at, { relative: true }) : cur.next_attempt_at ? ['next ', time(cur.next_attempt_at, { relative: true })] : dash()),
        h('td', { class: 'row-actions' }, toggle, retry, message));
      const old = body.querySelector('tr[data-delivery-id]');
      if (old) old.replaceWith(row);
      else body.prepend(row);
    };

    async function loadAttempts() {
      replace(detail, h('p', { class: 'muted small' }, 'Loading attempts…'));
      try {
        const full = await get(`/v1/deliveries/${seg(state.d.id)}`, { signal });
        if (full && typeof full === 'object') {
          const { attempts_log: _log, ...rest } = full;
          state.d = { ...state.d, ...rest };
          draw();
        }
        replace(detail, attemptsTable(Array.isArray(full && full.attempts_log) ? full.attempts_log : [], full));
      } catch (problem) {
        if (signal.aborted) return;
        replace(detail, problemBox(problem, { action: 'read deliveries' }));
      }
    }

    toggle.addEventListener('click', () => {
      state.open = !state.open;
      toggle.setAttribute('aria-expanded', String(state.open));
      detailRow.hidden = !state.open;
      if (state.open) loadAttempts();
    });
    retry.addEventListener('click', async () => {
      retry.disabled = true;
      replace(message);
      try {
        const d = await post(`/v1/deliveries/${seg(state.d.id)}/retry`, undefined, { signal });
        if (d && typeof d === 'object') state.d = { ...state.d, ...d };
        draw();
        replace(message, h('span', { class: 'small ok', role: 'status' }, 'Queued again'));
        if (state.open) loadAttempts();
      } catch (problem) {
        if (signal.aborted) return;
        replace(message, problemBox(problem, { action: 'retry deliveries' }));
      } finally {
        retry.disabled = false;
      }
    });
    draw();
    body.appendChild(detailRow);
    return { body, state };
  }

  return { el, set, add, size: () => rows.size };
}

function codeClass(code) {
  const n = Number(code);
  return n >= 200 && n < 300 ? 'code-ok' : n >= 500 ? 'code-bad' : 'code-warn';
}

function attemptsTable(attempts, full) {
  const meta = full ? h('p', { class: 'small muted' }, 'Target ', extLink(full.target_url)) : null;
  if (!attempts.length) return h('div', { class: 'attempts' }, meta, h('p', { class: 'muted small' }, 'No attempt yet.'));
  return h('div', { class: 'attempts' }, meta,
    h('table', { class: 'table table-inner' },
      h('thead', null, h('tr', null, ['#', 'Started', 'Duration', 'Status', 'Error', 'Response (first 4 KiB)'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', null, attempts.map((a) => h('tr', { 'data-testid': 'attempt-row', dataset: { attempt: a.attempt } },
        h('td', { class: 'num' }, String(a.attempt ?? '')),
        h('td', null, time(a.started_at)),
        h('td', { class: 'num' }, a.duration_ms !== null && a.duration_ms !== undefined ? `${a.duration_ms} ms` : '—'),
        h('td', null, a.status_code !== null && a.status_code !== undefined ? h('code', { class: codeClass(a.status_code) }, String(a.status_code)) : dash()),
        h('td', null, a.error_class ? h('code', null, String(a.error_class)) : dash()),
        h('td', null, a.response_excerpt ? h('pre', { class: 'excerpt' }, String(a.response_excerpt)) : dash()))))));
}

