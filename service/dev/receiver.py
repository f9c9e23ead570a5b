"""A webhook endpoint on loopback for the tests: it keeps what each POST brought and answers a status.

It knows nothing of offload (a receiver is someone else's code): the tests check signatures and
trace headers on what it kept. Stopped when its `with` block ends, however it ends.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Post:
    headers: dict[str, str]  # names lower-cased, as HTTP treats them
    body: bytes


class Receiver:
    """What the endpoint was sent, in order, and the status it answers with (`answer`)."""

    def __init__(self) -> None:
        self.url = ""
        self.answer = 204
        self._posts: list[Post] = []
        self._arrived = threading.Condition()

    @property
    def posts(self) -> list[Post]:
        with self._arrived:
            return list(self._posts)

    def wait(self, count: int = 1, timeout: float = 20.0) -> list[Post]:
        """The posts once at least `count` came (or `timeout` seconds passed: whatever came)."""
        with self._arrived:
            self._arrived.wait_for(lambda: len(self._posts) >= count, timeout)
            return list(self._posts)

    def _record(self, post: Post) -> None:
        with self._arrived:
            self._posts.append(post)
            self._arrived.notify_all()


@contextlib.contextmanager
def webhook_receiver(path: str = "/hook") -> Iterator[Receiver]:
    """A receiver serving on a free loopback port until the block ends."""
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            receiver._record(Post({name.lower(): value for name, value in self.headers.items()}, body))
            self.send_response(receiver.answer)
            self.end_headers()

        def log_message(self, *args: Any) -> None:  # the test's output, not the server's
            pass

    server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    receiver.url = f"http://{LOOPBACK}:{server.server_address[1]}{path}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
