"""Key-value / secret store port (etcd-style paths such as ``/services/connectors/...``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from attrs import field, frozen


@frozen
class Versioned:
    """A value with the store's revision of it (etcd ``mod_revision``, a counter elsewhere).
    The value is often a decrypted secret: never in the repr."""

    value: str = field(repr=False)
    revision: int


class KeyValueStore(Protocol):
    async def get(self, key: str) -> Versioned | None:
        """The value and its revision, or None when absent."""
        ...

    async def put(self, key: str, value: str, *, expected_revision: int | None = None) -> int:
        """Write and return the new revision. With ``expected_revision`` it is a compare-and-swap:
        0 means "must not exist"; a mismatch raises :class:`Conflict` and writes nothing."""
        ...

    async def delete(self, key: str, *, expected_revision: int | None = None) -> bool:
        """Delete; True when something was deleted. CAS as in :meth:`put`."""
        ...

    async def list_prefix(self, prefix: str) -> Mapping[str, Versioned]:
        """Every key under ``prefix`` with its value."""
        ...
