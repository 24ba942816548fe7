// The connection against a live fluxgate: the right key connects and labels the connection, a
// wrong key and a key without the app's scopes are refused with errors that say why.
'use strict';

const assert = require('node:assert/strict');
const { REQUIRED_SCOPES } = require('../lib/authentication');
const { App, appTester, authData, bundle, liveTest, shown, BASE_URL, NARROW_KEY } = require('./support/fluxgate');

liveTest('the connection test answers with the tenant and the key scopes, and labels the connection by them', async () => {
  const me = await appTester(App.authentication.test, bundle());
  assert.equal(typeof me.tenant.name, 'string');
  for (const scope of REQUIRED_SCOPES) assert.ok(me.key.scopes.includes(scope), `${scope} in ${me.key.scopes}`);

  const label = await appTester(App.authentication.connectionLabel, bundle(me));
  assert.equal(label, `${me.tenant.name} @ ${new URL(BASE_URL).host}`);
});

liveTest('a wrong key fails the connection test with an auth error naming fluxgate\'s code', async () => {
  const key = authData.api_key;
  const wrong = key.slice(0, -1) + (key.endsWith('a') ? 'b' : 'a');
  await assert.rejects(
    appTester(App.authentication.test, { authData: { ...authData, api_key: wrong }, inputData: {} }),
    (error) => {
      assert.equal(error.name, 'ExpiredAuthError');
      assert.match(error.message, /did not accept this API key \(invalid_api_key\)/);
      return true;
    },
  );
});

liveTest('a key without the subscriptions scope fails the connection test naming the scopes it lacks', async () => {
  assert.ok(NARROW_KEY, 'FLUXGATE_NARROW_KEY: a key holding only generations:write');
  await assert.rejects(
    appTester(App.authentication.test, { authData: { ...authData, api_key: NARROW_KEY }, inputData: {} }),
    (error) => {
      const { message, code } = shown(error);
      assert.equal(code, 'insufficient_scope');
      assert.match(message, /lacks the scopes generations:read, subscriptions:manage/);
      return true;
    },
  );
});
