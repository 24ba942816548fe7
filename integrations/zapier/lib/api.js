// Where the connection's fluxgate lives: the base URL a user typed, tidied, and the URLs of its
// API below it.
'use strict';

/** The base URL as typed, without surrounding space or trailing slashes; https if no scheme. */
const baseUrl = (authData) => {
  const typed = String(authData.base_url || '').trim().replace(/\/+$/, '');
  return /^https?:\/\//i.test(typed) ? typed : `https://${typed}`;
};

/** The absolute URL of `path` (which starts with `/v1/…`) on the connection's fluxgate. */
const apiUrl = (bundle, path) => `${baseUrl(bundle.authData)}${path}`;

module.exports = { baseUrl, apiUrl };
