// One generation (`#/generations/gen_…`), from GET /v1/generations/{id}: its images at full
// size with the durable `url` and fal's `source_url`, the normalised input, seed, cost, fal's
// timings, state or error, end user and metadata. It follows GET /v1/generations/{id}/events
// (the stored events replayed, then each change; the server closes it after a terminal one), so
// the page updates live and lists the events. "Vary" POSTs a new generation (or edit) with the
// edited prompt, `seed_from` this one and its other parameters, then opens it. The API has no
// event → deliveries listing, so "Find deliveries" searches each subscription's newest
// deliveries for this generation's events (see deliveryScan).
import { get, post, request, query, seg, idempotencyKey } from '/console/js/api.js';
import { openStream, liveIndicator } from '/console/js/sse.js';
import { h, replace, pill, time, extLink, idChip, kvTable, jsonBlock, usd, num, viewTitle, safeUrl } from '/console/js/dom.js';
import { problemBox, showFieldErrors, clearFieldErrors } from '/console/js/problem.js';
import { deliveryTable } from '/console/js/deliveries.js';

const RANK = { accepted: 0, queued: 1, completed: 2, failed: 2, cancelled: 2 };
const TERMINAL = new Set(['completed', 'failed', 'cancelled']);
const FAL_FIELDS = ['guidance_scale', 'num_images', 'output_format', 'enable_safety_checker', 'enable_prompt_expansion', 'sync_mode', 'acceleration', 'num_inference_steps'];

