"""Key rotation on MongoDB: the sealed token material and OAuth states, re-encrypted in place."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from adapters.mongo.database import MongoDatabase
from adapters.sealing import (
    OAUTH_STATES,
    TOKENS,
    Advance,
    Census,
    Damaged,
    count,
    key_label,
    rewrap_or_report,
    state_path,
    token_path,
)


class MongoSealedValues:
    def __init__(self, db: MongoDatabase) -> None:
        self._db = db

    def _stores(self) -> tuple[tuple[str, AsyncCollection[dict[str, Any]], str, Callable[[str], str]], ...]:
        return (
            (TOKENS, self._db.tokens, "material", token_path),
            (OAUTH_STATES, self._db.oauth_states, "sealed", state_path),
        )

    async def census(self) -> Census:
        census: Census = {}
        for store, collection, field, _ in self._stores():
            async with self._db.op(f"count the sealed values of {store}"):
                docs = await collection.find({}, projection={field: 1}).to_list()
            count(census, store, (key_label(self._db.sealer, d[field]) for d in docs if field in d))
        return census

    async def reseal(self, advance: Advance | None = None, damaged: Damaged | None = None) -> int:
        sealer = self._db.sealer
        rewritten = 0
        for store, collection, field, path in self._stores():
            async with self._db.op(f"read the sealed values of {store}"):
                docs = await collection.find({}, projection={field: 1}).to_list()
            for doc in docs:
                if field not in doc:  # as the census: nothing sealed here
                    continue
                old = doc[field]  # not a string: told to ``damaged`` as a value that cannot be decrypted
                new = rewrap_or_report(sealer, old, path(str(doc["_id"])), damaged)
                if new is None:
                    continue
                async with self._db.op(f"re-encrypt a value of {store}"):
                    result = await collection.update_one({"_id": doc["_id"], field: old}, {"$set": {field: new}})
                rewritten += result.modified_count
                if advance is not None:
                    advance(1)
        return rewritten
