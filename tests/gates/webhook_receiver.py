"""The receiving side of webhooks, for the tests: a real HTTP receiver on 127.0.0.1 and
the verifier of the deprecated `X-FC-*` headers, written from docs/api.md only."""

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from gates.models import Gate
from gates.webhook_endpoints import webhook_endpoint_create
from runs.services import run_create


def receiver_verify(secret: str, headers: dict, body: bytes, *, now: float | None = None,
                    tolerance: int = 300) -> bool:
    """How a receiver verifies a delivery, written from docs/api.md only."""
    timestamp = headers.get("X-FC-Timestamp", "")
    if not timestamp.isdigit():
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance:
        return False
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest("v1=" + mac.hexdigest(), headers.get("X-FC-Signature", ""))


class Receiver:
    """An HTTP server thread on an ephemeral port that records requests and answers with
    the next scripted status (the last one repeats)."""

    def __init__(self, statuses=(200,), delay: float = 0.0):
        self.statuses, self.delay, self.requests = list(statuses), delay, []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append((self.path, dict(self.headers.items()), body))
                time.sleep(receiver.delay)
                status = (receiver.statuses.pop(0) if len(receiver.statuses) > 1
                          else receiver.statuses[0])
                self.send_response(status)
                if status in (301, 302):
                    self.send_header("Location", "http://example.com/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/fc"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def bodies(self) -> list[dict]:
        return [json.loads(body) for _, _, body in self.requests]


def endpoint_for(tenant, receiver, events=None):
    return webhook_endpoint_create(tenant=tenant, name="ops", url=receiver.url, events=events,
                                   actor="user:admin")


def open_gate(tenant, advance, actor="user:olivia") -> Gate:
    with advance():
        run, _ = run_create(tenant=tenant, workflow="vendor_payment", actor=actor,
                            input={"amount": 1200, "vendor": "v-1"})
    return Gate.objects.get(run=run)