export async function render(ctx) {
  const { root, signal, id } = ctx;
  const live = liveIndicator();
  const head = h('div', { class: 'gen-head' });
  const notices = h('div', { class: 'notices' });
  const images = h('section', { class: 'section', 'aria-label': 'Images' });
  const details = h('div', { class: 'gen-details' });
  const varySlot = h('div');
  const eventsList = h('ol', { class: 'timeline', 'data-testid': 'events' });
  const eventsNote = h('p', { class: 'small muted' }, 'Waiting for events…');
  const deliveriesSlot = h('div');
  const events = new Map();
  let g = null;

  replace(root, h('div', { class: 'view view-generation' },
    h('p', { class: 'crumbs' }, h('a', { href: '#/' }, 'Generations'), ' / ', h('span', { class: 'mono' }, id)),
    viewTitle('Generation', h('div', { class: 'view-tools' }, live.el)),
    notices, head, images,
    h('div', { class: 'two-col' },
      h('div', null, details),
      h('div', null,
        varySlot,
        h('section', { class: 'section', 'aria-labelledby': 'events-title' }, h('h2', { id: 'events-title' }, 'Events'), eventsNote, eventsList),
        deliveriesSlot))));

  try {
    g = await get(`/v1/generations/${seg(id)}`, { signal });
  } catch (problem) {
    if (signal.aborted) return;
    live.set('refused');
    replace(head, problemBox(problem, { action: 'read generations' }));
    return;
  }
  draw();
  replace(varySlot, varyForm(ctx, () => g));
  replace(deliveriesSlot, deliveriesSection(ctx, () => [...events.keys()]));

  openStream(`/v1/generations/${seg(id)}/events`, {
    signal,
    onState: live.set,
    isFinal: (body) => Boolean(body && body.data && TERMINAL.has(body.data.status) && (body.type === 'generation.state' || String(body.type).startsWith('generation.'))),
    onEvent: (body, frame) => {
      if (!body || typeof body !== 'object') return;
      const next = body.data && typeof body.data === 'object' && body.data.id === g.id ? body.data : null;
      if (next && (RANK[next.status] ?? 0) >= (RANK[g.status] ?? 0)) {
        g = next;
        draw();
      }
      const eid = typeof body.id === 'string' ? body.id : frame.id;
      if (body.type !== 'generation.state' && eid && !events.has(eid)) {
        events.set(eid, body);
        eventsList.appendChild(eventItem(eid, body));
        eventsNote.textContent = '';
      }
    },
    onProblem: (problem) => {
      if (problem.status === 403 || problem.status === 404) notices.appendChild(problemBox(problem, { action: 'follow this generation live' }));
    },
  });

  function draw() {
    ctx.setTitle(`Generation ${g.id}`);
    const cancellable = g.status === 'accepted' || g.status === 'queued';
    const cancel = cancellable ? h('button', { type: 'button', class: 'btn btn-danger btn-small', 'data-testid': 'cancel' }, 'Cancel') : null;
    if (cancel) {
      cancel.addEventListener('click', async () => {
        cancel.disabled = true;
        try {
          const after = await post(`/v1/generations/${seg(g.id)}/cancel`, undefined, { signal });
          if (after && after.id === g.id) { g = after; draw(); }
        } catch (problem) {
          if (!signal.aborted) replace(notices, problemBox(problem, { action: 'cancel generations' }));
          cancel.disabled = false;
        }
      });
    }
    replace(head, h('div', { class: 'gen-title-line' },
      idChip(g.id), pill(g.status), g.cached ? h('span', { class: 'tag' }, 'from cache') : null,
      h('span', { class: 'muted small' }, String(g.model || '')),
      h('span', { class: 'spacer' }),
      h('a', { class: 'btn btn-small', href: `#/new?from=${g.id}` }, 'Open in Create'), cancel),
    h('p', { class: 'gen-prompt' }, String((g.input && g.input.prompt) || '')));
    drawImages();
    drawDetails();
  }

  function drawImages() {
    const list = Array.isArray(g.images) ? g.images : [];
    if (!list.length) {
      replace(images, h('div', { class: ['placeholder', 'placeholder-large', `placeholder-${TERMINAL.has(g.status) ? g.status : 'pending'}`] },
        TERMINAL.has(g.status) ? null : h('span', { class: 'spinner', 'aria-hidden': 'true' }),
        h('span', { class: 'placeholder-label' }, g.status === 'completed' ? 'No images' : TERMINAL.has(g.status) ? String(g.status) : `${g.status}: the images appear here when fal finishes`)));
      return;
    }
    const nsfw = Array.isArray(g.has_nsfw_concepts) ? g.has_nsfw_concepts : [];
    const prompt = String((g.input && g.input.prompt) || 'generated image');
    replace(images, h('div', { class: 'images' }, list.map((img, i) => {
      const src = safeUrl(img && img.url, { image: true }) || safeUrl(img && img.source_url, { image: true });
      return h('figure', { class: 'image', 'data-testid': 'image' },
        src ? h('a', { href: src, target: '_blank', rel: 'noopener noreferrer' }, h('img', { src, alt: prompt, width: img.width || null, height: img.height || null, decoding: 'async' })) : h('div', { class: 'placeholder' }, 'image not available'),
        h('figcaption', null,
          h('div', null, `${img.width ?? '?'} × ${img.height ?? '?'}`, img.content_type ? ` · ${img.content_type}` : '', nsfw[i] === true ? h('span', { class: 'tag tag-warn' }, 'NSFW flagged') : null),
          h('div', { class: 'small' }, 'Durable: ', img.url ? extLink(img.url) : h('span', { class: 'muted' }, 'none')),
          h('div', { class: 'small' }, 'fal: ', img.source_url ? extLink(img.source_url) : h('span', { class: 'muted' }, 'none (inline image)')),
          img.copy_error ? h('div', { class: 'small warn' }, 'Copy failed: ', String(img.copy_error)) : null));
    })));
  }

  function drawDetails() {
    const cost = g.cost_usd !== null && g.cost_usd !== undefined
      ? h('span', null, usd(g.cost_usd), h('span', { class: 'muted small' }, ` (estimated ${usd(g.estimated_cost_usd)})`))
      : h('span', null, `~${usd(g.estimated_cost_usd)}`, h('span', { class: 'muted small' }, TERMINAL.has(g.status) ? ' estimated; no final cost recorded' : ' estimated; final once fal finishes'));
    const timings = g.timings && typeof g.timings === 'object' ? Object.entries(g.timings).map(([k, v]) => `${k} ${typeof v === 'number' ? `${v} s` : String(v)}`).join(' · ') : null;
    replace(details,
      h('section', { class: 'section', 'aria-labelledby': 'details-title' }, h('h2', { id: 'details-title' }, 'Details'),
        kvTable([
          ['Status', pill(g.status)],
          ['Error', g.error ? errorView(g.error) : undefined],
          ['Seed', g.seed !== null && g.seed !== undefined ? h('span', { class: 'mono', 'data-testid': 'seed' }, String(g.seed)) : null],
          ['Cost', cost],
          ['fal timings', timings],
          ['End user', g.end_user ? h('span', { class: 'mono' }, String(g.end_user)) : null],
          ['Metadata', g.metadata ? jsonBlock(g.metadata) : null],
          ['Created', time(g.created_at)],
          ['Submitted to fal', time(g.submitted_at)],
          ['Finished', time(g.completed_at)],
          ['fal request', g.fal_request_id ? h('span', { class: 'mono small' }, String(g.fal_request_id)) : null],
          ['webhook_url', g.webhook_url ? extLink(g.webhook_url) : undefined],
        ])),
      h('section', { class: 'section', 'aria-labelledby': 'input-title' }, h('h2', { id: 'input-title' }, 'Input (normalised)'), inputTable(g.input || {})));
  }
}

