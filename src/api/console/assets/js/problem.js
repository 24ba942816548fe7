// How the console shows what the API refused. `problemBox()` turns a Problem into a calm,
// readable notice: a 403 `insufficient_scope` as "This key may not … — it lacks the `scope`
// scope" (`data-testid="refused"`), a 402 with when the budget resets, a 429 with when to retry,
// anything else with its detail, code and request id. `showFieldErrors()` puts each 422
// `errors[].message` beside the form control whose `data-field` is the error's JSON field name
// (`image_size.width`, `image_urls[0]`), falling back to the nearest named parent field and
// then to a list at the top of the form.
import { h, replace } from '/console/js/dom.js';

/** What each scope lets a key do, for refusal messages. */
const SCOPE_ACTIONS = {
  'generations:read': 'list or read generations',
  'generations:write': 'create generations, edits or estimates',
  'events:read': 'read events or follow live streams',
  'subscriptions:manage': 'manage subscriptions and their deliveries',
  admin: 'read usage, limits and alerts',
};

/** A notice for `problem`. `action` says what was being attempted ("see subscriptions"). */
export function problemBox(problem, { action } = {}) {
  if (!problem || typeof problem !== 'object') return h('div', { class: 'notice notice-error', role: 'alert' }, String(problem));
  if (problem.status === 403) return refusedBox(problem, action);
  const lines = [h('strong', null, problem.title || 'Error'), ' ', problem.detail || problem.message || ''];
  if (problem.status === 402 && problem.body.resets_at) {
    const d = new Date(problem.body.resets_at);
    if (!Number.isNaN(d.getTime())) lines.push(h('span', { class: 'block' }, `The budget resets ${d.toLocaleString()}.`));
  }
  if (problem.status === 429) {
    const wait = problem.retryAfter;
    if (wait !== null) lines.push(h('span', { class: 'block' }, `Retry in ${wait} s.`));
  }
  const meta = [];
  if (problem.code) meta.push(`code ${problem.code}`);
  if (problem.status) meta.push(`HTTP ${problem.status}`);
  if (problem.requestId) meta.push(`request ${problem.requestId}`);
  return h(
    'div',
    { class: ['notice', problem.status === 0 || problem.status >= 500 ? 'notice-warn' : 'notice-error'], role: 'alert', dataset: { code: problem.code } },
    h('p', null, lines),
    meta.length ? h('p', { class: 'notice-meta' }, meta.join(' · ')) : null,
  );
}

function refusedBox(problem, action) {
  const scope = problem.scope;
  const what = action || (scope && SCOPE_ACTIONS[scope]) || 'do this';
  const headline = scope
    ? ['This key may not ', what, ' — it lacks the ', h('code', null, scope), ' scope.']
    : ['This key may not ', what, '.'];
  return h(
    'div',
    { class: 'notice notice-refused', role: 'alert', 'data-testid': 'refused', dataset: { scope: scope || '' } },
    h('p', null, h('strong', null, headline)),
    problem.detail ? h('p', { class: 'notice-meta' }, problem.detail) : null,
    h('p', { class: 'notice-meta' }, 'Sign in with a key that holds the scope, or ask an operator to create one (fluxgate keys create --scopes …).'),
  );
}

/** Clears the errors a previous showFieldErrors() put in `form`. */
export function clearFieldErrors(form) {
  for (const el of form.querySelectorAll('.field-error')) {
    el.hidden = true;
    el.textContent = '';
  }
  for (const el of form.querySelectorAll('[aria-invalid="true"]')) el.removeAttribute('aria-invalid');
  for (const el of form.querySelectorAll('.form-errors')) replace(el);
}

/**
 * Shows each of `problem`'s field errors next to its field in `form`; anything not placed (and
 * the problem itself when it has no field errors) goes to the form's `.form-errors` slot.
 * Answers how many field errors were placed.
 */
export function showFieldErrors(form, problem, { action } = {}) {
  clearFieldErrors(form);
  const slot = form.querySelector('.form-errors');
  const errors = problem && problem.fieldErrors ? problem.fieldErrors : [];
  const unplaced = [];
  let placed = 0;
  let first = null;
  for (const { field, message } of errors) {
    const wrapper = findField(form, field);
    const errEl = wrapper && wrapper.querySelector(':scope > .field-error');
    if (!errEl) {
      unplaced.push({ field, message });
      continue;
    }
    errEl.hidden = false;
    errEl.textContent = errEl.textContent ? `${errEl.textContent} ${message}` : labelFor(field, wrapper, message);
    const control = wrapper.querySelector(':scope > input, :scope > select, :scope > textarea') || wrapper.querySelector('input, select, textarea');
    if (control) {
      control.setAttribute('aria-invalid', 'true');
      const described = new Set((control.getAttribute('aria-describedby') || '').split(/\s+/).filter(Boolean));
      described.add(errEl.id);
      control.setAttribute('aria-describedby', [...described].join(' '));
      if (!first) first = control;
    }
    placed += 1;
  }
  if (slot) {
    const items = [];
    if (!errors.length || unplaced.length) items.push(problemBox(problem, { action }));
    if (unplaced.length) items.push(h('ul', { class: 'unplaced' }, unplaced.map((e) => h('li', null, h('code', null, e.field || 'body'), ': ', e.message))));
    replace(slot, items);
  }
  return { placed, first };
}

/** `image_size.width` is shown by its own field when there is one, else by `image_size`. */
function findField(form, field) {
  const candidates = [field];
  let f = field;
  while (f) {
    const next = f.replace(/(\.[^.[\]]+|\[\d+\])$/, '');
    if (next === f) break;
    candidates.push(next);
    f = next;
  }
  for (const name of candidates) {
    for (const el of form.querySelectorAll('[data-field]')) {
      if (el.dataset.field === name) return el;
    }
  }
  return null;
}

function labelFor(field, wrapper, message) {
  return wrapper.dataset.field === field ? message : `${field}: ${message}`;
}
