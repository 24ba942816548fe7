// The "Image generated" trigger: fluxgate's generation.completed events, by REST Hook.
'use strict';

const { restHookTrigger } = require('./rest_hook');
const { completedSample } = require('../lib/generation');

module.exports = restHookTrigger({
  key: 'generation_completed',
  noun: 'Image',
  label: 'Image Generated',
  description:
    'Triggers when a generation or an edit completes, with its image URLs, prompt, seed and cost.',
  eventType: 'generation.completed',
  status: 'completed',
  sample: completedSample,
});
