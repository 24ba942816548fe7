// The "Find generation" search: one generation by id, or the newest matching an end user and a
// status.
'use strict';

const { apiUrl } = require('../lib/api');
const { raiseProblem } = require('../lib/errors');
const { shape, outputFields, completedSample } = require('../lib/generation');

const STATUSES = {
  accepted: 'Accepted (stored, not yet at fal)',
  queued: 'Queued at fal',
  completed: 'Completed',
  failed: 'Failed',
  cancelled: 'Cancelled',
};

const byId = async (z, bundle, id) => {
  const response = await z.request({
    url: apiUrl(bundle, `/v1/generations/${encodeURIComponent(id)}`),
    skipThrowForStatus: true,
  });
  if (response.status === 404) return [];
  raiseProblem(z, response);
  return [shape(response.data)];
};

const perform = async (z, bundle) => {
  const { id, end_user: endUser, status } = bundle.inputData;
  if (id && String(id).trim()) return byId(z, bundle, String(id).trim());
  const params = { limit: 10 };
  if (endUser) params.end_user = endUser;
  if (status) params.status = status;
  const response = await z.request({ url: apiUrl(bundle, '/v1/generations'), params });
  return response.data.data.map(shape);
};

module.exports = {
  key: 'find_generation',
  noun: 'Generation',
  display: {
    label: 'Find Generation',
    description:
      'Finds a generation by its id, or the newest one made for an end user and/or in a status.',
  },
  operation: {
    inputFields: [
      {
        key: 'id',
        label: 'Generation ID',
        required: false,
        helpText: 'The `gen_…` id. Leave it empty to search by end user and status instead.',
      },
      { key: 'end_user', label: 'End user', required: false },
      { key: 'status', label: 'Status', choices: STATUSES, required: false },
    ],
    perform,
    sample: completedSample,
    outputFields,
  },
};
