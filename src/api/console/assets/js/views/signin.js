// The sign-in form, shown whenever no key is held (or the held one was refused). It takes an
// API key (`fg_…`) or a browser token (`fgt_…`) in a password field and hands it to the app,
// which checks it with GET /v1/me; a refusal's `detail` is shown under the field and the form
// stays. Nothing is submitted natively (the CSP's form-action is 'none'), and the key is never
// put in a URL. A `#key=<key>` link signs in without this form.
import { h, replace } from '/console/js/dom.js';
import { problemBox } from '/console/js/problem.js';

/**
 * Renders the form into `root`. `onKey(key)` answers a Problem when the key is refused (or null
 * once signed in); `problem` is why the last session ended; `retry` re-checks a kept key.
 */
export function renderSignIn(root, { problem, onKey, retry }) {
  const input = h('input', {
    type: 'password',
    id: 'signin-key',
    name: 'key',
    autocomplete: 'off',
    spellcheck: 'false',
    autocapitalize: 'off',
    required: true,
    placeholder: 'fg_… or fgt_…',
    'data-testid': 'signin-key',
    'aria-describedby': 'signin-hint signin-error',
  });
  const error = h('div', { id: 'signin-error', class: 'signin-error', 'data-testid': 'signin-error', 'aria-live': 'polite' });
  const button = h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'signin-submit' }, 'Sign in');
  const form = h(
    'form',
    { class: 'signin-form', novalidate: true, 'aria-labelledby': 'signin-title' },
    h('label', { for: 'signin-key' }, 'API key or browser token'),
    input,
    h('p', { class: 'hint', id: 'signin-hint' }, 'Kept in this tab only (sessionStorage) and sent as an Authorization header. Signing out forgets it.'),
    error,
    h('div', { class: 'actions' }, button),
  );
  if (problem) replace(error, sessionEnded(problem, retry));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) {
      replace(error, h('p', { class: 'field-error' }, 'Enter an API key.'));
      input.focus();
      return;
    }
    button.disabled = true;
    button.textContent = 'Checking…';
    replace(error);
    const refused = await onKey(key);
    if (!refused) return; // signed in: the app has replaced this view
    button.disabled = false;
    button.textContent = 'Sign in';
    replace(error, h('p', { class: 'field-error', 'data-testid': 'signin-detail' }, refused.detail || refused.message || 'The key was refused.'));
    input.setAttribute('aria-invalid', 'true');
    input.select();
  });
  replace(
    root,
    h(
      'div',
      { class: 'signin' },
      h('div', { class: 'signin-card' },
        h('div', { class: 'signin-brand' }, h('span', { class: 'brand-mark', 'aria-hidden': 'true' }), 'fluxgate'),
        h('h1', { id: 'signin-title', tabindex: '-1' }, 'Sign in to the console'),
        form),
    ),
  );
  input.focus();
}

function sessionEnded(problem, retry) {
  if (problem.status === 401) {
    return h('p', { class: 'field-error', 'data-testid': 'signin-detail' }, problem.detail || 'The key was refused.');
  }
  return h('div', null,
    problemBox(problem),
    retry ? h('button', { type: 'button', class: 'btn', on: { click: retry } }, 'Try again') : null);
}
