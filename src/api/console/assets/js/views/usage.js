// Usage (`#/usage?from=&to=&end_user=`), from GET /v1/usage: spend (or requests, or images) per
// day as an SVG bar chart (`data-testid="usage-chart"`), the range's totals, failures by code,
// the top end users by spend, how much of each limit is left today (`limits`: the tenant's and,
// with `end_user`, that end user's daily budget and requests per minute; null means no limit)
// and the operator alerts, firing ones first and prominently. Days without activity are drawn
// as zero. A key without the `admin` scope sees the refusal.
import { get, query } from '/console/js/api.js';
import { h, replace, usd, num, time, ago, viewTitle, field } from '/console/js/dom.js';
import { problemBox, showFieldErrors, clearFieldErrors } from '/console/js/problem.js';
import { barChart, meter } from '/console/js/charts.js';

const METRICS = {
  spend: { label: 'Spend', value: (d) => Number(d.spend_usd) || 0, format: (n) => usd(n) },
  requests: { label: 'Requests', value: (d) => Number(d.requests) || 0, format: (n) => num(Math.round(n * 100) / 100) },
  images: { label: 'Images', value: (d) => Number(d.images) || 0, format: (n) => num(Math.round(n * 100) / 100) },
};

export function render(ctx) {
  const { root, signal, params } = ctx;
  const from = h('input', { type: 'date', value: params.get('from') || '', 'data-testid': 'usage-from' });
  const to = h('input', { type: 'date', value: params.get('to') || '', 'data-testid': 'usage-to' });
  const endUser = h('input', { type: 'search', value: params.get('end_user') || '', maxlength: '255', autocomplete: 'off', placeholder: 'all end users', 'data-testid': 'usage-end-user' });
  const metric = h('select', { 'data-testid': 'usage-metric', 'aria-label': 'Chart' }, Object.entries(METRICS).map(([k, m]) => h('option', { value: k }, `${m.label} per day`)));
  const apply = h('button', { type: 'submit', class: 'btn' }, 'Show');
  const form = h('form', { class: 'filters', novalidate: true, 'aria-label': 'Usage range' },
    field({ label: 'From', control: from, name: 'from' }),
    field({ label: 'To', control: to, name: 'to' }),
    field({ label: 'End user', control: endUser, name: 'end_user' }),
    h('div', { class: 'field field-button' }, apply),
    h('div', { class: 'form-errors' }));
  const body = h('div', { class: 'usage-body' }, h('p', { class: 'muted' }, 'Loading usage…'));
  let answer = null;

  replace(root, h('div', { class: 'view view-usage' }, viewTitle('Usage'), h('div', { class: 'toolbar' }, form), body));

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    ctx.setParams({ from: from.value, to: to.value, end_user: endUser.value.trim() });
    load();
  });
  metric.addEventListener('change', () => { if (answer) draw(answer); });

  async function load() {
    clearFieldErrors(form);
    apply.disabled = true;
    try {
      answer = await get(`/v1/usage${query({ from: from.value, to: to.value, end_user: endUser.value.trim() })}`, { signal });
      draw(answer);
    } catch (problem) {
      if (signal.aborted) return;
      if (problem.status === 422) { showFieldErrors(form, problem); replace(body); } else replace(body, problemBox(problem, { action: 'read usage, limits and alerts' }));
    } finally {
      apply.disabled = false;
    }
  }

  function draw(u) {
    if (!from.value && u.from) from.value = String(u.from);
    if (!to.value && u.to) to.value = String(u.to);
    const t = u.totals || {};
    const m = METRICS[metric.value] || METRICS.spend;
    const days = fillDays(u.from, u.to, Array.isArray(u.days) ? u.days : []);
    replace(body,
      alertsBlock(u.alerts),
      limitsBlock(u.limits, u.end_user),
      h('section', { class: 'section', 'aria-labelledby': 'totals-title' },
        h('h2', { id: 'totals-title' }, `${u.from} – ${u.to}${u.end_user ? ` · end user ${u.end_user}` : ''}`),
        h('div', { class: 'stats', 'data-testid': 'usage-totals' },
          stat('Spend', usd(t.spend_usd)), stat('Requests', num(t.requests)), stat('Completed', num(t.completed)),
          stat('Failed', num(t.failed)), stat('Cancelled', num(t.cancelled)), stat('Images', num(t.images)),
          stat('Megapixels', num(t.megapixels)), stat('Cache hits', num(t.cache_hits)), stat('Saved by cache', usd(t.cache_savings_usd)))),
      h('section', { class: 'section', 'aria-labelledby': 'chart-title' },
        h('div', { class: 'section-head' }, h('h2', { id: 'chart-title' }, `${m.label} per day`), metric),
        h('div', { class: 'chart-wrap' }, barChart({
          data: days.map((d) => ({ label: d.date, short: d.date.slice(5), value: m.value(d), title: `${d.date}: ${usd(d.spend_usd)} · ${num(d.requests)} requests · ${num(d.images)} images` })),
          format: m.format, testid: 'usage-chart', label: `${m.label} per day from ${u.from} to ${u.to}`,
        })),
        h('details', { class: 'small' }, h('summary', null, 'As a table'), daysTable(days))),
      h('div', { class: 'two-col' }, failuresBlock(t.failures), endUsersBlock(u.end_users, (who) => { endUser.value = who; form.requestSubmit(); })));
  }

  load();
}

