// A fluxgate webhook receiver in Node that verifies every delivery with the official Standard
// Webhooks library (npm: standardwebhooks), then handles it once.
//
//   npm ci
//   WEBHOOK_SECRET=whsec_… PORT=8000 node receiver.mjs
//
// Point a subscription at http://<host>:8000/fluxgate. The library checks the signature over
// the raw body (so read the body as bytes: never re-serialise parsed JSON) and refuses a
// timestamp more than five minutes from this machine's clock, so a captured delivery cannot be
// replayed later. During a secret rotation fluxgate signs with the old and the new secret, so a
// receiver holding either keeps verifying until it switches.
//
// Each delivery is answered at once: 204 when verified, 400 when not. fluxgate retries anything
// else and may deliver an event more than once, so `webhook-id` is the key to handle it once.
// One JSON line per request goes to stdout: {"verified": true, "id", "type"} or
// {"verified": false, "error"}.
import http from 'node:http';
import { Webhook } from 'standardwebhooks';

// The library takes the secret's base64 part, without fluxgate's `whsec_` prefix.
const webhook = new Webhook(process.env.WEBHOOK_SECRET.replace(/^whsec_/, ''));
const seen = new Set(); // webhook-ids handled; a real receiver keeps these in its database

/** Your code: the event is genuine and new. */
function handle(event) {
  if (event.type === 'generation.completed') {
    console.error(JSON.stringify({ images: (event.data.images || []).map((i) => i.url) }));
  }
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString('utf8');
    let event;
    try {
      event = webhook.verify(body, req.headers);
    } catch (error) {
      return answer(res, 400, { verified: false, error: error.message || String(error) });
    }
    const id = req.headers['webhook-id'];
    if (!seen.has(id)) {
      seen.add(id);
      handle(event);
    }
    answer(res, 204, { verified: true, id, type: event.type });
  });
});

function answer(res, status, outcome) {
  res.writeHead(status, { 'Content-Length': '0' }).end();
  process.stdout.write(`${JSON.stringify(outcome)}\n`);
}

server.listen(Number(process.env.PORT || 8000), '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ listening: server.address().port })}\n`);
});
