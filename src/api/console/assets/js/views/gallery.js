// The generations gallery (`#/`): a grid of cards, newest first, from GET /v1/generations
// (50 a page, "Load more" follows `next_cursor`), filtered by status, model and end user (kept
// in the route's query, e.g. `#/?status=completed`). Every card is an `<a>` with
// `data-generation-id`; a finished one shows its first image, a pending or failed one its state.
// The view follows GET /v1/events/stream?types=generation.* live: a generation that is queued or
// finishes is inserted in its place (honouring the filters) or its card updated, so a card
// gains its image when `generation.completed` arrives. Events never move a card backwards.
import { get, query } from '/console/js/api.js';
import { openStream, liveIndicator } from '/console/js/sse.js';
import { h, replace, pill, safeUrl, truncate, usd, ago, viewTitle, debounce } from '/console/js/dom.js';
import { problemBox } from '/console/js/problem.js';
import { getCatalog, allModelIds } from '/console/js/catalog.js';

const PAGE = 50;
const MAX_PAGES_PER_CLICK = 5; // the model filter is applied here: skip pages that hold none
const RANK = { accepted: 0, queued: 1, in_progress: 1, completed: 2, failed: 2, cancelled: 2 };
const ID = /^gen_[A-Za-z0-9]+$/;

export function render(ctx) {
  const { root, signal, params } = ctx;
  const filters = {
    status: params.get('status') || '',
    model: params.get('model') || '',
    end_user: params.get('end_user') || '',
  };
  const cards = new Map(); // id → {el, g}
  let cursor = null;
  let hasMore = false;
  let loaded = false;
  let listCtl = null;
  const early = []; // events that arrived before the first page

  const live = liveIndicator();
  const grid = h('div', { class: 'grid', 'data-testid': 'gallery', 'aria-live': 'off' });
  const notices = h('div', { class: 'notices' });
  const empty = h('p', { class: 'empty', hidden: true }, 'No generations yet. ', h('a', { href: '#/new' }, 'Create one'), '.');
  const more = h('button', { type: 'button', class: 'btn', hidden: true, 'data-testid': 'gallery-more', on: { click: () => loadPage(false) } }, 'Load more');
  const count = h('span', { class: 'muted small', 'data-testid': 'gallery-count' });

  const statusSel = h('select', { id: 'filter-status', 'data-testid': 'filter-status' },
    h('option', { value: '' }, 'Any status'),
    getCatalog().statuses.map((s) => h('option', { value: s, selected: s === filters.status }, s)));
  const modelSel = h('select', { id: 'filter-model', 'data-testid': 'filter-model' },
    h('option', { value: '' }, 'Any model'),
    allModelIds().map((m) => h('option', { value: m, selected: m === filters.model }, m)));
  const userInput = h('input', { id: 'filter-end-user', type: 'search', value: filters.end_user, placeholder: 'end user id', 'data-testid': 'filter-end-user', autocomplete: 'off', maxlength: '255' });
  const filterForm = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter generations' },
    h('div', { class: 'filter' }, h('label', { for: 'filter-status' }, 'Status'), statusSel),
    h('div', { class: 'filter' }, h('label', { for: 'filter-model' }, 'Model'), modelSel),
    h('div', { class: 'filter' }, h('label', { for: 'filter-end-user' }, 'End user'), userInput));
  filterForm.addEventListener('submit', (e) => { e.preventDefault(); applyFilters(); });
  statusSel.addEventListener('change', () => applyFilters());
  modelSel.addEventListener('change', () => applyFilters());
  const typed = debounce(() => applyFilters(), 400);
  userInput.addEventListener('input', typed);
  signal.addEventListener('abort', () => typed.cancel());

  replace(root, h('div', { class: 'view view-gallery' },
    viewTitle('Generations', h('div', { class: 'view-tools' }, live.el, h('a', { class: 'btn btn-primary', href: '#/new' }, 'New generation'))),
    h('div', { class: 'toolbar' }, filterForm, count),
    notices, grid, empty, h('div', { class: 'more' }, more)));

  function applyFilters() {
    const next = { status: statusSel.value, model: modelSel.value, end_user: userInput.value.trim() };
    if (next.status === filters.status && next.model === filters.model && next.end_user === filters.end_user) return;
    Object.assign(filters, next);
    ctx.setParams(filters);
    reload();
  }

  function matches(g) {
    if (filters.status && g.status !== filters.status) return false;
    if (filters.model && g.model !== filters.model) return false;
    if (filters.end_user && g.end_user !== filters.end_user) return false;
    return true;
  }

  function reload() {
    loaded = false; // events wait for the new first page (the rank guard then keeps the newest state)
    cards.clear();
    replace(grid);
    replace(notices);
    cursor = null;
    hasMore = false;
    loadPage(true);
  }

  async function loadPage(first) {
    if (listCtl) listCtl.abort();
    const ctl = new AbortController();
    listCtl = ctl;
    signal.addEventListener('abort', () => ctl.abort(), { once: true });
    more.disabled = true;
    more.textContent = 'Loading…';
    try {
      let added = 0;
      for (let pages = 0; pages < MAX_PAGES_PER_CLICK; pages += 1) {
        const q = query({ limit: PAGE, cursor: first && pages === 0 ? null : cursor, status: filters.status, end_user: filters.end_user, model: filters.model });
        const page = await get(`/v1/generations${q}`, { signal: ctl.signal });
        const data = Array.isArray(page && page.data) ? page.data : [];
        for (const g of data) if (g && ID.test(String(g.id)) && matches(g) && !cards.has(g.id)) { appendCard(g); added += 1; }
        cursor = page && page.next_cursor ? String(page.next_cursor) : null;
        hasMore = Boolean(page && page.has_more && cursor);
        if (added > 0 || !hasMore || !filters.model) break;
      }
      if (!loaded) {
        loaded = true;
        for (const g of early.splice(0)) upsert(g);
      }
    } catch (problem) {
      if (ctl.signal.aborted) return;
      replace(notices, problemBox(problem, { action: 'list generations' }));
    } finally {
      if (listCtl === ctl) listCtl = null;
      more.disabled = false;
      more.textContent = 'Load more';
      refreshChrome();
    }
  }

  function refreshChrome() {
    more.hidden = !hasMore;
    empty.hidden = cards.size > 0 || notices.childElementCount > 0;
    const filtered = Boolean(filters.status || filters.model || filters.end_user);
    if (filtered) replace(empty, 'No generations match these filters.');
    else replace(empty, 'No generations yet. ', h('a', { href: '#/new' }, 'Create one'), '.');
    count.textContent = cards.size ? `${cards.size}${hasMore ? '+' : ''} shown` : '';
  }

  function appendCard(g) {
    const el = card(g);
    cards.set(g.id, { el, g });
    grid.appendChild(el);
  }

  /** A generation from the stream: insert, update or drop its card. */
  function upsert(g) {
    if (!g || !ID.test(String(g.id))) return;
    if (!loaded) { early.push(g); return; }
    const known = cards.get(g.id);
    if (known && (RANK[g.status] ?? 0) < (RANK[known.g.status] ?? 0)) return; // a late, older state
    if (!matches(g)) {
      if (known) { known.el.remove(); cards.delete(g.id); refreshChrome(); }
      return;
    }
    const el = card(g);
    if (known) {
      known.el.replaceWith(el);
      cards.set(g.id, { el, g });
      return;
    }
    // Newest first: before the first card created earlier than it. An older one than every
    // loaded card waits for "Load more" when there are more pages.
    const t = order(g);
    let before = null;
    for (const { el: other, g: og } of cards.values()) {
      if (compare(order(og), t) < 0) { before = other; break; }
    }
    if (!before && hasMore) return;
    grid.insertBefore(el, before);
    // Keep the map in the grid's order (insertion order is what the loop above walks).
    const entries = [...cards.entries()];
    cards.clear();
    let placed = false;
    for (const [id, v] of entries) {
      if (!placed && v.el === before) { cards.set(g.id, { el, g }); placed = true; }
      cards.set(id, v);
    }
    if (!placed) cards.set(g.id, { el, g });
    el.classList.add('card-new');
    refreshChrome();
  }

  openStream('/v1/events/stream?types=generation.*', {
    signal,
    onState: live.set,
    onEvent: (body) => {
      if (body && typeof body.type === 'string' && body.type.startsWith('generation.') && body.data && typeof body.data === 'object') upsert(body.data);
    },
    onGap: () => reload(),
    onProblem: (problem) => {
      if (problem.status === 403 || problem.status === 422) notices.appendChild(problemBox(problem, { action: 'follow generations live' }));
    },
  });

  loadPage(true);
}

