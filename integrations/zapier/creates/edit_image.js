// The "Edit image" action: POST /v1/edits, the same fields as "Generate image" plus 1–4 source
// images.
'use strict';

const { PRICE, inputFields } = require('./image_fields');
const { performAt } = require('./image_request');
const { acceptedSample, outputFields } = require('../lib/generation');

const EDIT_PRICE = `${PRICE} An edit adds 1 MP per source image: a 1024×1024 edit of one image costs $0.016.`;

module.exports = {
  key: 'edit_image',
  noun: 'Image',
  display: {
    label: 'Edit Image',
    description:
      'Edits one to four images as a prompt says (FLUX.2 edit). The step returns at once with ' +
      'the edit accepted; its image arrives through the "Image Generated" trigger (or turn on ' +
      `"Wait for the result"). ${EDIT_PRICE}`,
  },
  operation: {
    inputFields: [
      {
        key: 'image_urls',
        label: 'Source images',
        list: true,
        required: true,
        helpText: '1–4 image URLs (https, or `data:image/…;base64,` URIs) to edit.',
      },
      ...inputFields({ price: EDIT_PRICE }),
    ],
    perform: performAt('/v1/edits'),
    sample: {
      ...acceptedSample,
      model: 'fal-ai/flux-2/turbo/edit',
      estimated_cost_micros: 16000,
      estimated_cost_usd: 0.016,
      input: { ...acceptedSample.input, image_urls: ['https://images.example.com/source.png'] },
    },
    outputFields,
  },
};
