#!/usr/bin/env python3
"""A fluxgate webhook receiver in Python that verifies every delivery with the official
Standard Webhooks library, then handles it once.

    pip install -r requirements.txt
    WEBHOOK_SECRET=whsec_… PORT=8000 python3 receiver.py

Point a subscription at http://<host>:8000/fluxgate. The library checks the signature over the
raw body and refuses a timestamp more than five minutes from this machine's clock, so a
captured delivery cannot be replayed later. During a secret rotation fluxgate signs with the
old and the new secret, so a receiver holding either keeps verifying until it switches.

Each delivery is answered at once: 204 when verified, 400 when not. fluxgate retries anything
else, and may deliver an event more than once, so `webhook-id` is the key to handle it once.
One JSON line per request goes to stdout: {"verified": true, "id", "type"} or
{"verified": false, "error"}.
"""
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

webhook = Webhook(os.environ["WEBHOOK_SECRET"])
seen = set()  # webhook-ids handled; a real receiver keeps these in its database


def handle(event):
    """Your code: the event is genuine and new."""
    if event["type"] == "generation.completed":
        urls = [image["url"] for image in event["data"].get("images") or []]
        print(json.dumps({"images": urls}), file=sys.stderr)


class Receiver(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            event = webhook.verify(body, dict(self.headers.items()))
        except (WebhookVerificationError, ValueError) as error:
            self.answer(400, {"verified": False, "error": str(error) or type(error).__name__})
            return
        message_id = self.headers["webhook-id"]
        if message_id not in seen:
            seen.add(message_id)
            handle(event)
        self.answer(204, {"verified": True, "id": message_id, "type": event["type"]})

    def answer(self, status, outcome):
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()
        print(json.dumps(outcome), flush=True)


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8000"))), Receiver)
    print(json.dumps({"listening": server.server_address[1]}), flush=True)
    server.serve_forever()
