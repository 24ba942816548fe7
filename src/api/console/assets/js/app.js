// The console shell: sign-in state, the top bar (nav, tenant, end user, sign out) and the hash
// router. Routes live after the `#`: `#/` gallery, `#/generations/gen_…`, `#/new`,
// `#/subscriptions`, `#/subscriptions/sub_…`, `#/usage` (a `#key=` fragment is a sign-in, not a
// route). Each view gets a fresh AbortController whose signal ends its fetches and streams when
// the route changes or the user signs out; a 401 from anywhere returns to the sign-in form.
import { get, setUnauthorizedHandler } from '/console/js/api.js';
import { captureKeyFromFragment, clearKey, currentKey, isKeyFragment, setKey } from '/console/js/session.js';
import { h, replace, ago } from '/console/js/dom.js';
import { problemBox } from '/console/js/problem.js';
import { loadCatalog } from '/console/js/catalog.js';
import { renderSignIn } from '/console/js/views/signin.js';
import * as gallery from '/console/js/views/gallery.js';
import * as generation from '/console/js/views/generation.js';
import * as create from '/console/js/views/create.js';
import * as subscriptions from '/console/js/views/subscriptions.js';
import * as subscription from '/console/js/views/subscription.js';
import * as usage from '/console/js/views/usage.js';

const ROUTES = [
  { pattern: /^\/?$/, view: gallery, nav: 'generations', title: 'Generations' },
  { pattern: /^\/generations\/(gen_[A-Za-z0-9_-]+)$/, view: generation, nav: 'generations', title: 'Generation' },
  { pattern: /^\/new$/, view: create, nav: 'create', title: 'Create' },
  { pattern: /^\/subscriptions$/, view: subscriptions, nav: 'subscriptions', title: 'Subscriptions' },
  { pattern: /^\/subscriptions\/(sub_[A-Za-z0-9_-]+)$/, view: subscription, nav: 'subscriptions', title: 'Subscription' },
  { pattern: /^\/usage$/, view: usage, nav: 'usage', title: 'Usage' },
];

const NAV = [
  { id: 'generations', href: '#/', label: 'Generations', scope: 'generations:read' },
  { id: 'create', href: '#/new', label: 'Create', scope: 'generations:write' },
  { id: 'subscriptions', href: '#/subscriptions', label: 'Subscriptions', scope: 'subscriptions:manage' },
  { id: 'usage', href: '#/usage', label: 'Usage', scope: 'admin' },
];

const state = { me: null, view: null, expiryTimer: 0, routed: 0 };
const main = () => document.getElementById('main');
const topbar = () => document.getElementById('topbar');

export async function start() {
  setUnauthorizedHandler(onUnauthorized);
  window.addEventListener('hashchange', onHashChange);
  const skip = document.getElementById('skip-link');
  if (skip) skip.addEventListener('click', (e) => { e.preventDefault(); focusMain(); });
  loadCatalog();
  const key = currentKey();
  if (!key) return showSignIn();
  return signIn(key);
}

/** Checks `key` with GET /v1/me; on success shows the console, else answers the Problem. */
async function signIn(key, { fromForm = false } = {}) {
  stopView();
  state.me = null;
  if (!fromForm) replace(main(), h('p', { class: 'boot' }, 'Signing in…'));
  try {
    const me = await get('/v1/me', { key });
    setKey(key);
    state.me = me;
    renderTopbar();
    armExpiry();
    route();
    return null;
  } catch (problem) {
    // A refused key is forgotten; one that could not be checked (network, 5xx) is kept to retry.
    const refused = problem && (problem.status === 401 || problem.status === 403);
    if (refused) clearKey();
    if (!fromForm) showSignIn(problem, refused ? null : () => signIn(key));
    return problem;
  }
}

function showSignIn(problem, retry) {
  stopView();
  state.me = null;
  clearTimeout(state.expiryTimer);
  const bar = topbar();
  bar.hidden = true;
  replace(bar);
  document.title = 'Sign in · fluxgate console';
  renderSignIn(main(), { problem, retry, onKey: (key) => signIn(key, { fromForm: true }) });
}

function onUnauthorized(problem) {
  if (!state.me) return; // signing in: signIn() shows the refusal itself
  clearKey();
  showSignIn(problem);
}

function signOut() {
  clearKey();
  window.history.replaceState(null, '', '/console');
  showSignIn();
}

function onHashChange() {
  if (isKeyFragment(window.location.hash)) {
    captureKeyFromFragment();
    const key = currentKey();
    if (key) signIn(key);
    return;
  }
  if (!state.me) return;
  route();
}

