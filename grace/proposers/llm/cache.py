"""Reply cache and replay for LLM calls, keyed by the request itself.

A request's key is the sha256 of (model, messages, sampling parameters including `seed` and
`n`). Before calling a server a proposer looks the key up (first in the run's own archive, then
in any extra read-only sources, e.g. the archive of the run being replayed) and reuses the reply;
the reuse is recorded as a row with `cached=1`. Proposals carry distinct seeds per
(round, generation, slot), so distinct slots never collide, and the same seed is passed to the
server so a re-run asks the same question.

`ReplayOnly` never calls a server: a missing key raises `ReplayMissing` with the operator and
key, which proves a run can be replayed exactly with the server stopped.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from grace.proposers.base import CallRecorder


class ReplayMissing(RuntimeError):
    """Replay-only mode met a request that the cache does not hold."""


def request_key(model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of (model, messages, sampling params incl. seed and n)."""
    blob = json.dumps({"model": model, "messages": messages, "params": params}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class ReplyCache:
    """Looks replies up by key in the recorder (the run archive) and extra read-only sources."""

    replay_only = False

    def __init__(self, recorder: CallRecorder | None = None, sources: list[CallRecorder] | None = None) -> None:
        self.recorder = recorder
        self.sources: list[CallRecorder] = list(sources or [])
        self.hits = 0
        self.misses = 0

    def lookup(self, key: str) -> dict[str, Any] | None:
        """The first stored successful reply for `key` (a dict with at least `reply`), or None."""
        for src in ([self.recorder] if self.recorder is not None else []) + self.sources:
            row = src.get_reply(key)
            if row is not None and row.get("reply"):
                self.hits += 1
                return row
        self.misses += 1
        return None

    def missing(self, key: str, operator: str) -> None:
        """Called on a miss before a server is contacted; replay-only caches raise here."""


class ReplayOnly(ReplyCache):
    """A cache that refuses to reach any server: every request must already be stored."""

    replay_only = True

    def missing(self, key: str, operator: str) -> None:
        raise ReplayMissing(
            f"replay: no cached reply for this {operator} request (key {key[:16]}...); the run being "
            "replayed never made it (different prompts, model, seeds or sampling settings?)")


def cache_paths(cache_from: str | list[str]) -> list[str]:
    """The run directories / archives named by `llm.cache_from` (a string may hold several,
    separated by ";")."""
    paths = cache_from.split(";") if isinstance(cache_from, str) else list(cache_from)
    return [p.strip() for p in paths if p.strip()]


def make_cache(recorder: CallRecorder | None, sources: list[CallRecorder] | None = None,
               replay_only: bool = False) -> ReplyCache:
    """A cache over the run archive plus read-only reply `sources` (other runs' archives, opened
    by the caller: proposers never open the engine's archive themselves)."""
    cls = ReplayOnly if replay_only else ReplyCache
    return cls(recorder, list(sources or []))