function errorView(error) {
  if (typeof error !== 'object') return String(error);
  const { code, message, ...rest } = error;
  return h('div', { class: 'error-view' },
    code ? h('code', { class: 'tag tag-bad' }, String(code)) : null, ' ', message ? String(message) : '',
    Object.keys(rest).length ? jsonBlock(rest) : null);
}

function inputTable(input) {
  const rows = [];
  for (const [k, v] of Object.entries(input)) {
    if (k === 'image_size_preset') continue;
    if (k === 'prompt') rows.push([k, h('span', { class: 'pre' }, String(v))]);
    else if (k === 'image_size' && v && typeof v === 'object') rows.push([k, `${v.width} × ${v.height}${input.image_size_preset ? ` (${input.image_size_preset})` : ''}`]);
    else if (k === 'image_urls' && Array.isArray(v)) rows.push([k, h('div', { class: 'sources' }, v.map((u) => sourceImage(u)))]);
    else if (v !== null && typeof v === 'object') rows.push([k, jsonBlock(v)]);
    else rows.push([k, h('code', null, String(v))]);
  }
  return kvTable(rows, { class: 'kv-input' });
}

function sourceImage(u) {
  const src = safeUrl(u, { image: true });
  const label = typeof u === 'string' && u.startsWith('data:') ? `${u.slice(0, 30)}… (${Math.round(u.length / 1024)} KiB)` : String(u);
  return h('div', { class: 'source' }, src ? h('img', { src, alt: 'source image', class: 'source-thumb', loading: 'lazy' }) : null, src && !src.startsWith('data:') ? extLink(src, label) : h('span', { class: 'small mono' }, label));
}

function eventItem(id, body) {
  const type = String(body.type || '');
  const state = type.startsWith('generation.') ? type.slice('generation.'.length) : 'unknown';
  return h('li', { class: 'timeline-item', 'data-event-id': id, 'data-testid': 'event' },
    pill(state), ' ', h('code', null, type), ' ', time(body.timestamp),
    h('div', { class: 'small muted mono' }, id));
}

/** The body of a variation: this generation's parameters, the new prompt, `seed_from` it. */
export function varyRequest(g, prompt, me) {
  const input = g.input || {};
  const edit = /\/edit$/.test(String(g.model || '')) || Array.isArray(input.image_urls);
  const body = { prompt, model: g.model };
  if (input.image_size_preset) body.image_size = input.image_size_preset;
  else if (input.image_size && typeof input.image_size === 'object') body.image_size = { width: input.image_size.width, height: input.image_size.height };
  for (const k of FAL_FIELDS) if (input[k] !== undefined && input[k] !== null) body[k] = input[k];
  if (edit && Array.isArray(input.image_urls)) body.image_urls = input.image_urls;
  if (g.metadata && typeof g.metadata === 'object') body.metadata = g.metadata;
  // A browser token is bound to its end user: the server attributes it; a key names it.
  if (g.end_user && !(me && me.token)) body.end_user = g.end_user;
  body.seed_from = g.id;
  return { path: edit ? '/v1/edits' : '/v1/generations', body };
}