/** With a browser token, check again when it expires: the server will then refuse it (401). */
function armExpiry() {
  clearTimeout(state.expiryTimer);
  const expires = state.me && state.me.token && Date.parse(state.me.token.expires_at);
  if (!expires || Number.isNaN(expires)) return;
  const wait = Math.max(1000, Math.min(expires - Date.now() + 1000, 2 ** 31 - 1));
  state.expiryTimer = setTimeout(() => { get('/v1/me').catch(() => {}); }, wait);
}

function hasScope(scope) {
  const scopes = state.me && state.me.key && Array.isArray(state.me.key.scopes) ? state.me.key.scopes : [];
  return scopes.includes(scope);
}

function renderTopbar() {
  const me = state.me || {};
  const bar = topbar();
  const tenant = me.tenant && typeof me.tenant.name === 'string' ? me.tenant.name : '';
  const token = me.token && typeof me.token === 'object' ? me.token : null;
  const scopes = me.key && Array.isArray(me.key.scopes) ? me.key.scopes.join(', ') : '';
  const links = NAV.map((n) => h(
    'a',
    { href: n.href, class: ['nav-link', hasScope(n.scope) ? null : 'nav-lacks'], 'data-testid': `nav-${n.id}`, dataset: { nav: n.id }, title: hasScope(n.scope) ? null : `This key lacks the ${n.scope} scope` },
    n.label,
  ));
  const who = [h('span', { class: 'tenant', title: scopes ? `Scopes: ${scopes}` : null, 'data-testid': 'tenant' }, tenant || 'tenant')];
  if (token && token.end_user) {
    const exp = token.expires_at ? new Date(token.expires_at) : null;
    who.push(h(
      'span',
      { class: 'end-user-badge', 'data-testid': 'end-user', title: exp && !Number.isNaN(exp.getTime()) ? `Browser token, expires ${exp.toLocaleString()} (${ago(exp)})` : 'Browser token' },
      'as ', h('strong', null, String(token.end_user)),
    ));
  }
  replace(
    bar,
    h('a', { class: 'brand', href: '#/' }, h('span', { class: 'brand-mark', 'aria-hidden': 'true' }), 'fluxgate'),
    h('nav', { class: 'nav', 'aria-label': 'Console' }, links),
    h('div', { class: 'who' }, who, h('button', { type: 'button', class: 'btn btn-quiet', 'data-testid': 'signout', on: { click: signOut } }, 'Sign out')),
  );
  bar.hidden = false;
}

function markNav(id) {
  for (const a of topbar().querySelectorAll('.nav-link')) {
    if (a.dataset.nav === id) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

function stopView() {
  if (state.view) state.view.abort();
  state.view = null;
}

function parseHash() {
  const raw = window.location.hash.replace(/^#/, '');
  const q = raw.indexOf('?');
  const path = q < 0 ? raw : raw.slice(0, q);
  const params = new URLSearchParams(q < 0 ? '' : raw.slice(q + 1));
  return { path: path || '/', params };
}

function route() {
  stopView();
  const { path, params } = parseHash();
  const controller = new AbortController();
  state.view = controller;
  const root = main();
  replace(root);
  const match = ROUTES.map((r) => ({ r, m: r.pattern.exec(path) })).find((x) => x.m);
  if (!match) {
    markNav(null);
    document.title = 'Not found · fluxgate console';
    replace(root, h('div', { class: 'view' }, h('h1', { tabindex: '-1', class: 'view-title' }, 'Not found'), h('p', null, 'There is no such page in the console. ', h('a', { href: '#/' }, 'Go to generations'), '.')));
    return;
  }
  const { r, m } = match;
  markNav(r.nav);
  document.title = `${r.title} · fluxgate console`;
  const ctx = {
    root,
    signal: controller.signal,
    me: state.me,
    id: m[1],
    params,
    has: hasScope,
    navigate: (hash) => { window.location.hash = hash; },
    /** Rewrites the route's query without a navigation (filters). */
    setParams: (next) => {
      const qs = new URLSearchParams();
      for (const [k, v] of Object.entries(next)) if (v) qs.set(k, v);
      const s = qs.toString();
      window.history.replaceState(null, '', `/console#${path}${s ? `?${s}` : ''}`);
    },
    setTitle: (t) => { document.title = `${t} · fluxgate console`; },
  };
  const first = state.routed === 0;
  state.routed += 1;
  try {
    const result = r.view.render(ctx);
    if (result && typeof result.catch === 'function') {
      result.catch((err) => { if (!controller.signal.aborted) root.appendChild(problemBox(err)); });
    }
  } catch (err) {
    root.appendChild(problemBox(err));
  }
  if (!first) focusMain();
}

function focusMain() {
  const heading = main().querySelector('h1');
  (heading || main()).focus({ preventScroll: false });
}
