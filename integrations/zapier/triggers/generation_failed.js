// The "Generation failed" trigger: fluxgate's generation.failed events, by REST Hook.
'use strict';

const { restHookTrigger } = require('./rest_hook');
const { failedSample } = require('../lib/generation');

module.exports = restHookTrigger({
  key: 'generation_failed',
  noun: 'Generation',
  label: 'Generation Failed',
  description:
    'Triggers when a generation or an edit fails (a refused prompt, an error at fal), with the error code and message.',
  eventType: 'generation.failed',
  status: 'failed',
  sample: failedSample,
});
