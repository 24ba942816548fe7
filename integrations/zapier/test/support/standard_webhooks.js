// Standard Webhooks verification, as a Zap owner could do it with nothing but node:crypto:
// HMAC-SHA256 with the `whsec_` secret over `{webhook-id}.{webhook-timestamp}.{body}`, base64,
// against each `v1,` token of `webhook-signature`.
'use strict';

const crypto = require('node:crypto');

const TOLERANCE_SECS = 5 * 60;

/** Whether the delivery was signed with `secret` within the last five minutes. */
const verify = (secret, headers, body) => {
  const id = headers['webhook-id'];
  const timestamp = headers['webhook-timestamp'];
  const signatures = headers['webhook-signature'];
  if (!id || !timestamp || !signatures || !secret.startsWith('whsec_')) return false;
  if (Math.abs(Date.now() / 1000 - Number(timestamp)) > TOLERANCE_SECS) return false;
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  const expected = crypto
    .createHmac('sha256', key)
    .update(`${id}.${timestamp}.${body}`)
    .digest();
  return signatures.split(' ').some((token) => {
    const [version, signature] = token.split(',');
    if (version !== 'v1' || !signature) return false;
    const given = Buffer.from(signature, 'base64');
    return given.length === expected.length && crypto.timingSafeEqual(given, expected);
  });
};

module.exports = { verify };
