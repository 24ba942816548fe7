// The signed-in key, and nothing else. A key lives only in sessionStorage under `fluxgate.key`
// (never a cookie, never localStorage, never a URL): it is read from a `#key=` sign-in fragment
// (which is removed from the address bar at once), from the sign-in form, or from storage, and
// forgotten on sign-out or when the server refuses it. main.js handles the fragment of the
// first page load itself (before any module is fetched); this module handles one that arrives
// later, when a signed-in page is handed a new `#key=` link.

const STORAGE_KEY = 'fluxgate.key';
const CONSOLE_PATH = '/console';
// main.js's fallback when sessionStorage refused a key from the sign-in fragment.
let memoryKey = typeof window.__fluxgateKey === 'string' ? window.__fluxgateKey : '';
delete window.__fluxgateKey;

/** Whether the fragment is a sign-in fragment (`#key=…`) rather than a route (`#/…`). */
export function isKeyFragment(hash) {
  return typeof hash === 'string' && /^#key=/.test(hash);
}

/**
 * Reads `#key=<key>` from the address bar, removes the fragment immediately and stores the key.
 * Answers whether a key was found. Safe to call at any time (also on a later hashchange).
 */
export function captureKeyFromFragment() {
  const hash = window.location.hash;
  if (!isKeyFragment(hash)) return false;
  // Remove the fragment first: nothing below may leave the key in the address bar or history.
  window.history.replaceState(null, '', CONSOLE_PATH);
  let key = '';
  try {
    key = new URLSearchParams(hash.slice(1)).get('key') || '';
  } catch (_) {
    key = '';
  }
  key = key.trim();
  if (key) setKey(key);
  return Boolean(key);
}

export function getKey() {
  try {
    return window.sessionStorage.getItem(STORAGE_KEY) || '';
  } catch (_) {
    return '';
  }
}

export function setKey(key) {
  try {
    window.sessionStorage.setItem(STORAGE_KEY, key);
  } catch (_) {
    // Storage refused (private mode quotas): the key then lasts only as long as this page.
    memoryKey = key;
  }
}

export function clearKey() {
  memoryKey = '';
  try {
    window.sessionStorage.removeItem(STORAGE_KEY);
  } catch (_) {
    /* nothing stored */
  }
}

/** The key to send: storage first, then the in-memory fallback. */
export function currentKey() {
  return getKey() || memoryKey;
}
