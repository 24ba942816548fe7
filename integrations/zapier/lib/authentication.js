// The connection: a fluxgate base URL (every user runs their own) and an API key, checked with
// GET /v1/me, which also says whether the key holds the scopes this app uses.
'use strict';

const { apiUrl, baseUrl } = require('./api');

/** What the triggers, actions and search call: creating, reading, and REST Hook subscriptions. */
const REQUIRED_SCOPES = ['generations:write', 'generations:read', 'subscriptions:manage'];

const test = async (z, bundle) => {
  const response = await z.request({ url: apiUrl(bundle, '/v1/me') });
  const me = response.data;
  const held = (me.key && me.key.scopes) || [];
  const missing = REQUIRED_SCOPES.filter((scope) => !held.includes(scope));
  if (missing.length > 0) {
    throw new z.errors.Error(
      `This API key lacks the scopes ${missing.join(', ')}. Make one with ` +
        `fluxgate keys create --scopes ${REQUIRED_SCOPES.join(',')}.`,
      'insufficient_scope',
      403,
    );
  }
  return me;
};

/** "acme @ gw.example.com": the tenant, and which fluxgate it lives on. */
const connectionLabel = (z, bundle) => {
  const host = baseUrl(bundle.authData).replace(/^https?:\/\//i, '');
  const tenant = bundle.inputData.tenant || {};
  return `${tenant.name} @ ${host}`;
};

module.exports = {
  REQUIRED_SCOPES,
  authentication: {
    type: 'custom',
    fields: [
      {
        key: 'base_url',
        label: 'fluxgate URL',
        type: 'string',
        required: true,
        helpText:
          'The address of your own fluxgate, such as `https://gw.example.com`. ' +
          'It must be reachable from Zapier, and allow Zapier\'s hook URLs as webhook targets.',
      },
      {
        key: 'api_key',
        label: 'API key',
        type: 'password',
        required: true,
        helpText:
          'A key (`fg_…`) holding the scopes `generations:write,generations:read,subscriptions:manage`: ' +
          '`fluxgate keys create --tenant NAME --scopes generations:write,generations:read,subscriptions:manage`.',
      },
    ],
    test,
    connectionLabel,
  },
};
