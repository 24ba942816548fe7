// What "Generate image" and "Edit image" do alike: the request body built from a Zap's input,
// and the optional short wait for the result.
'use strict';

const { apiUrl } = require('../lib/api');
const { TERMINAL, shape } = require('../lib/generation');

/** How long "Wait for the result" polls: well inside Zapier's 30 s for an action. */
const WAIT = { deadlineMs: 20000, intervalMs: 500 };

const blank = (value) => value === undefined || value === null || value === '';

/** A Zap's text "4" as 4; anything else as it was, for fluxgate to name if it is wrong. */
const number = (value) =>
  typeof value === 'string' && value.trim() !== '' && !Number.isNaN(Number(value))
    ? Number(value)
    : value;

/** A Zap's "true"/"yes"/"false"/"no" as a boolean; anything else as it was. */
const boolean = (value) => {
  const text = String(value).trim().toLowerCase();
  if (['true', 'yes', '1'].includes(text)) return true;
  if (['false', 'no', '0'].includes(text)) return false;
  return value;
};

/** The body of POST /v1/generations (or /v1/edits) from a Zap's input. */
const requestBody = (inputData) => {
  const body = { prompt: inputData.prompt };
  const put = (key, value, convert = (v) => v) => {
    if (!blank(value)) body[key] = convert(value);
  };
  const custom = ['width', 'height'].filter((side) => !blank(inputData[side]));
  if (custom.length > 0) {
    body.image_size = {};
    for (const side of custom) body.image_size[side] = number(inputData[side]);
  } else {
    put('image_size', inputData.image_size);
  }
  for (const key of ['num_images', 'guidance_scale', 'seed']) put(key, inputData[key], number);
  for (const key of ['enable_safety_checker', 'enable_prompt_expansion']) {
    put(key, inputData[key], boolean);
  }
  for (const key of ['output_format', 'model', 'end_user', 'priority', 'seed_from']) {
    put(key, inputData[key]);
  }
  if (!blank(inputData.image_urls)) {
    const urls = Array.isArray(inputData.image_urls) ? inputData.image_urls : [inputData.image_urls];
    body.image_urls = urls.filter((url) => !blank(url));
  }
  if (inputData.metadata && Object.keys(inputData.metadata).length > 0) {
    body.metadata = inputData.metadata;
  }
  return body;
};

/** Polls the generation until it is finished or the wait is over; a failure fails the step. */
const waitForResult = async (z, bundle, generation) => {
  const until = Date.now() + WAIT.deadlineMs;
  let current = generation;
  while (!TERMINAL.includes(current.status) && Date.now() < until) {
    await new Promise((resolve) =>
      setTimeout(resolve, Math.max(0, Math.min(WAIT.intervalMs, until - Date.now()))),
    );
    const id = encodeURIComponent(current.id);
    current = (await z.request({ url: apiUrl(bundle, `/v1/generations/${id}`) })).data;
  }
  if (current.status === 'failed' || current.status === 'cancelled') {
    const error = current.error || {};
    throw new z.errors.Error(
      `The generation ${current.id} ${current.status} (${error.code}): ${error.message}`,
      error.code || current.status,
    );
  }
  return current;
};

/** The perform of an action that POSTs to `path`. */
const performAt = (path) => async (z, bundle) => {
  const response = await z.request({
    url: apiUrl(bundle, path),
    method: 'POST',
    body: requestBody(bundle.inputData),
  });
  const generation = response.data;
  const wait = boolean(bundle.inputData.wait_for_result) === true;
  return shape(wait ? await waitForResult(z, bundle, generation) : generation);
};

module.exports = { WAIT, requestBody, performAt };
