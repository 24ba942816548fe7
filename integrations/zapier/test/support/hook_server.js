// A stand-in for a Zap's hook URL: an HTTP server on 127.0.0.1 that keeps every delivery it
// gets, answers each with the status it is set to (200, or 410 for a Zap turned off), and lets
// a test wait for a delivery without sleeping.
'use strict';

const http = require('node:http');
const { EventEmitter } = require('node:events');

const startHookServer = async ({ status = 200 } = {}) => {
  const received = [];
  const arrivals = new EventEmitter();
  const hook = { status, received };
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      const delivery = { headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
      delivery.json = JSON.parse(delivery.body);
      received.push(delivery);
      // What Zapier's hooks answer: 200 while the Zap is on, 410 once it is off.
      res.writeHead(hook.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status: hook.status === 410 ? 'gone' : 'success' }));
      arrivals.emit('delivery', delivery);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  // A test that failed before closing it must not keep its file's process alive.
  server.unref();
  hook.url = `http://127.0.0.1:${server.address().port}/hooks/catch/1/zap/`;

  /** The first delivery `matches` accepts, as soon as it arrives, or an error at the deadline. */
  hook.waitFor = (matches, { deadlineMs = 15000 } = {}) => {
    const already = received.find(matches);
    if (already) return Promise.resolve(already);
    return new Promise((resolve, reject) => {
      const onDelivery = (delivery) => {
        if (!matches(delivery)) return;
        clearTimeout(timer);
        arrivals.off('delivery', onDelivery);
        resolve(delivery);
      };
      const timer = setTimeout(() => {
        arrivals.off('delivery', onDelivery);
        const seen = received.map((d) => `${d.json.type} ${d.json.data && d.json.data.id}`);
        reject(new Error(`no matching delivery within ${deadlineMs} ms; received: ${seen}`));
      }, deadlineMs);
      arrivals.on('delivery', onDelivery);
    });
  };

  /** Stops at once, open keep-alive connections from fluxgate's deliveries included. */
  hook.close = () =>
    new Promise((resolve) => {
      server.close(resolve);
      server.closeAllConnections();
    });
  return hook;
};

module.exports = { startHookServer };
