// The actions and the search against a live fluxgate: what "Generate image" sends and answers,
// with and without waiting for the result, "Edit image" on a generated image, "Find generation",
// and validation errors as the Zap's owner reads them.
'use strict';

const assert = require('node:assert/strict');
const { App, appTester, bundle, liveTest, shown } = require('./support/fluxgate');
const { WAIT } = require('../creates/image_request');

const generate = App.creates.generate_image.operation.perform;
const edit = App.creates.edit_image.operation.perform;
const find = App.searches.find_generation.operation.perform;

liveTest('"Generate image" returns the accepted generation at once, with every field sent and its price', async () => {
  // As a Zap maps them from earlier steps: numbers and booleans arrive as text.
  const accepted = await appTester(generate, bundle({
    prompt: 'two ceramic mugs, studio light', image_size: 'landscape_16_9', num_images: '2',
    guidance_scale: '3.5', seed: '7', output_format: 'jpeg', enable_safety_checker: 'true',
    enable_prompt_expansion: 'false', model: 'fal-ai/flux-2/turbo', end_user: 'zap-user-1',
    priority: 'low', metadata: { sku: 'MUG-7' },
  }));
  assert.equal(accepted.status, 'accepted');
  assert.match(accepted.id, /^gen_/);
  assert.equal(accepted.image_url, null);
  assert.equal(accepted.estimated_cost_usd, 0.016, 'two images of one megapixel each');
  assert.deepEqual(accepted.input.image_size, { width: 1024, height: 576 });
  assert.equal(accepted.input.num_images, 2);
  assert.equal(accepted.input.guidance_scale, 3.5);
  assert.equal(accepted.input.seed, 7);
  assert.equal(accepted.input.output_format, 'jpeg');
  assert.equal(accepted.input.enable_safety_checker, true);
  assert.equal(accepted.input.enable_prompt_expansion, false);
  assert.equal(accepted.model, 'fal-ai/flux-2/turbo');
  assert.equal(accepted.end_user, 'zap-user-1');
  assert.equal(accepted.priority, 'low');
  assert.deepEqual(accepted.metadata, { sku: 'MUG-7' });
});

liveTest('"Generate image" with a custom size, told to wait, returns the finished image', async () => {
  const image = await appTester(generate, bundle({
    prompt: 'a harbour at night', width: 1920, height: 1080, wait_for_result: true,
  }));
  assert.equal(image.status, 'completed');
  assert.equal(image.estimated_cost_usd, 0.016, '1920×1080 rounds up to two megapixels');
  assert.equal(image.images[0].width, 1920);
  assert.match(image.image_url, /^https?:\/\//);
});

liveTest('waiting for a generation that fails fails the step with its error code', async () => {
  await assert.rejects(
    appTester(generate, bundle({ prompt: 'a storm [sim:fail]', wait_for_result: 'yes' })),
    (error) => {
      const { message, code } = shown(error);
      assert.equal(code, 'fal_error');
      assert.match(message, /The generation gen_\w+ failed \(fal_error\)/);
      return true;
    },
  );
});

liveTest('a generation that outlasts the wait is returned still running', async (t) => {
  const deadline = WAIT.deadlineMs;
  WAIT.deadlineMs = 300;
  t.after(() => { WAIT.deadlineMs = deadline; });
  const running = await appTester(generate, bundle({ prompt: 'a slow sunrise [sim:delay=3000]', wait_for_result: true }));
  assert.ok(['accepted', 'queued'].includes(running.status), running.status);
  assert.equal(running.image_url, null);
});

liveTest('"Edit image" edits a generated image, priced with its source', async () => {
  const source = await appTester(generate, bundle({ prompt: 'a white mug', image_size: 'square_hd', wait_for_result: true }));
  const edited = await appTester(edit, bundle({
    prompt: 'make the mug blue', image_urls: [source.image_url], image_size: 'square_hd', wait_for_result: true,
  }));
  assert.equal(edited.status, 'completed');
  assert.equal(edited.model, 'fal-ai/flux-2/turbo/edit');
  assert.deepEqual(edited.input.image_urls, [source.image_url]);
  assert.equal(edited.estimated_cost_usd, 0.016, 'one megapixel out, one in');
  assert.match(edited.image_url, /^https?:\/\//);
  assert.notEqual(edited.image_url, source.image_url);
});

liveTest('"Find generation" finds a generation by id, and by end user and status; an unknown id finds nothing', async () => {
  const made = await appTester(generate, bundle({ prompt: 'a red kite', end_user: 'zap-finder', wait_for_result: true }));

  const [byId] = await appTester(find, bundle({ id: made.id }));
  assert.deepEqual(byId, made);
  const byUser = await appTester(find, bundle({ end_user: 'zap-finder', status: 'completed' }));
  assert.deepEqual(byUser.map((g) => g.id), [made.id]);
  assert.deepEqual(await appTester(find, bundle({ end_user: 'zap-finder', status: 'failed' })), []);
  assert.deepEqual(await appTester(find, bundle({ id: 'gen_0000000000000000000000000000000f' })), []);
  assert.deepEqual(await appTester(find, bundle({ id: 'not-an-id' })), []);
});

liveTest('an empty prompt fails the step with an error naming the field', async () => {
  await assert.rejects(appTester(generate, bundle({ prompt: '' })), (error) => {
    const { message, code, status } = shown(error);
    assert.equal(code, 'validation_failed');
    assert.equal(status, 422);
    assert.equal(message, 'fluxgate refused the input (validation_failed): prompt: String should have at least 1 character');
    return true;
  });
});

liveTest('every bad field is named, each with what is wrong with it', async () => {
  await assert.rejects(
    appTester(edit, bundle({ prompt: 'x', image_urls: ['ftp://nope'], num_images: 9, width: 4000 })),
    (error) => {
      const { message } = shown(error);
      assert.match(message, /image_size\.width: Input should be less than or equal to 2048/);
      assert.match(message, /image_size\.height: Field required/);
      assert.match(message, /num_images: Input should be less than or equal to 4/);
      assert.match(message, /image_urls\[0\]: Input should be an http\(s\) URL/);
      return true;
    },
  );
});
