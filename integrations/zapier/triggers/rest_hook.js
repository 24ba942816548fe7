// A REST Hook trigger for one generation event type: subscribing makes a fluxgate subscription
// to the Zap's hook URL, unsubscribing deletes it, and a delivery (the event) and the listing
// that stands in for it while a Zap is built both come out as the same generation object.
'use strict';

const { isDeepStrictEqual } = require('util');
const { apiUrl } = require('../lib/api');
const { shape, outputFields } = require('../lib/generation');

const filterFields = [
  {
    key: 'end_user',
    label: 'End user',
    required: false,
    helpText: 'Only generations made for this end user (the `end_user` they were created with).',
  },
  {
    key: 'metadata',
    label: 'Metadata',
    dict: true,
    required: false,
    helpText:
      'Only generations whose metadata holds every one of these keys with exactly this value ' +
      '(text values, such as `sku` = `MUG-7`).',
  },
];

/** The subscription filter of the trigger's options, or undefined for every generation. */
const filterOf = (inputData) => {
  const filter = {};
  if (inputData.end_user) filter.end_user = inputData.end_user;
  const metadata = inputData.metadata;
  if (metadata && typeof metadata === 'object' && Object.keys(metadata).length > 0) {
    filter.metadata = metadata;
  }
  return Object.keys(filter).length > 0 ? filter : undefined;
};

/** The subscription's metadata filter, applied to a listed generation as fluxgate applies it. */
const matches = (filter, generation) => {
  const wanted = (filter && filter.metadata) || {};
  const held = generation.metadata || {};
  return Object.entries(wanted).every(([key, value]) => isDeepStrictEqual(held[key], value));
};

const restHookTrigger = ({ key, noun, label, description, eventType, status, sample }) => {
  const performSubscribe = async (z, bundle) => {
    const body = {
      target_url: bundle.targetUrl,
      event_types: [eventType],
      description: `Zapier: ${label}`,
    };
    const filter = filterOf(bundle.inputData || {});
    if (filter) body.filter = filter;
    const response = await z.request({
      url: apiUrl(bundle, '/v1/subscriptions'),
      method: 'POST',
      body,
    });
    return response.data;
  };

  const performUnsubscribe = async (z, bundle) => {
    const id = encodeURIComponent(bundle.subscribeData.id);
    await z.request({ url: apiUrl(bundle, `/v1/subscriptions/${id}`), method: 'DELETE' });
    return {};
  };

  /** A delivery's body is the event: `{id, type, timestamp, data: <the generation>}`. */
  const perform = (z, bundle) => {
    const event = bundle.cleanedRequest || {};
    if (event.type !== eventType || !event.data) return [];
    return [shape(event.data)];
  };

  const performList = async (z, bundle) => {
    const filter = filterOf(bundle.inputData || {});
    const params = { status, limit: filter && filter.metadata ? 100 : 25 };
    if (filter && filter.end_user) params.end_user = filter.end_user;
    const response = await z.request({ url: apiUrl(bundle, '/v1/generations'), params });
    return response.data.data
      .filter((generation) => matches(filter, generation))
      .slice(0, 25)
      .map(shape);
  };

  return {
    key,
    noun,
    display: { label, description },
    operation: {
      type: 'hook',
      inputFields: filterFields,
      performSubscribe,
      performUnsubscribe,
      perform,
      performList,
      sample,
      outputFields,
    },
  };
};

module.exports = { restHookTrigger };