function varyForm(ctx, current) {
  const { signal } = ctx;
  const g0 = current();
  const prompt = h('textarea', { rows: '3', required: true, 'data-testid': 'vary-prompt' });
  prompt.value = String((g0.input && g0.input.prompt) || '');
  const button = h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'vary-submit' }, 'Vary');
  const form = h('form', { class: 'form card-panel', novalidate: true, 'aria-labelledby': 'vary-title' },
    h('h2', { id: 'vary-title' }, 'Vary'),
    h('p', { class: 'small muted' }, 'A new generation with this one\'s seed (seed_from) and parameters, and the prompt below. It needs this generation to have a seed: a completed one.'),
    h('div', { class: 'form-errors' }),
    h('div', { class: 'field', dataset: { field: 'prompt' } }, h('label', { for: 'vary-prompt' }, 'Prompt'), prompt, h('p', { class: 'field-error', id: 'vary-prompt-error', hidden: true })),
    h('div', { class: 'actions' }, button));
  prompt.id = 'vary-prompt';
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearFieldErrors(form);
    const text = prompt.value;
    if (!text.trim()) {
      showFieldErrors(form, { fieldErrors: [{ field: 'prompt', message: 'Enter a prompt.' }], body: {} });
      prompt.focus();
      return;
    }
    const { path, body } = varyRequest(current(), text, ctx.me);
    button.disabled = true;
    button.textContent = 'Submitting…';
    try {
      const { data } = await request('POST', path, { body, signal, headers: { 'Idempotency-Key': idempotencyKey() } });
      if (data && typeof data.id === 'string' && /^gen_[A-Za-z0-9]+$/.test(data.id)) ctx.navigate(`#/generations/${data.id}`);
    } catch (problem) {
      if (signal.aborted) return;
      showFieldErrors(form, problem, { action: 'create generations' });
    } finally {
      button.disabled = false;
      button.textContent = 'Vary';
    }
  });
  return form;
}

/** Deliveries of this generation's events, found by searching each subscription's log. */
function deliveriesSection(ctx, eventIds) {
  const { signal } = ctx;
  const table = deliveryTable({ signal, showTarget: true });
  const note = h('p', { class: 'small muted' }, 'fluxgate lists deliveries per subscription; this searches the newest 100 deliveries of each subscription for this generation\'s events. Deliveries to a per-request webhook_url cannot be listed.');
  const result = h('div', { 'aria-live': 'polite' });
  const find = h('button', { type: 'button', class: 'btn', 'data-testid': 'find-deliveries' }, 'Find deliveries');
  find.addEventListener('click', async () => {
    const ids = new Set(eventIds());
    if (!ids.size) { replace(result, h('p', { class: 'small muted' }, 'This generation has no events yet.')); return; }
    find.disabled = true;
    replace(result, h('p', { class: 'small muted' }, 'Searching…'));
    try {
      const subs = await get(`/v1/subscriptions${query({ limit: 100 })}`, { signal });
      const list = Array.isArray(subs && subs.data) ? subs.data : [];
      const found = [];
      for (const s of list) {
        if (!s || !/^sub_[A-Za-z0-9]+$/.test(String(s.id))) continue;
        const page = await get(`/v1/subscriptions/${seg(s.id)}/deliveries${query({ limit: 100 })}`, { signal });
        for (const d of Array.isArray(page && page.data) ? page.data : []) if (ids.has(d.event_id)) found.push(d);
      }
      table.set(found);
      replace(result, h('p', { class: 'small muted' }, `${found.length} deliveries found across ${list.length} subscriptions${subs && subs.has_more ? ' (the first 100 subscriptions only)' : ''}.`));
    } catch (problem) {
      if (signal.aborted) return;
      replace(result, problemBox(problem, { action: 'read deliveries' }));
    } finally {
      find.disabled = false;
    }
  });
  return h('section', { class: 'section', 'aria-labelledby': 'dlv-title' },
    h('div', { class: 'section-head' }, h('h2', { id: 'dlv-title' }, 'Deliveries'), find), note, result, table.el);
}

