// The app definition, offline: it passes the same schema validation `zapier validate` runs
// locally, and it offers what the README says it does.
'use strict';

const assert = require('node:assert/strict');
const { test } = require('node:test');
const zapier = require('zapier-platform-core');
const App = require('../index');

test('the app definition passes Zapier\'s schema validation', async () => {
  const handler = zapier.createAppHandler(App);
  const answer = await handler({ command: 'validate', calledFromCli: true }, {});
  assert.deepEqual(answer.results, []);
});

test('the app has the two REST Hook triggers, the two actions and the search', () => {
  assert.deepEqual(Object.keys(App.triggers), ['generation_completed', 'generation_failed']);
  for (const trigger of Object.values(App.triggers)) assert.equal(trigger.operation.type, 'hook');
  assert.deepEqual(Object.keys(App.creates), ['generate_image', 'edit_image']);
  assert.deepEqual(Object.keys(App.searches), ['find_generation']);
});

test('"Generate image" offers every FLUX.2 Turbo field but sync_mode, and shows the price', () => {
  const generate = App.creates.generate_image;
  const keys = generate.operation.inputFields.map((field) => field.key);
  for (const key of ['prompt', 'image_size', 'width', 'height', 'num_images', 'guidance_scale', 'seed',
    'output_format', 'enable_safety_checker', 'enable_prompt_expansion', 'model', 'end_user',
    'metadata', 'priority', 'seed_from']) {
    assert.ok(keys.includes(key), key);
  }
  assert.ok(!keys.includes('sync_mode'));
  const sizes = generate.operation.inputFields.find((field) => field.key === 'image_size').choices;
  assert.deepEqual(Object.keys(sizes), ['square_hd', 'square', 'portrait_4_3', 'portrait_16_9', 'landscape_4_3', 'landscape_16_9']);
  assert.match(generate.display.description, /\$0\.008 per megapixel/);
  assert.match(App.creates.edit_image.display.description, /adds 1 MP per source image/);
});
