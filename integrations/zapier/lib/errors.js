// fluxgate's problem+json answers ({code, detail, errors: [{field, message}]}) as the Zapier
// errors a Zap's owner reads: a refused key as an auth error, every other refusal with its code,
// its detail and each bad field.
'use strict';

const problemOf = (response) => {
  try {
    const body = JSON.parse(response.content);
    return body && typeof body === 'object' ? body : {};
  } catch (_) {
    return {};
  }
};

/** The message a user sees for a problem document. */
const describe = (problem, status) => {
  const code = problem.code || `http_${status}`;
  const fields = Array.isArray(problem.errors) ? problem.errors : [];
  if (fields.length > 0) {
    const each = fields.map((e) => `${e.field}: ${e.message}`).join('; ');
    return `fluxgate refused the input (${code}): ${each}`;
  }
  const detail = problem.detail || `HTTP ${status}`;
  return `fluxgate refused the request (${code}): ${detail}`;
};

/** Throws the Zapier error for a 4xx/5xx answer; returns quietly for any other. */
const raiseProblem = (z, response) => {
  const status = response.status;
  if (status < 400) return;
  const problem = problemOf(response);
  const code = problem.code || `http_${status}`;
  if (status === 401) {
    throw new z.errors.ExpiredAuthError(
      `fluxgate did not accept this API key (${code}): ${problem.detail || 'unauthorized'}. ` +
        'Reconnect with a valid key (fluxgate keys create).',
    );
  }
  if (status === 403 && code === 'insufficient_scope') {
    throw new z.errors.Error(
      `This API key lacks the scope ${problem.scope}. Reconnect with a key made with ` +
        '--scopes generations:write,generations:read,subscriptions:manage.',
      code,
      status,
    );
  }
  if (status >= 500) {
    throw new z.errors.Error(
      `fluxgate could not answer (${code}): ${problem.detail || `HTTP ${status}`}; try again later.`,
      code,
      status,
    );
  }
  throw new z.errors.Error(describe(problem, status), code, status);
};

module.exports = { raiseProblem, describe };
