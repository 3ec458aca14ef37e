"""What an OpenAI-compatible server says about itself before the first request.

`probe_server(base_url, model, key)` asks (each with a short timeout, each optional):
llama.cpp's `GET /props` (total_slots, n_ctx), the model listing `GET /v1/models` (vLLM's
`max_model_len`, `owned_by`: "vllm", "llamacpp" or llama-cpp-python's "me"), and Ollama's
`GET /api/version`. The result: kind (llama.cpp | llama-cpp-python | vllm | ollama | unknown),
slots (requests it generates at once, when it says), context_length, grammar (whether it takes a
GBNF `grammar` field), local (the host is this machine or a private network).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import urllib.request
from typing import Any
from urllib.parse import urlsplit

GRAMMAR_KINDS = ("llama.cpp", "llama-cpp-python")
"""Servers that accept a GBNF `grammar` in a chat-completion request."""


def is_local(base_url: str) -> bool:
    """The server runs on this machine or a private network (a local server, not a hosted API)."""
    host = urlsplit(base_url).hostname or ""
    if host in ("localhost", "") or host.endswith(".local"):
        return True
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        try:
            addr = ipaddress.ip_address(socket.gethostbyname(host))
        except (OSError, ValueError):
            return False
    return addr.is_loopback or addr.is_private


def _root(base_url: str) -> str:
    url = base_url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def _get(url: str, headers: dict[str, str], timeout: float) -> Any:
    """The JSON at `url`, or None (a probe never fails a run: the server just did not say)."""
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - the configured server
            if resp.status != 200:
                return None
            return json.loads(resp.read(1_000_000) or b"null")
    except (OSError, ValueError):
        return None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and int(value) > 0 else None
    except (TypeError, ValueError):
        return None


async def probe_server(base_url: str, model: str, api_key: str, timeout: float = 5.0) -> dict[str, Any]:
    """The server's facts (see module docstring), in a worker thread."""
    return await asyncio.to_thread(probe_server_sync, base_url, model, api_key, timeout)


def probe_server_sync(base_url: str, model: str, api_key: str, timeout: float = 5.0) -> dict[str, Any]:
    """The server's facts; keys missing where it did not say."""
    facts: dict[str, Any] = {"kind": "unknown", "local": is_local(base_url)}
    headers = {"authorization": f"Bearer {api_key}"}
    props = _get(_root(base_url) + "/props", headers, timeout)
    if isinstance(props, dict) and ("total_slots" in props or "default_generation_settings" in props):
        facts["kind"] = "llama.cpp"
        facts["slots"] = _int(props.get("total_slots"))
        settings = props.get("default_generation_settings") or {}
        facts["context_length"] = _int(settings.get("n_ctx") or props.get("n_ctx"))
    listing = _get(base_url.rstrip("/") + "/models", headers, timeout)
    entries = listing.get("data") if isinstance(listing, dict) else None
    if isinstance(entries, list) and entries:
        entry = next((e for e in entries if isinstance(e, dict) and e.get("id") == model), entries[0])
        if isinstance(entry, dict):
            owner = str(entry.get("owned_by", ""))
            if entry.get("max_model_len") or owner == "vllm":
                facts["kind"] = "vllm"
                facts["context_length"] = _int(entry.get("max_model_len"))
            elif owner == "llamacpp" and facts["kind"] == "unknown":
                facts["kind"] = "llama.cpp"
            elif owner == "me":
                facts["kind"] = "llama-cpp-python"
    if facts["kind"] == "unknown" and facts["local"]:
        version = _get(_root(base_url) + "/api/version", headers, timeout)
        if isinstance(version, dict) and "version" in version:
            facts["kind"] = "ollama"
    facts["grammar"] = facts["kind"] in GRAMMAR_KINDS
    return {k: v for k, v in facts.items() if v is not None}


def default_concurrency(facts: dict[str, Any]) -> int:
    """Requests to send at once when llm.concurrency is 0: the server's slots when it says, 8 for
    vLLM (it batches), 1 for another local server (llama-cpp-python and Ollama's default generate
    one at a time: more would wait in its queue while their timeout runs), 4 for a remote API."""
    if facts.get("slots"):
        return int(facts["slots"])
    if facts.get("kind") == "vllm":
        return 8
    return 1 if facts.get("local", True) else 4
