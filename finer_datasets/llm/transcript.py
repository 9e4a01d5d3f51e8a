"""The transcript store: every LLM/MLLM answer, content-addressed, durable and replayable.

A request is keyed by sha256 of its canonical JSON ``{"backend", "model", "messages",
"params"}``: the same prompt to the same model with the same parameters is never paid for twice,
and any change of prompt text (a new template version) gives a new key, so old answers never
answer new prompts. The working store is SQLite in WAL mode; every answer is committed as soon as
it arrives (``INSERT OR IGNORE``), so a crash loses nothing that was paid for and several writers
may share one file. A build exports the entries it used as canonical ``transcript.jsonl`` (sorted
by key) next to the dataset; :class:`TranscriptStore` reads either form, and ``replay=True`` turns
a missing answer into :class:`TranscriptMissError` instead of a model call.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable

from finer_datasets.core.source import iter_jsonl
from finer_datasets.errors import SourceError, TranscriptMissError

__all__ = ["request_key", "TranscriptStore"]


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def request_key(backend: str, model: str, messages: Any, params: dict[str, Any]) -> str:
    """sha256 (hex) of the canonical request."""
    payload = {"backend": backend, "model": model, "messages": messages, "params": params}
    return hashlib.sha256(_canonical(payload).encode("utf-8")).hexdigest()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    request TEXT NOT NULL,
    response TEXT NOT NULL,
    usage TEXT NOT NULL
)
"""


class TranscriptStore:
    """SQLite-backed (or, read-only, ``.jsonl``-backed) map from request key to answer."""

    def __init__(self, path: str | Path, *, replay: bool = False):
        self.path = Path(path)
        self.replay = replay
        self._lock = threading.Lock()
        self._memory: dict[str, dict[str, Any]] | None = None
        self._db: sqlite3.Connection | None = None
        if self.path.suffix == ".jsonl":
            if not replay:
                raise ValueError("a .jsonl transcript is read-only: use it with replay=True")
            self._memory = {}
            if not self.path.exists():
                raise TranscriptMissError(f"transcript not found: {self.path}")
            for number, entry in iter_jsonl(self.path, max_line_bytes=64 << 20):
                if not isinstance(entry, dict) or not isinstance(entry.get("key"), str) or "response" not in entry:
                    raise SourceError("not a transcript entry (expected an object with key and response)",
                                      path=self.path, line=number)
                self._memory[entry["key"]] = entry
        else:
            if replay and not self.path.exists():
                raise TranscriptMissError(f"transcript not found: {self.path}")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False, isolation_level=None)
                self._init_db()
                self._db.execute("SELECT COUNT(*) FROM answers").fetchone()
            except sqlite3.DatabaseError as exc:
                raise SourceError(f"not a FINER transcript database ({exc})", path=self.path) from exc

    def _init_db(self) -> None:
        # Switching to WAL can report "database is locked" without waiting while another
        # connection initialises the same file: retry for a bounded time.
        for attempt in range(200):
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute(_SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 199:
                    raise
                time.sleep(0.05)

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored entry ``{"key", "request", "response", "usage"}`` or ``None``."""
        if self._memory is not None:
            return self._memory.get(key)
        with self._lock:
            row = self._db.execute("SELECT request, response, usage FROM answers WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        return {"key": key, "request": json.loads(row[0]), "response": json.loads(row[1]), "usage": json.loads(row[2])}

    def put(self, key: str, request: Any, response: Any, usage: dict[str, int]) -> None:
        """Store an answer durably (the first answer for a key wins)."""
        if self._db is None:
            raise ValueError("this transcript is read-only")
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO answers (key, request, response, usage) VALUES (?, ?, ?, ?)",
                (key, _canonical(request), _canonical(response), _canonical(usage)),
            )

    def __len__(self) -> int:
        if self._memory is not None:
            return len(self._memory)
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def export(self, keys: Iterable[str], path: str | Path) -> int:
        """Write the entries of ``keys`` as canonical JSONL sorted by key; return how many."""
        entries = [self.get(k) for k in sorted(set(keys))]
        missing = [k for k, e in zip(sorted(set(keys)), entries) if e is None]
        if missing:
            raise TranscriptMissError(f"{len(missing)} used key(s) not in {self.path}, e.g. {missing[0]}")
        text = "".join(_canonical(e) + "\n" for e in entries)
        Path(path).write_text(text, encoding="utf-8")
        return len(entries)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
