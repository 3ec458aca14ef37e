"""A real local HTTP server speaking the OpenAI chat-completions API, with scripted replies.

Started by tests on 127.0.0.1 with an ephemeral port in a background thread (stdlib
ThreadingHTTPServer). Each POST /v1/chat/completions takes the next scripted `Reply` from the
queue, or, when the queue is empty, asks `handler(request_json)`. It records every request
(path, headers, JSON body). GET /v1/models lists one model.

Modes that imitate real local servers:
- `slots=k`: at most k requests are generated at once; the others wait in the server's queue
  (a client's timeout runs meanwhile), and a request the client abandoned still holds its slot
  until its generation ends (llama-cpp-python). `advertise=True` says so on GET /props (llama.cpp).
- `context=N`: a request whose prompt (chars // 4 tokens, as in `usage`) plus max_tokens exceeds N
  gets llama-cpp-python's 400 `context_length_exceeded` (advertised on /props when `advertise`).
- `ignore_n=True`: one choice whatever `n` asks (llama-cpp-python, Ollama).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

GOOD = '''"""CartPole: keep the pole upright."""

PARAMS = {"angle_limit": 0.2}

def reward(s, a, s_next, p):
    upright = 1.0 - xp.abs(s_next.pole_angle) / p["angle_limit"]
    return upright, {"upright": upright}
'''
BROKEN = "```python\ndef reward(s, a, s_next, p):\n    return xp.abs(s_next.pole_angle +\n```"
WRONG_SIGNATURE = "```python\ndef reward(s):\n    return xp.abs(s.pole_angle)\n```"
NO_CODE = "I think the pole angle matters most. Good luck!"


def fenced(source: str) -> str:
    """A reply with prose around a fenced program."""
    return f"Here is the program.\n\n```python\n{source}```\n\nIt rewards being upright."


def thinking(source: str) -> str:
    """A reasoning-model reply: <think> block (with a decoy fence) then the program."""
    return f"<think>Maybe ```python\ndef reward(x): pass\n``` no.</think>\n{fenced(source)}"


@dataclass
class Reply:
    """One scripted server action."""

    content: str | list[str] | None = None
    """Text of each choice (a str is repeated for each of the n choices)."""
    status: int = 200
    delay: float = 0.0
    """Seconds to sleep before answering (beyond the client's timeout => client timeout)."""
    headers: dict[str, str] = field(default_factory=dict)
    error: str = "scripted error"


def ok(content: str | list[str], delay: float = 0.0) -> Reply:
    return Reply(content=content, delay=delay)


def status(code: int, retry_after: float | None = None, error: str = "scripted error") -> Reply:
    headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
    return Reply(status=code, headers=headers, error=error)


class FakeOpenAI:
    """The server. `push(...)` scripts replies; `handler` answers when the queue is empty."""

    def __init__(self, handler: Callable[[dict[str, Any]], Reply] | None = None, reject_n: bool = False,
                 slots: int | None = None, context: int | None = None, ignore_n: bool = False,
                 advertise: bool = False) -> None:
        self.queue: deque[Reply] = deque()
        self.handler = handler or (lambda req: ok(fenced(GOOD)))
        self.reject_n = reject_n
        self.slots = threading.Semaphore(slots) if slots else None
        self.n_slots = slots
        self.context = context
        self.ignore_n = ignore_n
        self.advertise = advertise
        self.busy = 0
        self.max_busy = 0
        """Requests being generated at once (now, and the most seen)."""
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.httpd: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> FakeOpenAI:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                if self.path.rstrip("/") == "/props" and server.advertise:
                    self._send(200, {"total_slots": server.n_slots or 1,
                                     "default_generation_settings": {"n_ctx": server.context or 4096}})
                elif self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": "fake", "object": "model", "owned_by": "test"}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                with server.lock:
                    server.requests.append({"path": self.path, "headers": dict(self.headers), "json": body})
                    reply = server.queue.popleft() if server.queue else None
                if reply is None:
                    reply = server.handler(body)
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                n = int(body.get("n") or 1)
                if server.reject_n and n > 1:
                    self._send(400, {"error": {"message": "n > 1 is not supported", "type": "invalid_request_error",
                                               "param": "n", "code": None}})
                    return
                prompt_tokens = sum(len(m.get("content") or "") for m in body.get("messages", [])) // 4
                asked = prompt_tokens + int(body.get("max_tokens") or 0)
                if server.context and asked > server.context:
                    self._send(400, {"error": {
                        "message": f"This model's maximum context length is {server.context} tokens. However, you "
                                   f"requested {asked} tokens ({prompt_tokens} in the messages, "
                                   f"{body.get('max_tokens')} in the completion). Please reduce the length of the "
                                   "messages or completion.",
                        "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}})
                    return
                with server.slot():
                    if reply.delay:
                        time.sleep(reply.delay)
                if reply.status != 200:
                    self._send(reply.status, {"error": {"message": reply.error, "type": "server_error"}}, reply.headers)
                    return
                texts = reply.content if isinstance(reply.content, list) else [reply.content or ""] * n
                texts = texts[:1] if server.ignore_n else texts
                prompt_chars = sum(len(m.get("content") or "") for m in body.get("messages", []))
                self._send(200, {
                    "id": f"chatcmpl-{len(server.requests)}", "object": "chat.completion", "created": 0,
                    "model": body.get("model", "fake"),
                    "choices": [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                                for i, t in enumerate(texts)],
                    "usage": {"prompt_tokens": prompt_chars // 4, "completion_tokens": sum(len(t) for t in texts) // 4,
                              "total_tokens": prompt_chars // 4 + sum(len(t) for t in texts) // 4},
                })

            def _send(self, code: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(code)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one generation slot (waiting in the queue for it in `slots` mode)."""
        if self.slots is not None:
            self.slots.acquire()
        with self.lock:
            self.busy += 1
            self.max_busy = max(self.max_busy, self.busy)
        try:
            yield
        finally:
            with self.lock:
                self.busy -= 1
            if self.slots is not None:
                self.slots.release()

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    @property
    def port(self) -> int:
        assert self.httpd is not None
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        """base_url for the openai client."""
        return f"http://127.0.0.1:{self.port}/v1"

    def push(self, *replies: Reply) -> None:
        with self.lock:
            self.queue.extend(replies)

    @property
    def completions(self) -> list[dict[str, Any]]:
        """Bodies of the chat-completion requests received."""
        return [r["json"] for r in self.requests if r["path"].rstrip("/").endswith("/chat/completions")]


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A started FakeOpenAI, stopped after the test."""
    server = FakeOpenAI().start()
    try:
        yield server
    finally:
        server.stop()
