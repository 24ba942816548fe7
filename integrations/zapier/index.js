// The Zapier app definition of fluxgate: its connection, the REST Hook triggers, the actions
// and the search, with the middleware every request passes through.
'use strict';

const { authentication } = require('./lib/authentication');
const { beforeRequest, afterResponse } = require('./lib/middleware');
const generationCompleted = require('./triggers/generation_completed');
const generationFailed = require('./triggers/generation_failed');
const generateImage = require('./creates/generate_image');
const editImage = require('./creates/edit_image');
const findGeneration = require('./searches/find_generation');

module.exports = {
  version: require('./package.json').version,
  platformVersion: require('zapier-platform-core').version,
  authentication,
  beforeRequest,
  afterResponse,
  triggers: {
    [generationCompleted.key]: generationCompleted,
    [generationFailed.key]: generationFailed,
  },
  creates: {
    [generateImage.key]: generateImage,
    [editImage.key]: editImage,
  },
  searches: {
    [findGeneration.key]: findGeneration,
  },
};
