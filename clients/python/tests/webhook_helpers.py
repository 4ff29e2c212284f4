"""Real HTTP receivers on 127.0.0.1 for the webhook tests, and subscribing them.

- :class:`RecordingReceiver`: a stdlib ``ThreadingHTTPServer`` that records every
  delivery (headers as sent, raw body) and answers what the test decides; tests wait on
  it with a bounded :meth:`RecordingReceiver.wait_for` (a condition variable, no sleeps).
- :func:`serve_asgi`: uvicorn in a thread, on a socket bound before it starts.
- :func:`subscription`: ``gateway webhooks add`` (optionally ``--events``,
  ``--secret-file``), removed again with ``gateway webhooks remove``.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import uvicorn

from tests.stack import START_TIMEOUT, Gateway

#: How long a test waits for a delivery (the test gateways deliver every second).
DELIVERY_TIMEOUT = 30.0


@dataclass(frozen=True)
class Delivery:
    """One request the gateway made, as received."""

    headers: dict[str, str]
    body: bytes
    answered: int

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


class RecordingReceiver:
    """Records every POST; answers ``answer(headers, body)`` (default 204)."""

    def __init__(self, answer: Callable[[dict[str, str], bytes], int] | None = None) -> None:
        self.answer = answer or (lambda _headers, _body: 204)
        self.deliveries: list[Delivery] = []
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                # Names lower-cased as HTTP/1.1 allows; values exactly as sent.
                headers = {name.lower(): value for name, value in self.headers.items()}
                status = receiver.answer(headers, body)
                # Recorded before answering: once the gateway knows the outcome, so does the test.
                with receiver._changed:
                    receiver.deliveries.append(Delivery(headers=headers, body=body, answered=status))
                    receiver._changed.notify_all()
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/hooks/gateway"

    def __enter__(self) -> RecordingReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def wait_for(
        self, predicate: Callable[[list[Delivery]], bool], timeout: float = DELIVERY_TIMEOUT, what: str = "deliveries"
    ) -> list[Delivery]:
        """Block until ``predicate(deliveries so far)`` holds (bounded); return them."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(list(self.deliveries)), timeout=timeout):
                raise AssertionError(f"no {what} within {timeout:g}s; got {self.deliveries!r}")
            return list(self.deliveries)


@contextmanager
def serve_asgi(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a thread; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@dataclass(frozen=True)
class Subscription:
    id: str
    secret: str


@contextmanager
def subscription(
    gateway: Gateway,
    url: str,
    *,
    events: Sequence[str] | None = None,
    secret: str | None = None,
) -> Iterator[Subscription]:
    """Subscribe ``url`` with the gateway's CLI; remove the subscription afterwards.

    Without ``secret`` the gateway generates one and prints it (once) on the line after
    the id; with it, the secret goes in through ``--secret-file``."""
    args = ["webhooks", "add", url]
    if events is not None:
        args += ["--events", ",".join(events)]
    if secret is not None:
        secret_file = Path(gateway.data_dir) / f"webhook-secret-{uuid.uuid4().hex}"
        secret_file.write_text(secret + "\n")
        secret_file.chmod(0o600)
        args += ["--secret-file", str(secret_file)]
    lines = gateway.cli(*args).splitlines()
    if secret is None:
        assert len(lines) == 2, f"expected the id and the secret, got {len(lines)} lines"
        webhook_id, printed = lines
        assert printed.startswith("whsec_"), "the second line is not a whsec_ secret"
        secret = printed
    else:
        assert len(lines) == 1, f"expected only the id (the secret was given), got {len(lines)} lines"
        webhook_id = lines[0]
        assert secret not in lines[0]
    uuid.UUID(webhook_id)  # an id, nothing else
    try:
        yield Subscription(id=webhook_id, secret=secret)
    finally:
        gateway.cli("webhooks", "remove", webhook_id)
