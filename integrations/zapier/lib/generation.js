// The one object every trigger, action and search of this app returns: fluxgate's generation
// object (the `data` of its events, and what GET /v1/generations answers), with `image_url`, its
// first image, added for mapping in later Zap steps. Its `id` is the generation id, which is
// what Zapier deduplicates on.
'use strict';

const TERMINAL = ['completed', 'failed', 'cancelled'];

const shape = (generation) => {
  const images = Array.isArray(generation.images) ? generation.images : [];
  const first = images[0];
  return { ...generation, image_url: first && first.url ? first.url : null };
};

/** The labels Zapier shows for the fields a Zap most often maps. */
const outputFields = [
  { key: 'id', label: 'Generation ID' },
  { key: 'status', label: 'Status' },
  { key: 'image_url', label: 'Image URL (the first image)' },
  { key: 'images[]url', label: 'Image URLs' },
  { key: 'images[]width', label: 'Image widths', type: 'integer' },
  { key: 'images[]height', label: 'Image heights', type: 'integer' },
  { key: 'input__prompt', label: 'Prompt' },
  { key: 'seed', label: 'Seed', type: 'integer' },
  { key: 'model', label: 'Model' },
  { key: 'end_user', label: 'End user' },
  { key: 'cost_usd', label: 'Cost (USD)', type: 'number' },
  { key: 'estimated_cost_usd', label: 'Estimated cost (USD)', type: 'number' },
  { key: 'error__code', label: 'Error code' },
  { key: 'error__message', label: 'Error message' },
  { key: 'created_at', label: 'Created at', type: 'datetime' },
  { key: 'completed_at', label: 'Completed at', type: 'datetime' },
];

const base = {
  batch_id: null,
  cached: false,
  created_at: '2026-12-03T10:15:02.114Z',
  submitted_at: '2026-12-03T10:15:02.131Z',
  end_user: 'customer-981',
  estimated_cost_micros: 8000,
  estimated_cost_usd: 0.008,
  id: 'gen_0193e2a4c5b87c01a4f1f3c2d9e8b7a6',
  input: {
    prompt: 'a lighthouse at dawn, film photo',
    image_size: { width: 1024, height: 1024 },
    guidance_scale: 2.5,
    num_images: 1,
    seed: 42,
    output_format: 'png',
    enable_safety_checker: true,
    enable_prompt_expansion: false,
    sync_mode: false,
  },
  links: {
    cancel: '/v1/generations/gen_0193e2a4c5b87c01a4f1f3c2d9e8b7a6/cancel',
    events: '/v1/generations/gen_0193e2a4c5b87c01a4f1f3c2d9e8b7a6/events',
    self: '/v1/generations/gen_0193e2a4c5b87c01a4f1f3c2d9e8b7a6',
  },
  metadata: { sku: 'MUG-7' },
  model: 'fal-ai/flux-2/turbo',
  object: 'generation',
  priority: 'normal',
  seed: 42,
  served_model: null,
  webhook_url: null,
  fal_request_id: '764cabcf-b745-4b3e-ae38-1200304cf45b',
};

const completedSample = shape({
  ...base,
  status: 'completed',
  completed_at: '2026-12-03T10:15:04.870Z',
  cost_micros: 8000,
  cost_usd: 0.008,
  error: null,
  has_nsfw_concepts: [false],
  images: [
    {
      url: 'https://gw.example.com/assets/gen_0193e2a4c5b87c01a4f1f3c2d9e8b7a6/0-3f2a9c.png',
      source_url: 'https://v3.fal.media/files/lighthouse.png',
      width: 1024,
      height: 1024,
      content_type: 'image/png',
    },
  ],
  timings: { inference: 1.21 },
});

const failedSample = shape({
  ...base,
  status: 'failed',
  completed_at: '2026-12-03T10:15:03.402Z',
  cost_micros: 0,
  cost_usd: 0,
  error: {
    code: 'content_policy_violation',
    message: 'fal refused the prompt under its content policy; rephrase it and try again',
  },
  has_nsfw_concepts: null,
  images: null,
  timings: null,
});

const acceptedSample = shape({
  ...base,
  status: 'accepted',
  submitted_at: null,
  completed_at: null,
  cost_micros: null,
  cost_usd: null,
  error: null,
  fal_request_id: null,
  has_nsfw_concepts: null,
  images: null,
  timings: null,
});

module.exports = { TERMINAL, shape, outputFields, completedSample, failedSample, acceptedSample };
