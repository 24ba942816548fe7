// The console's entry point, and the only script index.html loads. It owns one job that must
// happen before anything else: a `#key=<api key>` fragment (the sign-in link) is read, removed
// from the address bar with history.replaceState, and the key kept in sessionStorage under
// `fluxgate.key` — before any other module is fetched or any API request is made, which is why
// this file has no static imports (session.js does the same for a `#key=` arriving later). Only
// then is the rest of the console (app.js and everything it imports) loaded.

const hash = window.location.hash;
if (/^#key=/.test(hash)) {
  window.history.replaceState(null, '', '/console');
  let key = '';
  try {
    key = (new URLSearchParams(hash.slice(1)).get('key') || '').trim();
  } catch (_) {
    key = '';
  }
  if (key) {
    try {
      window.sessionStorage.setItem('fluxgate.key', key);
    } catch (_) {
      window.__fluxgateKey = key; // storage refused: session.js picks it up for this page only
    }
  }
}

import('/console/js/app.js')
  .then((app) => app.start())
  .catch((err) => {
    const boot = document.getElementById('boot');
    if (boot) boot.textContent = `The console failed to load: ${err && err.message ? err.message : err}`;
  });
