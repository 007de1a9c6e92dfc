"""Serve the real API over real HTTP on a free port, in a thread, for tests."""

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from aggregates.application import Orders
from processor.dev.broker import free_port
from projections.api import create_app
from projections.staff import Staff


@contextmanager
def serving(app: Orders, staff: Staff, **options: Any) -> Iterator[str]:
    """`options` go to `create_app` (e.g. `orders`, `clock`)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(app, staff, refresh_s=0.2, **options), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the API did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def call(url: str, method: str = "GET", body: Any = None, token: str | None = None,
         content_type: str = "application/json", key: str | None = None) -> tuple[int, Any]:
    """`body` is sent as JSON; bytes are sent as they are (a malformed or missing body); `key`:
    the Idempotency-Key header."""
    headers = {"Content-Type": content_type}
    if key is not None:
        headers["Idempotency-Key"] = key
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")
