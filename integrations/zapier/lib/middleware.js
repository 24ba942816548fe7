// The HTTP middleware of every request the app makes: the API key on the way out, fluxgate's
// problem documents turned into Zapier errors on the way back.
'use strict';

const { raiseProblem } = require('./errors');

const addApiKey = (request, z, bundle) => {
  if (bundle.authData && bundle.authData.api_key) {
    request.headers = request.headers || {};
    request.headers.Authorization = `Bearer ${bundle.authData.api_key}`;
  }
  return request;
};

/** A request made with `skipThrowForStatus` handles its own statuses (a search's 404). */
const throwProblems = (response, z) => {
  if (!response.skipThrowForStatus) raiseProblem(z, response);
  return response;
};

module.exports = { beforeRequest: [addApiKey], afterResponse: [throwProblems] };
