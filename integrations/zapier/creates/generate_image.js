// The "Generate image" action: POST /v1/generations, answered at once with the accepted
// generation (or, when asked, after a short wait for its image).
'use strict';

const { PRICE, inputFields } = require('./image_fields');
const { performAt } = require('./image_request');
const { acceptedSample, outputFields } = require('../lib/generation');

module.exports = {
  key: 'generate_image',
  noun: 'Image',
  display: {
    label: 'Generate Image',
    description:
      'Asks FLUX.2 for an image from a prompt. The step returns at once with the generation ' +
      'accepted; its image arrives through the "Image Generated" trigger (or turn on ' +
      `"Wait for the result"). ${PRICE}`,
  },
  operation: {
    inputFields: inputFields({ price: PRICE }),
    perform: performAt('/v1/generations'),
    sample: acceptedSample,
    outputFields,
  },
};
