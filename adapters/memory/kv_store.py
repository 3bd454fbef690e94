"""In-memory key-value store with revisions (etcd semantics)."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from connector_core.errors import Conflict
from connector_core.ports.kv_store import Versioned


class MemoryKeyValueStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[str, Versioned] = {}
        self._revision = 0

    def _check(self, key: str, expected_revision: int | None) -> None:
        if expected_revision is None:
            return
        current = self._data.get(key)
        if (current.revision if current else 0) != expected_revision:
            raise Conflict(f"key {key!r} changed concurrently")

    async def get(self, key: str) -> Versioned | None:
        with self._lock:
            return self._data.get(key)

    async def put(self, key: str, value: str, *, expected_revision: int | None = None) -> int:
        with self._lock:
            self._check(key, expected_revision)
            self._revision += 1
            self._data[key] = Versioned(value, self._revision)
            return self._revision

    async def delete(self, key: str, *, expected_revision: int | None = None) -> bool:
        with self._lock:
            self._check(key, expected_revision)
            return self._data.pop(key, None) is not None

    async def list_prefix(self, prefix: str) -> Mapping[str, Versioned]:
        with self._lock:
            return {k: v for k, v in sorted(self._data.items()) if k.startswith(prefix)}

    def raw(self) -> Mapping[str, Versioned]:
        """What is stored, as it is stored (for inspection in tests and tools)."""
        with self._lock:
            return dict(self._data)