function order(g) {
  const t = Date.parse(g.created_at);
  return [Number.isNaN(t) ? 0 : t, String(g.id)];
}

function compare(a, b) {
  return a[0] !== b[0] ? a[0] - b[0] : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0;
}

/** The first displayable image URL of a generation (its durable copy, else fal's). */
export function thumbnailUrl(g) {
  if (!Array.isArray(g.images)) return null;
  for (const img of g.images) {
    if (!img || typeof img !== 'object') continue;
    const url = safeUrl(img.url, { image: true }) || safeUrl(img.source_url, { image: true });
    if (url && !url.startsWith('#')) return url;
  }
  return null;
}

/** One card: `a.card[data-generation-id]` with an `<img>` when it has one, else its state. */
export function card(g) {
  const prompt = g.input && typeof g.input.prompt === 'string' ? g.input.prompt : '';
  const src = g.status === 'completed' ? thumbnailUrl(g) : null;
  const status = String(g.status || 'unknown');
  const thumb = src
    ? h('img', { src, alt: prompt || 'generated image', loading: 'lazy', decoding: 'async', width: '256', height: '256' })
    : h('div', { class: ['placeholder', `placeholder-${/^[a-z_]+$/.test(status) ? status : 'unknown'}`], role: 'img', 'aria-label': `${status}: ${prompt}` },
      RANK[status] === 2 ? null : h('span', { class: 'spinner', 'aria-hidden': 'true' }),
      h('span', { class: 'placeholder-label' }, status === 'completed' ? 'no image' : status.replace(/_/g, ' ')),
      g.error && typeof g.error === 'object' && g.error.code ? h('code', { class: 'placeholder-code' }, String(g.error.code)) : null);
  const n = Array.isArray(g.images) ? g.images.length : 0;
  const cost = g.cost_usd !== null && g.cost_usd !== undefined ? usd(g.cost_usd) : `~${usd(g.estimated_cost_usd)}`;
  const created = Date.parse(g.created_at);
  return h('a', { class: 'card', href: `#/generations/${g.id}`, 'data-generation-id': g.id, dataset: { status } },
    h('div', { class: 'thumb' }, thumb, n > 1 ? h('span', { class: 'thumb-count', title: `${n} images` }, `×${n}`) : null, g.cached ? h('span', { class: 'thumb-cached', title: 'Answered from the seed cache' }, 'cached') : null),
    h('div', { class: 'card-body' },
      h('p', { class: 'card-prompt', title: prompt }, truncate(prompt, 140) || h('span', { class: 'muted' }, '(no prompt)')),
      h('div', { class: 'card-meta' },
        pill(status),
        h('span', { class: 'muted small', title: g.created_at || '' }, Number.isNaN(created) ? '' : ago(new Date(created))),
        h('span', { class: 'small' }, cost)),
      g.end_user ? h('p', { class: 'card-user small muted', title: 'end user' }, truncate(String(g.end_user), 40)) : null));
}
