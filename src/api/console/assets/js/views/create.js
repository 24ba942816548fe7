// Create (`#/new`, or `#/new?from=gen_…` to start from an earlier generation's parameters): the
// generation / edit form of generation-form.js, a live price estimate, and submission. Each
// change is debounced and POSTed to /v1/estimates with the same body, showing
// `estimated_cost_usd` and `megapixels` (`data-testid="create-estimate"`) and any 422 field
// errors beside their fields. Submitting POSTs /v1/generations or /v1/edits (with an
// Idempotency-Key, reused if the same body is sent again after a failure that may not have
// reached the server) and opens the new generation's page.
import { get, post, request, seg, toJson, idempotencyKey } from '/console/js/api.js';
import { h, replace, usd, viewTitle, debounce } from '/console/js/dom.js';
import { problemBox, showFieldErrors, clearFieldErrors } from '/console/js/problem.js';
import { loadCatalog } from '/console/js/catalog.js';
import { generationForm } from '/console/js/generation-form.js';

const ESTIMATE_DELAY_MS = 350;

export async function render(ctx) {
  const { root, signal, params, me } = ctx;
  replace(root, h('p', { class: 'muted' }, 'Loading…'));
  await loadCatalog();
  if (signal.aborted) return;

  const lockedEndUser = me && me.token && me.token.end_user ? String(me.token.end_user) : '';
  const estimateOut = h('output', { class: 'estimate', 'data-testid': 'create-estimate', 'aria-live': 'polite' }, 'Enter a prompt to see the price.');
  const submit = h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'create-submit' }, 'Generate');
  let estimateCtl = null;
  let seq = 0;
  let lastAttempt = null; // {text, key}: resend the same body with the same Idempotency-Key

  const estimate = debounce(runEstimate, ESTIMATE_DELAY_MS);
  signal.addEventListener('abort', () => { estimate.cancel(); if (estimateCtl) estimateCtl.abort(); });
  const gen = generationForm({ onChange: () => { submit.textContent = gen.mode === 'edit' ? 'Edit' : 'Generate'; estimate(); }, lockedEndUser });

  const form = h('form', { class: 'form create-form', novalidate: true, 'aria-labelledby': 'create-title', 'data-testid': 'create-form' },
    h('div', { class: 'form-errors' }),
    gen.el,
    h('div', { class: 'create-footer' },
      h('div', { class: 'estimate-box' }, h('span', { class: 'small muted' }, 'Estimate'), estimateOut),
      submit));

  replace(root, h('div', { class: 'view view-create' },
    h('div', { class: 'view-head' }, h('h1', { id: 'create-title', tabindex: '-1', class: 'view-title' }, 'Create')),
    h('p', { class: 'lede' }, 'Every field is validated exactly as fluxgate validates it; the price is fluxgate\'s own estimate for this exact body.'),
    form));

  const from = params.get('from');
  if (from && /^gen_[A-Za-z0-9]+$/.test(from)) {
    try {
      const g = await get(`/v1/generations/${seg(from)}`, { signal });
      gen.prefill(g);
      submit.textContent = gen.mode === 'edit' ? 'Edit' : 'Generate';
      form.querySelector('.form-errors').appendChild(h('p', { class: 'notice notice-info' }, 'Started from ', h('a', { href: `#/generations/${g.id}`, class: 'mono' }, String(g.id)), '.'));
      estimate();
    } catch (problem) {
      if (signal.aborted) return;
      form.querySelector('.form-errors').appendChild(problemBox(problem, { action: 'read generations' }));
    }
  }

  async function runEstimate() {
    const { body, errors, mode } = gen.read();
    const mine = ++seq;
    if (estimateCtl) estimateCtl.abort();
    if (errors.length) {
      showFieldErrors(form, localProblem(errors));
      replace(estimateOut, 'Fix the marked fields to see the price.');
      return;
    }
    if (!String(body.prompt || '').trim()) { clearFieldErrors(form); replace(estimateOut, 'Enter a prompt to see the price.'); return; }
    if (mode === 'edit' && !(body.image_urls && body.image_urls.length)) { clearFieldErrors(form); replace(estimateOut, 'Add a source image to see the price.'); return; }
    const ctl = new AbortController();
    estimateCtl = ctl;
    estimateOut.classList.add('pending');
    try {
      const est = await post('/v1/estimates', body, { signal: ctl.signal });
      if (mine !== seq) return;
      clearFieldErrors(form);
      showEstimate(est);
    } catch (problem) {
      if (ctl.signal.aborted || mine !== seq) return;
      if (problem.status === 422) {
        showFieldErrors(form, problem);
        replace(estimateOut, h('span', { class: 'warn' }, problem.fieldErrors.length ? 'Invalid: see the marked fields.' : problem.detail));
      } else {
        replace(estimateOut, h('span', { class: 'warn' }, problem.status === 403 ? `No estimate: this key lacks ${problem.scope || 'the scope'}.` : `No estimate: ${problem.detail}`));
      }
      estimateOut.dataset.usd = '';
    } finally {
      if (estimateCtl === ctl) estimateCtl = null;
      estimateOut.classList.remove('pending');
    }
  }

  function showEstimate(est) {
    const mp = est && est.megapixels !== undefined ? Number(est.megapixels) : null;
    estimateOut.dataset.usd = String(est.estimated_cost_usd ?? '');
    estimateOut.dataset.megapixels = mp === null ? '' : String(mp);
    replace(estimateOut,
      h('strong', { class: 'estimate-usd' }, usd(est.estimated_cost_usd)),
      h('span', { class: 'small' }, ` · ${mp ?? '?'} MP`, est.price_per_megapixel_usd !== undefined ? ` × ${usd(est.price_per_megapixel_usd)}/MP` : '', est.model ? ` · ${est.model}` : ''),
      est.note ? h('span', { class: 'block small muted' }, String(est.note)) : null);
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    estimate.cancel();
    const { body, errors, endpoint } = gen.read();
    if (errors.length) {
      const { first } = showFieldErrors(form, localProblem(errors));
      if (first) first.focus();
      return;
    }
    const text = toJson({ endpoint, body });
    const key = lastAttempt && lastAttempt.text === text ? lastAttempt.key : idempotencyKey();
    lastAttempt = { text, key };
    submit.disabled = true;
    const label = submit.textContent;
    submit.textContent = 'Submitting…';
    try {
      const { data } = await request('POST', endpoint, { body, signal, headers: { 'Idempotency-Key': key } });
      lastAttempt = null;
      if (data && typeof data.id === 'string' && /^gen_[A-Za-z0-9]+$/.test(data.id)) ctx.navigate(`#/generations/${data.id}`);
    } catch (problem) {
      if (signal.aborted) return;
      // A refused body is final for its key; a network error or 5xx may be retried with it.
      if (problem.status !== 0 && problem.status < 500) lastAttempt = null;
      const { first } = showFieldErrors(form, problem, { action: 'create generations' });
      if (first) first.focus();
      else form.querySelector('.form-errors').scrollIntoView({ block: 'nearest' });
    } finally {
      submit.disabled = false;
      submit.textContent = label;
    }
  });

  gen.focus();
}

function localProblem(errors) {
  return { status: 422, title: 'Invalid input', detail: 'Fix the marked fields.', fieldErrors: errors, body: {} };
}

