// The live fluxgate the tests run against (tests/api/zapier.rs starts it and passes its URL and
// keys), the Zapier bundles that connect to it, and the few direct API calls a test checks with.
'use strict';

const { test } = require('node:test');
const zapier = require('zapier-platform-core');
const App = require('../../index');

const BASE_URL = process.env.FLUXGATE_URL;
const API_KEY = process.env.FLUXGATE_API_KEY;
const NARROW_KEY = process.env.FLUXGATE_NARROW_KEY;

const SKIP = BASE_URL && API_KEY ? false : 'needs a live fluxgate: run `cargo test --test api zapier`';

/** `node:test`'s test, skipped (with the reason) when no fluxgate was given; 30 s at most. */
const liveTest = (name, fn) => test(name, { skip: SKIP, timeout: 30000 }, fn);

const appTester = zapier.createAppTester(App);

const authData = { base_url: BASE_URL, api_key: API_KEY };

/** A bundle with this connection and `inputData`, plus any other bundle members. */
const bundle = (inputData = {}, extra = {}) => ({ authData, inputData, ...extra });

/** A direct API call, outside the app: what the test checks the app against. */
const api = async (path, { method = 'GET', body } = {}) => {
  const response = await fetch(`${BASE_URL}${path}`, {
    method,
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
};

/** Asks `probe` again until it answers something truthy, or fails at the deadline. */
const until = async (what, probe, { deadlineMs = 15000, everyMs = 50 } = {}) => {
  const deadline = Date.now() + deadlineMs;
  let last;
  for (;;) {
    last = await probe();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${deadlineMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
};

/** What a Zapier error says to the Zap's owner (z.errors.Error wraps it in JSON). */
const shown = (error) => {
  try {
    return JSON.parse(error.message);
  } catch (_) {
    return { message: error.message };
  }
};

module.exports = { App, appTester, authData, bundle, api, until, shown, liveTest, BASE_URL, NARROW_KEY };
