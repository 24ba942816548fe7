// The input fields "Generate image" and "Edit image" share: every FLUX.2 Turbo field but
// sync_mode (it needs an image store), fluxgate's own, and the price in their help text.
'use strict';

const PRICE =
  'Price: $0.008 per megapixel on Turbo ($0.005 Flash, $0.012 [dev]); each image rounds up to ' +
  'whole megapixels (1 MP = 1024×1024 px, at least 1), times the number of images, so any ' +
  'preset costs $0.008 an image on Turbo and 1920×1080 costs $0.016.';

const PRESETS = {
  square_hd: 'Square HD, 1024×1024',
  square: 'Square, 512×512',
  portrait_4_3: 'Portrait 3:4, 768×1024',
  portrait_16_9: 'Portrait 9:16, 576×1024',
  landscape_4_3: 'Landscape 4:3, 1024×768 (the default)',
  landscape_16_9: 'Landscape 16:9, 1024×576',
};

const MODELS = {
  'fal-ai/flux-2/turbo': 'FLUX.2 Turbo, $0.008/MP (the default)',
  'fal-ai/flux-2/flash': 'FLUX.2 Flash, $0.005/MP',
  'fal-ai/flux-2': 'FLUX.2 [dev], $0.012/MP',
};

const inputFields = ({ price }) => [
  {
    key: 'prompt',
    label: 'Prompt',
    type: 'text',
    required: true,
    helpText: 'What to draw, in words. The prompt can say a lot: style, light, composition.',
  },
  {
    key: 'image_size',
    label: 'Image size',
    choices: PRESETS,
    required: false,
    helpText: 'A preset size; leave it empty for 1024×768, or set a custom width and height below.',
  },
  {
    key: 'width',
    label: 'Custom width',
    type: 'integer',
    required: false,
    helpText: 'Pixels, 512–2048; with a custom height, used instead of the image size.',
  },
  {
    key: 'height',
    label: 'Custom height',
    type: 'integer',
    required: false,
    helpText: 'Pixels, 512–2048; with a custom width, used instead of the image size.',
  },
  {
    key: 'num_images',
    label: 'Number of images',
    type: 'integer',
    required: false,
    helpText: `1–4 (default 1). ${price}`,
  },
  {
    key: 'guidance_scale',
    label: 'Guidance scale',
    type: 'number',
    required: false,
    helpText: 'How closely to follow the prompt, 0–20 (default 2.5).',
  },
  {
    key: 'seed',
    label: 'Seed',
    type: 'integer',
    required: false,
    helpText: 'The same seed and input give the same image; an identical seeded request is answered from the cache at no cost.',
  },
  {
    key: 'output_format',
    label: 'Output format',
    choices: { jpeg: 'JPEG', png: 'PNG (the default)', webp: 'WebP' },
    required: false,
  },
  {
    key: 'enable_safety_checker',
    label: 'Safety checker',
    type: 'boolean',
    required: false,
    helpText: 'Flag and black out unsafe images (default yes).',
  },
  {
    key: 'enable_prompt_expansion',
    label: 'Expand the prompt',
    type: 'boolean',
    required: false,
    helpText: 'Let the model elaborate a short prompt (default no).',
  },
  {
    key: 'model',
    label: 'Model',
    choices: MODELS,
    required: false,
    helpText: 'Default FLUX.2 Turbo.',
  },
  {
    key: 'end_user',
    label: 'End user',
    required: false,
    helpText: 'Your own id for whom this is for (at most 255 bytes): per-user budgets, limits, usage and trigger filters.',
  },
  {
    key: 'metadata',
    label: 'Metadata',
    dict: true,
    required: false,
    helpText: 'Anything to carry along (at most 4 KiB): it comes back in the trigger, where it can also filter.',
  },
  {
    key: 'priority',
    label: 'Priority',
    choices: { normal: 'Normal (the default)', low: 'Low: waits behind all normal work' },
    required: false,
  },
  {
    key: 'seed_from',
    label: 'Seed from generation',
    required: false,
    helpText: 'A generation id (`gen_…`) whose seed to reuse, for variations in a consistent style. Leave the seed empty.',
  },
  {
    key: 'wait_for_result',
    label: 'Wait for the result',
    type: 'boolean',
    required: false,
    default: 'false',
    helpText:
      'Wait up to 20 seconds for the image, so this step returns its URL. A failed generation ' +
      'then fails the step. If it takes longer, the step returns it still running, and the ' +
      'image arrives through the "Image Generated" trigger.',
  },
];

module.exports = { PRICE, inputFields };
