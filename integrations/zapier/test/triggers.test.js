// The REST Hook triggers against a live fluxgate, with a stand-in for the Zap's hook URL: a
// subscription made by subscribing, real signed deliveries shaped as the listing shapes them,
// a real failure, unsubscribing, and a Zap turned off on Zapier's side.
'use strict';

const assert = require('node:assert/strict');
const { App, appTester, api, bundle, liveTest, until } = require('./support/fluxgate');
const { startHookServer } = require('./support/hook_server');
const { verify } = require('./support/standard_webhooks');

const completed = App.triggers.generation_completed.operation;
const failed = App.triggers.generation_failed.operation;
const generate = App.creates.generate_image.operation.perform;

/** Subscribes `trigger` to a fresh hook server; both are gone when the test ends. */
const subscribed = async (t, trigger, options) => {
  const hook = await startHookServer(options);
  const subscription = await appTester(trigger.performSubscribe, bundle({}, { targetUrl: hook.url }));
  t.after(async () => {
    try {
      await appTester(trigger.performUnsubscribe, bundle({}, { subscribeData: subscription }));
    } finally {
      await hook.close();
    }
  });
  return { hook, subscription };
};

const deliveryOf = (id) => (delivery) => delivery.json.data && delivery.json.data.id === id;

liveTest('an image generated reaches the Zap signed, and the trigger shapes it exactly as its list does', async (t) => {
  const { hook, subscription } = await subscribed(t, completed);
  assert.equal(subscription.status, 'active');
  assert.equal(subscription.target_url, hook.url);
  assert.deepEqual(subscription.event_types, ['generation.completed']);
  assert.match(subscription.secret, /^whsec_/);

  const prompt = 'a lighthouse at dawn, film photo';
  const accepted = await appTester(generate, bundle({
    prompt, seed: 42, image_size: 'square_hd', output_format: 'webp', metadata: { zap: 'triggers' },
  }));
  const delivery = await hook.waitFor(deliveryOf(accepted.id));
  assert.equal(delivery.json.type, 'generation.completed');
  assert.equal(delivery.headers['webhook-id'], delivery.json.id);
  assert.ok(verify(subscription.secret, delivery.headers, delivery.body), 'signed with the subscription secret');
  const altered = delivery.body.replace('lighthouse', 'lighthousE');
  assert.ok(!verify(subscription.secret, delivery.headers, altered), 'a changed body does not verify');

  const items = await appTester(completed.perform, bundle({}, { cleanedRequest: delivery.json }));
  assert.equal(items.length, 1);
  const [image] = items;
  assert.equal(image.id, accepted.id);
  assert.equal(image.status, 'completed');
  assert.equal(image.input.prompt, prompt);
  assert.equal(image.seed, 42);
  assert.deepEqual(image.metadata, { zap: 'triggers' });
  assert.match(image.image_url, /^https?:\/\//);
  assert.equal(image.image_url, image.images[0].url);
  assert.equal(image.images[0].width, 1024);
  assert.equal(image.images[0].content_type, 'image/webp');
  assert.equal(image.cost_usd, 0.008);

  const listed = await appTester(completed.performList, bundle());
  assert.ok(listed.every((item) => item.status === 'completed'));
  assert.deepEqual(listed.find((item) => item.id === accepted.id), image);
  assert.deepEqual(Object.keys(completed.sample).sort(), Object.keys(image).sort(), 'the sample has the same fields');
});

liveTest('a failed generation reaches the "Generation failed" trigger with its error', async (t) => {
  const { hook, subscription } = await subscribed(t, failed);
  assert.deepEqual(subscription.event_types, ['generation.failed']);

  const accepted = await appTester(generate, bundle({ prompt: 'a kite in a storm [sim:fail]' }));
  const delivery = await hook.waitFor(deliveryOf(accepted.id));
  assert.ok(verify(subscription.secret, delivery.headers, delivery.body));

  const [failure] = await appTester(failed.perform, bundle({}, { cleanedRequest: delivery.json }));
  assert.equal(failure.id, accepted.id);
  assert.equal(failure.status, 'failed');
  assert.equal(failure.error.code, 'fal_error');
  assert.equal(typeof failure.error.message, 'string');
  assert.equal(failure.image_url, null);

  const listed = await appTester(failed.performList, bundle());
  assert.deepEqual(listed.find((item) => item.id === accepted.id), failure);
  const asImage = await appTester(completed.perform, bundle({}, { cleanedRequest: delivery.json }));
  assert.deepEqual(asImage, [], '"Image generated" ignores a failure');
});

liveTest('the triggers filter by end user and metadata, in the subscription and in the list alike', async (t) => {
  const hook = await startHookServer();
  const options = { end_user: 'zap-filtered', metadata: { shop: 'north' } };
  const subscription = await appTester(completed.performSubscribe, bundle(options, { targetUrl: hook.url }));
  t.after(async () => {
    try {
      await appTester(completed.performUnsubscribe, bundle(options, { subscribeData: subscription }));
    } finally {
      await hook.close();
    }
  });
  assert.deepEqual(subscription.filter, { end_user: 'zap-filtered', metadata: { shop: 'north' } });

  const other = await appTester(generate, bundle({ prompt: 'a south shop', end_user: 'zap-filtered', metadata: { shop: 'south' } }));
  const wanted = await appTester(generate, bundle({ prompt: 'a north shop', end_user: 'zap-filtered', metadata: { shop: 'north' } }));
  // Generations are announced in the order they finish, not made: wait for both to finish.
  for (const id of [other.id, wanted.id]) {
    await until(`${id} finished`, async () => (await api(`/v1/generations/${id}`)).body.status === 'completed');
  }
  await hook.waitFor(deliveryOf(wanted.id));
  const listed = await appTester(completed.performList, bundle(options));
  assert.deepEqual(listed.map((item) => item.id), [wanted.id]);
  assert.ok(!hook.received.some(deliveryOf(other.id)), 'the other shop was not delivered');
});

liveTest('unsubscribing deletes the subscription', async (t) => {
  const hook = await startHookServer();
  t.after(() => hook.close());
  const subscription = await appTester(completed.performSubscribe, bundle({}, { targetUrl: hook.url }));
  assert.equal((await api(`/v1/subscriptions/${subscription.id}`)).status, 200);

  await appTester(completed.performUnsubscribe, bundle({}, { subscribeData: subscription }));
  assert.equal((await api(`/v1/subscriptions/${subscription.id}`)).status, 404);
});

liveTest('a Zap turned off on Zapier\'s side (410 Gone) has its subscription disabled', async (t) => {
  const { hook, subscription } = await subscribed(t, completed, { status: 410 });

  const accepted = await appTester(generate, bundle({ prompt: 'a lantern nobody waits for' }));
  await hook.waitFor(deliveryOf(accepted.id));
  const disabled = await until('the subscription is disabled', async () => {
    const { body } = await api(`/v1/subscriptions/${subscription.id}`);
    return body.status === 'disabled' && body;
  });
  assert.match(disabled.disabled_reason, /410/);
});
