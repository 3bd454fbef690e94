"""The indexes MongoDatabase.ensure_indexes makes are accepted by MongoDB 4.x (docs/operations.md
supports ">= 4.0 replica set"), which refuses a second index with the key pattern of an existing
one (IndexOptionsConflict, 85) even under another name or with other options (before 5.0 a
partial index and a plain one could not share a pattern). No server needed: a fake stands in
for the driver's database and collections, with those rules."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo.errors import OperationFailure

from adapters.mongo import MongoDatabase

Keys = tuple[tuple[str, Any], ...]


class Mongo4Collection:
    def __init__(self, name: str, indexes: dict[str, tuple[Keys, dict[str, Any]]] | None = None) -> None:
        self.name = name
        self.indexes: dict[str, tuple[Keys, dict[str, Any]]] = {"_id_": ((("_id", 1),), {}), **(indexes or {})}

    async def create_index(self, keys: str | list[tuple[str, Any]], *, name: str, **options: Any) -> str:
        pattern: Keys = ((keys, 1),) if isinstance(keys, str) else tuple(keys)
        if name in self.indexes:
            if self.indexes[name] != (pattern, options):
                raise OperationFailure(f"an index named {name} exists with other keys or options", 85)
            return name
        for other, (other_pattern, _) in self.indexes.items():
            if other_pattern == pattern:
                raise OperationFailure(f"index {other} has the same key pattern as {name}", 85)
        self.indexes[name] = (pattern, options)
        return name

    async def drop_index(self, name: str) -> None:
        if self.indexes.pop(name, None) is None:
            raise OperationFailure(f"index not found with name [{name}]", 27)

    async def delete_many(self, query: dict[str, Any]) -> None:
        pass


class Mongo4Database:
    def __init__(self, collections: dict[str, Mongo4Collection]) -> None:
        self.collections = collections

    async def command(self, name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        assert name == "hello"
        return {"setName": "rs0"}

    async def list_collection_names(self) -> list[str]:
        return list(self.collections)

    async def create_collection(self, name: str) -> None:
        self.collections[name] = Mongo4Collection(name)


@pytest.fixture
async def db(offline_mongo: MongoDatabase) -> MongoDatabase:
    return offline_mongo


def on_mongo4(db: MongoDatabase, connectors: Mongo4Collection) -> dict[str, Mongo4Collection]:
    collections: dict[str, Mongo4Collection] = {}
    for attr in ("connectors", "tokens", "outbox", "oauth_states", "leases", "counters"):
        name = getattr(db, attr).name
        collections[name] = connectors if attr == "connectors" else Mongo4Collection(name)
        setattr(db, attr, collections[name])
    db.db = Mongo4Database(collections)  # type: ignore[assignment]
    return collections


async def test_the_indexes_are_made_on_mongodb_4_and_again_at_the_next_start(db: MongoDatabase) -> None:
    collections = on_mongo4(db, Mongo4Collection("connectorsConfig"))
    await db.ensure_indexes()
    await db.ensure_indexes()  # idempotent
    for collection in collections.values():
        patterns = [pattern for pattern, _ in collection.indexes.values()]
        assert len(patterns) == len(set(patterns)), collection.name


async def test_the_duplicate_org_key_index_an_earlier_version_made_is_dropped(db: MongoDatabase) -> None:
    # "org_key" was made by e7217bc on a server >= 5.0, which allowed it beside the unique one
    org_key: Keys = (("org_id", 1), ("key", 1))
    unique = {"unique": True, "partialFilterExpression": {"org_id": {"$exists": True}}}
    connectors = Mongo4Collection("connectorsConfig", {"org_key_unique": (org_key, unique), "org_key": (org_key, {})})
    on_mongo4(db, connectors)
    await db.ensure_indexes()
    assert "org_key" not in connectors.indexes
    assert connectors.indexes["org_key_id"][0] == (("org_id", 1), ("key", 1), ("_id", 1))
    assert connectors.indexes["org_key_unique"][1]["unique"] is True
