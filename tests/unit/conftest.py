"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from adapters.crypto import Aead, Keyring
from adapters.mongo import MongoDatabase, make_client
from adapters.system import SystemClock


@pytest.fixture
async def offline_mongo() -> AsyncIterator[MongoDatabase]:
    """A MongoDatabase on a replica-set URL that is never dialled (the driver connects lazily):
    for tests of what the adapter configures, not of what a server answers."""
    url = "mongodb://h1:27017,h2:27017,h3:27017/?replicaSet=rs0"
    database = MongoDatabase(make_client(url), "cm", sealer=Aead(Keyring.generate()), clock=SystemClock())
    yield database
    await database.aclose()
