"""Key rotation on MongoDB: the sealed token material and OAuth states, re-encrypted in place
(token material also bound to its org and connector: :mod:`adapters.token_binding`)."""

from __future__ import annotations

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
)
from adapters.token_binding import StoredToken, bindings, reseal_token

_TOKEN_FIELDS = {"org_id": 1, "connector_key": 1, "meta": 1, "material": 1}


def _token(doc: dict[str, Any]) -> StoredToken:
    return StoredToken(str(doc["_id"]), (doc.get("org_id"), doc.get("connector_key")), doc.get("meta"), doc["material"])


class MongoSealedValues:
    def __init__(self, db: MongoDatabase) -> None:
        self._db = db

    def _stores(self) -> tuple[tuple[str, AsyncCollection[dict[str, Any]], str], ...]:
        return ((TOKENS, self._db.tokens, "material"), (OAUTH_STATES, self._db.oauth_states, "sealed"))

    async def census(self) -> Census:
        census: Census = {}
        for store, collection, field in self._stores():
            async with self._db.op(f"count the sealed values of {store}"):
                docs = await collection.find({}, projection={field: 1}).to_list()
            count(census, store, (key_label(self._db.sealer, d[field]) for d in docs if field in d))
        return census

    async def _tokens(self) -> list[tuple[object, StoredToken]]:
        """(``_id``, the record as stored) of each token record that holds material (as the census)."""
        async with self._db.op(f"read the sealed values of {TOKENS}"):
            docs = await self._db.tokens.find({}, projection=_TOKEN_FIELDS).to_list()
        return [(doc["_id"], _token(doc)) for doc in docs if "material" in doc]

    async def token_bindings(self) -> dict[str, int]:
        return bindings(self._db.sealer, (token for _, token in await self._tokens()))

    async def reseal(self, advance: Advance | None = None, damaged: Damaged | None = None) -> int:
        sealer = self._db.sealer
        tokens = await self._tokens()
        due = [(i, t.material, new) for i, t in tokens if (new := reseal_token(sealer, t, damaged))]
        rewritten = await self._rewrite(TOKENS, self._db.tokens, "material", due, advance)
        async with self._db.op(f"read the sealed values of {OAUTH_STATES}"):
            docs = await self._db.oauth_states.find({}, projection={"sealed": 1}).to_list()
        # a value that is not a string is told to ``damaged`` as one that cannot be decrypted
        states = [(d["_id"], d["sealed"]) for d in docs if "sealed" in d]
        due = [
            (i, old, new) for i, old in states if (new := rewrap_or_report(sealer, old, state_path(str(i)), damaged))
        ]
        return rewritten + await self._rewrite(OAUTH_STATES, self._db.oauth_states, "sealed", due, advance)

    async def _rewrite(
        self,
        store: str,
        collection: AsyncCollection[dict[str, Any]],
        field: str,
        due: list[tuple[object, object, str]],
        advance: Advance | None,
    ) -> int:
        """Write each ``(id, old, new)`` of ``due`` where ``field`` still holds ``old``."""
        rewritten = 0
        for ident, old, new in due:
            async with self._db.op(f"re-encrypt a value of {store}"):
                result = await collection.update_one({"_id": ident, field: old}, {"$set": {field: new}})
            rewritten += result.modified_count
            if advance is not None:
                advance(1)
        return rewritten