function stat(label, value) {
  return h('div', { class: 'stat' }, h('div', { class: 'stat-label' }, label), h('div', { class: 'stat-value' }, value));
}

/** Every date from `from` to `to` (UTC), with the answer's day or zeros. */
function fillDays(from, to, days) {
  const byDate = new Map(days.map((d) => [String(d.date), d]));
  const start = Date.parse(`${from}T00:00:00Z`);
  const end = Date.parse(`${to}T00:00:00Z`);
  if (Number.isNaN(start) || Number.isNaN(end) || end < start || (end - start) / 864e5 > 400) return days;
  const out = [];
  for (let t = start; t <= end; t += 864e5) {
    const date = new Date(t).toISOString().slice(0, 10);
    out.push(byDate.get(date) || { date, spend_usd: 0, requests: 0, images: 0 });
  }
  return out;
}

function daysTable(days) {
  return h('div', { class: 'table-wrap' }, h('table', { class: 'table' },
    h('thead', null, h('tr', null, ['Date', 'Requests', 'Completed', 'Failed', 'Images', 'MP', 'Spend', 'Cache hits'].map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', null, days.filter((d) => d.requests).map((d) => h('tr', null,
      h('td', null, d.date), h('td', { class: 'num' }, num(d.requests)), h('td', { class: 'num' }, num(d.completed)), h('td', { class: 'num' }, num(d.failed)),
      h('td', { class: 'num' }, num(d.images)), h('td', { class: 'num' }, num(d.megapixels)), h('td', { class: 'num' }, usd(d.spend_usd)), h('td', { class: 'num' }, num(d.cache_hits)))))));
}

function failuresBlock(failures) {
  const entries = failures && typeof failures === 'object' ? Object.entries(failures).sort((a, b) => b[1] - a[1]) : [];
  return h('section', { class: 'section', 'aria-labelledby': 'failures-title' }, h('h2', { id: 'failures-title' }, 'Failures by code'),
    entries.length
      ? h('table', { class: 'table', 'data-testid': 'usage-failures' }, h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Code'), h('th', { scope: 'col', class: 'num' }, 'Generations'))),
        h('tbody', null, entries.map(([code, n]) => h('tr', null, h('td', null, h('code', null, code)), h('td', { class: 'num' }, num(n))))))
      : h('p', { class: 'muted' }, 'No failures in this range.'));
}

