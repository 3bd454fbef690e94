"""Change stamp port: tells cheaply whether an org's stored data may have changed, so what was
built from it can be answered again without reading it."""

from __future__ import annotations

from typing import Protocol


class ChangeStamp(Protocol):
    def store_version(self) -> int | None:
        """A number that differs after every commit to the store, by any process sharing it;
        None when it cannot be told now. Cheap: never waits on I/O or a lock."""
        ...

    def org_version(self, org_id: str) -> int | None:
        """A number that differs after every commit that changed the org's connectors or
        tokens, by any process sharing the store; None when it cannot be told now. Costlier
        than :meth:`store_version` (one indexed read), still without waiting."""
        ...

    def close(self) -> None:
        """Release what the stamp holds (a connection); later calls answer None."""
        ...
