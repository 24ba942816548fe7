// One subscription (`#/subscriptions/sub_…`): its settings from GET /v1/subscriptions/{id}; the
// actions PATCH `status` (pause = disabled, resume = active), rotate the secret (POST
// …/rotate-secret with a grace period; the new secret is shown once), send a `test.ping` (POST
// …/test), recover failed deliveries in a window (POST …/recover `{since, until?}`) and delete;
// and its delivery log (GET …/deliveries, newest first, filterable by state, paged) with each
// delivery's attempts and a Retry button. The log refreshes only when asked (Refresh, or after
// an action of this page).
import { get, post, patch, del, query, seg } from '/console/js/api.js';
import { h, replace, pill, time, extLink, idChip, kvTable, jsonBlock, viewTitle, field, dash } from '/console/js/dom.js';
import { problemBox, showFieldErrors, clearFieldErrors } from '/console/js/problem.js';
import { deliveryTable } from '/console/js/deliveries.js';
import { showSecret } from '/console/js/views/subscriptions.js';
import { getCatalog } from '/console/js/catalog.js';

export async function render(ctx) {
  const { root, signal, id } = ctx;
  const head = h('div', { class: 'sub-head' }, h('p', { class: 'muted' }, 'Loading…'));
  const secretSlot = h('div');
  const actionSlot = h('div', { class: 'action-result', 'aria-live': 'polite' });
  const actions = h('div', { class: 'sub-actions' });
  const log = deliveryTable({ signal });
  const logNotice = h('div');
  const statusSel = h('select', { id: 'dlv-status', 'data-testid': 'deliveries-status' }, h('option', { value: '' }, 'Any state'), getCatalog().deliveryStatuses.map((s) => h('option', { value: s }, s)));
  const refresh = h('button', { type: 'button', class: 'btn', 'data-testid': 'deliveries-refresh' }, 'Refresh');
  const more = h('button', { type: 'button', class: 'btn', hidden: true, 'data-testid': 'deliveries-more' }, 'Load more');
  let cursor = null;
  let sub = null;

  replace(root, h('div', { class: 'view view-subscription' },
    h('p', { class: 'crumbs' }, h('a', { href: '#/subscriptions' }, 'Subscriptions'), ' / ', h('span', { class: 'mono' }, id)),
    viewTitle('Subscription'),
    head, secretSlot, actions, actionSlot,
    h('section', { class: 'section', 'aria-labelledby': 'log-title' },
      h('div', { class: 'section-head' }, h('h2', { id: 'log-title' }, 'Delivery log'),
        h('div', { class: 'view-tools' }, h('label', { for: 'dlv-status', class: 'small' }, 'State'), statusSel, refresh)),
      logNotice, log.el, h('div', { class: 'more' }, more))));

  refresh.addEventListener('click', () => loadLog(true));
  more.addEventListener('click', () => loadLog(false));
  statusSel.addEventListener('change', () => loadLog(true));

  async function loadLog(first) {
    refresh.disabled = true;
    try {
      const q = query({ limit: 50, status: statusSel.value, cursor: first ? null : cursor });
      const page = await get(`/v1/subscriptions/${seg(id)}/deliveries${q}`, { signal });
      const data = Array.isArray(page && page.data) ? page.data : [];
      if (first) log.set(data); else log.add(data);
      cursor = page && page.has_more && page.next_cursor ? String(page.next_cursor) : null;
      more.hidden = !cursor;
      replace(logNotice, page && page.retained_since ? h('p', { class: 'small muted' }, 'Deliveries older than ', time(page.retained_since), ' are no longer kept (retention), except unfinished ones.') : null);
    } catch (problem) {
      if (signal.aborted) return;
      replace(logNotice, problemBox(problem, { action: 'read deliveries' }));
    } finally {
      refresh.disabled = false;
    }
  }

  function drawHead() {
    replace(head, h('div', { class: 'sub-summary' },
      h('div', { class: 'sub-title-line' }, idChip(sub.id), pill(sub.status)),
      kvTable([
        ['Target', extLink(sub.target_url)],
        ['Event types', h('span', null, (sub.event_types || []).map((t) => h('code', { class: 'tag' }, String(t))))],
        ['Description', sub.description ? String(sub.description) : null],
        ['Filter', sub.filter ? jsonBlock(sub.filter) : null],
        ['Extra headers', sub.headers && Object.keys(sub.headers).length ? jsonBlock(sub.headers) : null],
        ['Max in flight', String(sub.max_in_flight ?? '')],
        ['Rate limit', sub.rate_limit_per_sec ? `${sub.rate_limit_per_sec}/s` : 'none'],
        ['Disabled because', sub.disabled_reason ? String(sub.disabled_reason) : undefined],
        ['Failing since', sub.failing_since ? time(sub.failing_since) : undefined],
        ['Previous secret signs until', sub.previous_secret_expires_at ? time(sub.previous_secret_expires_at) : undefined],
        ['Created', time(sub.created_at)],
        ['Updated', time(sub.updated_at)],
      ])));
    drawActions();
  }

  /** Runs an action; its problem or outcome goes to the action slot. */
  async function act(button, fn) {
    button.disabled = true;
    replace(actionSlot);
    try {
      await fn();
    } catch (problem) {
      if (!signal.aborted) replace(actionSlot, problemBox(problem, { action: 'manage subscriptions' }));
    } finally {
      button.disabled = false;
    }
  }

  function drawActions() {
    const active = sub.status === 'active';
    const toggle = h('button', { type: 'button', class: 'btn', 'data-testid': 'sub-toggle' }, active ? 'Pause' : 'Resume');
    toggle.addEventListener('click', () => act(toggle, async () => {
      sub = await patch(`/v1/subscriptions/${seg(id)}`, { status: active ? 'disabled' : 'active' }, { signal });
      drawHead();
      replace(actionSlot, h('p', { class: 'ok', role: 'status' }, active ? 'Paused: no deliveries are sent until it is resumed.' : 'Resumed.'));
    }));
    const test = h('button', { type: 'button', class: 'btn', 'data-testid': 'sub-test' }, 'Send test');
    test.addEventListener('click', () => act(test, async () => {
      const r = await post(`/v1/subscriptions/${seg(id)}/test`, undefined, { signal });
      replace(actionSlot, h('p', { class: 'ok', role: 'status' }, 'test.ping sent: event ', h('code', null, String(r && r.event_id || '')), ', delivery ', h('code', null, String(r && r.delivery_id || '')), '.'));
      await loadLog(true);
    }));
    const remove = h('button', { type: 'button', class: 'btn btn-danger', 'data-testid': 'sub-delete' }, 'Delete');
    remove.addEventListener('click', () => act(remove, async () => {
      if (!window.confirm(`Delete ${sub.id}? Its pending deliveries are cancelled.`)) return;
      await del(`/v1/subscriptions/${seg(id)}`, { signal });
      ctx.navigate('#/subscriptions');
    }));
    replace(actions, h('div', { class: 'button-row' }, toggle, test, remove), rotateForm(), recoverForm());
  }

  function rotateForm() {
    const grace = h('input', { type: 'number', min: '0', max: '604800', step: '1', value: '86400', 'data-testid': 'sub-rotate-grace' });
    const button = h('button', { type: 'submit', class: 'btn', 'data-testid': 'sub-rotate' }, 'Rotate secret');
    const form = h('form', { class: 'inline-form', novalidate: true, 'aria-label': 'Rotate the signing secret' },
      h('div', { class: 'form-errors' }),
      field({ label: 'Old secret keeps signing for (seconds)', control: grace, name: 'grace_period_secs', hint: '0–604800 (7 days); both secrets sign until then.' }),
      button);
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      clearFieldErrors(form);
      act(button, async () => {
        try {
          const body = grace.value === '' ? {} : { grace_period_secs: Number(grace.value) };
          const rotated = await post(`/v1/subscriptions/${seg(id)}/rotate-secret`, body, { signal });
          const { secret: _s, ...rest } = rotated || {};
          showSecret(secretSlot, rotated, 'New signing secret');
          sub = { ...sub, ...rest };
          drawHead();
        } catch (problem) {
          if (problem && problem.status === 422) showFieldErrors(form, problem); else throw problem;
        }
      });
    });
    return form;
  }

  function recoverForm() {
    const since = h('input', { type: 'datetime-local', value: localInput(new Date(Date.now() - 24 * 3600 * 1000)), required: true, 'data-testid': 'sub-recover-since' });
    const until = h('input', { type: 'datetime-local', 'data-testid': 'sub-recover-until' });
    const button = h('button', { type: 'submit', class: 'btn', 'data-testid': 'sub-recover' }, 'Recover');
    const form = h('form', { class: 'inline-form', novalidate: true, 'aria-label': 'Recover failed deliveries' },
      h('div', { class: 'form-errors' }),
      field({ label: 'Re-queue failed deliveries since', control: since, name: 'since', hint: 'Within the last 14 days (your local time).' }),
      field({ label: 'until (optional)', control: until, name: 'until' }),
      button);
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      clearFieldErrors(form);
      act(button, async () => {
        const body = {};
        const s = toIso(since.value);
        if (s) body.since = s;
        const u = toIso(until.value);
        if (u) body.until = u;
        try {
          const r = await post(`/v1/subscriptions/${seg(id)}/recover`, body, { signal });
          replace(actionSlot, h('p', { class: 'ok', role: 'status' }, `${Number(r && r.requeued) || 0} deliveries queued again.`));
          await loadLog(true);
        } catch (problem) {
          if (problem && problem.status === 422) showFieldErrors(form, problem); else throw problem;
        }
      });
    });
    return form;
  }

  try {
    sub = await get(`/v1/subscriptions/${seg(id)}`, { signal });
  } catch (problem) {
    if (signal.aborted) return;
    replace(head, problemBox(problem, { action: 'manage subscriptions' }));
    replace(log.el, dash());
    return;
  }
  drawHead();
  loadLog(true);
}

function localInput(d) {
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function toIso(value) {
  if (!value) return null;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}