function endUsersBlock(list, pick) {
  const users = Array.isArray(list) ? list.filter((u) => u && typeof u === 'object') : null;
  const section = h('section', { class: 'section', 'aria-labelledby': 'eu-title' }, h('h2', { id: 'eu-title' }, 'Top end users by spend'));
  if (!users || !users.length) {
    section.appendChild(h('p', { class: 'muted' }, users ? 'No end-user activity in this range.' : 'Not reported by this server.'));
    return section;
  }
  const max = Math.max(...users.map((u) => Number(u.spend_usd) || 0), 0) || 1;
  section.appendChild(h('table', { class: 'table', 'data-testid': 'usage-end-users' },
    h('thead', null, h('tr', null, ['End user', 'Requests', 'Images', 'Spend'].map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', null, users.map((u) => {
      const bar = h('span', { class: 'inline-bar' });
      bar.style.width = `${((Number(u.spend_usd) || 0) / max * 100).toFixed(1)}%`;
      return h('tr', null,
        h('td', null, h('button', { type: 'button', class: 'linkish mono', title: 'Show this end user\'s usage and limits', on: { click: () => pick(String(u.end_user)) } }, String(u.end_user))),
        h('td', { class: 'num' }, num(u.requests)), h('td', { class: 'num' }, num(u.images)),
        h('td', { class: 'num bar-cell' }, h('span', { class: 'inline-bar-track' }, bar), usd(u.spend_usd)));
    }))));
  return section;
}

function limitsBlock(limits, endUser) {
  if (!limits || typeof limits !== 'object') return null;
  const group = (title, l, testid) => (l && typeof l === 'object'
    ? h('div', { class: 'limits-group', 'data-testid': testid }, h('h3', null, title),
      meter({ title: 'Daily budget', used: l.spent_today_usd, limit: l.daily_budget_usd, remaining: l.budget_remaining_usd, format: usd, extra: l.budget_resets_at ? ['resets ', resetsAt(l.budget_resets_at)] : null, testid: `${testid}-budget` }),
      meter({ title: 'Requests this minute', used: l.requests_this_minute, limit: l.requests_per_minute, remaining: l.requests_remaining, format: (n) => num(n), testid: `${testid}-rate` }))
    : null);
  const d = limits.end_user_defaults;
  return h('section', { class: 'section', 'aria-labelledby': 'limits-title' }, h('h2', { id: 'limits-title' }, 'Limits today'),
    h('div', { class: 'limits' }, group('Tenant', limits.tenant, 'limits-tenant'), endUser ? group(`End user ${endUser}`, limits.end_user, 'limits-end-user') : null),
    d && typeof d === 'object' ? h('p', { class: 'small muted' }, 'Each end user by default: ',
      d.daily_budget_usd === null || d.daily_budget_usd === undefined ? 'no daily budget' : `${usd(d.daily_budget_usd)} a day`, ', ',
      d.requests_per_minute === null || d.requests_per_minute === undefined ? 'no rate limit' : `${num(d.requests_per_minute)} requests a minute`, '.') : null);
}

function resetsAt(iso) {
  const dt = new Date(iso);
  if (Number.isNaN(dt.getTime())) return String(iso);
  return h('time', { datetime: dt.toISOString(), title: dt.toISOString() }, `${dt.toLocaleString()} (${ago(dt)})`);
}

function alertsBlock(alerts) {
  if (!Array.isArray(alerts) || !alerts.length) return null;
  const firing = alerts.filter((a) => a && a.firing);
  const quiet = alerts.filter((a) => a && !a.firing);
  return h('div', { class: 'alerts', 'data-testid': 'alerts' },
    firing.map((a) => h('div', { class: 'notice notice-error alert-firing', role: 'alert', 'data-testid': 'alert-firing', dataset: { alert: String(a.name) } },
      h('strong', null, `Alert firing: ${String(a.name).replace(/_/g, ' ')}`), a.since ? [' since ', time(a.since), ` (${ago(new Date(a.since))})`] : null)),
    quiet.length ? h('p', { class: 'small muted' }, 'Alerts quiet: ', quiet.map((a) => h('code', { class: 'tag' }, String(a.name)))) : null);
}
