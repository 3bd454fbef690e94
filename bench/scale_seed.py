"""Seeding for :mod:`bench.bench_scale`: one org made through the product, every other org a
copy of it written in bulk, on the storage the settings choose (SQLite or MongoDB).

The template org gets one connector (``Connector.create``) and one token record
(``TokenRecord.create``) per catalog entry, saved in one unit of work, so the stored shape is
the adapter's own. Every other org's rows or documents are copies of them with that org's id
and a fresh id per record, whose token material is sealed again for that id (the associated
data binds it to the record), so each copy reads like a real record. A share ``due_share`` of
the copies is due for refresh (earlier than now), the rest due later; the template org's are due.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from adapters.sealing import token_path
from bench.serve_app import BENCH_ENV

TEMPLATE_ORG = "tmpl-org-000000"
#: records per insert_many / executemany transaction
BATCH = 5_000


def settings_env(storage: str, mongo_url: str | None, database: str) -> dict[str, str]:
    """The environment that selects the storage, as ``connector-manager serve`` reads it."""
    env = dict(BENCH_ENV)
    if storage == "mongo":
        assert mongo_url is not None
        # a generous operation timeout: a query that scans the whole collection is measured,
        # not cut off after the default 2 s
        env |= {
            "CM_STORAGE": "mongo",
            "CM_MONGO_URL": mongo_url,
            "CM_MONGO_DATABASE": database,
            "CM_MONGO_TIMEOUT_SECONDS": "120",
        }
    return env


async def container(data_dir: Path, env: Mapping[str, str]) -> Any:
    from entrypoints.bootstrap import build_container
    from entrypoints.settings import load_settings

    return await build_container(load_settings(env=env, data_dir=data_dir), env=env)


def org_name(i: int) -> str:
    return TEMPLATE_ORG if i == 0 else f"org-{i:06d}"


async def _template(data_dir: Path, env: Mapping[str, str]) -> tuple[Any, str]:
    """Save the template org through the product; the sealer and the service's JWT secret."""
    from connector_core.model.connector import Connector
    from connector_core.tokens import TokenRecord, TokenSet

    c = await container(data_dir, env)
    try:
        ctx = c.ctx
        now = ctx.clock.now()
        async with ctx.uow() as uow:
            for entry in c.catalog:
                connector = Connector.create(entry, org_id=TEMPLATE_ORG, connector_id=ctx.ids.new_id(), now=now, by="u")
                await uow.connectors.add(connector)
                tokens = TokenSet(
                    access_token=f"access-{uuid.uuid4().hex}",
                    obtained_at=now,
                    refresh_token=f"refresh-{uuid.uuid4().hex}",
                    expires_at=now + timedelta(hours=1),
                    scopes=frozenset({"offline_access"}),
                )
                record = TokenRecord.create(
                    token_id=ctx.ids.new_id(),
                    org_id=TEMPLATE_ORG,
                    connector_key=entry.key,
                    account_id="seeder",
                    service_type="BENCH",
                    tokens=tokens,
                    lifecycle=ctx.lifecycle,
                    now=now,
                    ids=ctx.ids,
                )
                await uow.tokens.add(record)
            await uow.commit()
        return c.infrastructure.aead, str(c.service_secrets.jwt_secret)
    finally:
        await c.aclose()


def _due_times(rng: random.Random, due_share: float, base: float) -> float:
    due = rng.random() < due_share
    return base - rng.random() * 3600 if due else base + 600 + rng.random() * 86_400


async def seed(
    data_dir: Path, env: Mapping[str, str], orgs: int, due_share: float, *, mongo_database: str = ""
) -> tuple[str, int]:
    """Seed ``orgs`` orgs (catalog-size records each); the JWT secret and the record count."""
    sealer, secret = await _template(data_dir, env)
    if env.get("CM_STORAGE") == "mongo":
        count = _copy_mongo(env["CM_MONGO_URL"], mongo_database or env["CM_MONGO_DATABASE"], sealer, orgs, due_share)
    else:
        count = _copy_sqlite(data_dir / "connector-manager.db", sealer, orgs, due_share)
    return secret, count


def _bound_to(material: bytes, org: str) -> bytes:
    """The template's token material for a copy in ``org``: it names its org (sealing.TOKEN_BINDING)."""
    return json.dumps(json.loads(material) | {"org_id": org}).encode()


def _copy_sqlite(path: Path, sealer: Any, orgs: int, due_share: float) -> int:
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA synchronous=OFF")
        tokens = _rows(db, "tokens")
        connectors = _rows(db, "connectors")
        plain = {t["id"]: sealer.open(t["material"], path=token_path(t["id"])) for t in tokens}
        rng = random.Random(7)
        base = time.time()

        def token_copies(org: str) -> Iterator[dict[str, Any]]:
            for t in tokens:
                new_id = uuid.uuid4().hex
                row = dict(t)
                row["id"], row["org_id"] = new_id, org
                row["meta"] = t["meta"].replace(TEMPLATE_ORG, org).replace(t["id"], new_id)
                row["material"] = sealer.seal(_bound_to(plain[t["id"]], org), path=token_path(new_id))
                row["refresh_due_at"] = _due_times(rng, due_share, base)
                yield row

        def connector_copies(org: str) -> Iterator[dict[str, Any]]:
            for c in connectors:
                old_id, new_id = json.loads(c["doc"])["id"], uuid.uuid4().hex
                yield {k: _renamed(v, org, old_id, new_id) for k, v in c.items()}

        count = _executemany(db, "tokens", tokens, orgs, token_copies)
        _executemany(db, "connectors", connectors, orgs, connector_copies)
        db.execute("UPDATE tokens SET refresh_due_at=? WHERE org_id=?", (base - 60, TEMPLATE_ORG))
        return count + len(tokens)
    finally:
        db.close()


def _rows(db: sqlite3.Connection, table: str) -> list[dict[str, Any]]:
    columns = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
    return [dict(zip(columns, row, strict=True)) for row in db.execute(f"SELECT * FROM {table}")]


def _executemany(
    db: sqlite3.Connection,
    table: str,
    template: list[dict[str, Any]],
    orgs: int,
    copies: Callable[[str], Iterator[dict[str, Any]]],
) -> int:
    if not template:
        return 0
    columns = list(template[0])
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    batch: list[tuple[Any, ...]] = []
    count = 0
    for i in range(1, orgs):
        batch += [tuple(row[c] for c in columns) for row in copies(org_name(i))]
        if len(batch) >= BATCH * 10 or i == orgs - 1:
            db.execute("BEGIN")
            db.executemany(sql, batch)
            db.execute("COMMIT")
            count += len(batch)
            batch.clear()
    return count


def _copy_mongo(url: str, database: str, sealer: Any, orgs: int, due_share: float) -> int:
    """Copy the template org's documents with ``insert_many`` (unordered, :data:`BATCH` each)."""
    import pymongo

    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(url, tz_aware=True)
    try:
        db = client[database]
        tokens = list(db.tokens.find({"org_id": TEMPLATE_ORG}))
        connectors = list(db.connectorsConfig.find({"org_id": TEMPLATE_ORG}))
        plain = {t["_id"]: sealer.open(t["material"], path=token_path(t["_id"])) for t in tokens}
        rng = random.Random(7)
        base = time.time()
        count = len(tokens)
        token_batch: list[dict[str, Any]] = []
        connector_batch: list[dict[str, Any]] = []
        for i in range(1, orgs):
            org = org_name(i)
            for t in tokens:
                new_id = uuid.uuid4().hex
                due = datetime.fromtimestamp(_due_times(rng, due_share, base), UTC)
                doc = {k: v for k, v in t.items()}
                doc["_id"], doc["org_id"] = new_id, org
                doc["meta"] = {**t["meta"], "id": new_id, "org_id": org, "refresh_due_at": due.isoformat()}
                doc["material"] = sealer.seal(_bound_to(plain[t["_id"]], org), path=token_path(new_id))
                doc["refresh_due_at"] = due.replace(microsecond=due.microsecond // 1000 * 1000)
                token_batch.append(doc)
            for c in connectors:
                copy = json.loads(json.dumps({k: v for k, v in c.items() if k != "_id"}, default=str))
                connector_batch.append(_restored(c, copy, org))
            if len(token_batch) >= BATCH or i == orgs - 1:
                db.tokens.insert_many(token_batch, ordered=False)
                if connector_batch:
                    db.connectorsConfig.insert_many(connector_batch, ordered=False)
                count += len(token_batch)
                token_batch.clear()
                connector_batch.clear()
        when = datetime.fromtimestamp(base - 60, UTC)
        db.tokens.update_many({"org_id": TEMPLATE_ORG}, {"$set": {"refresh_due_at": when}})
        return count
    finally:
        client.close()


def _renamed(value: Any, org: str, old_id: str, new_id: str) -> Any:
    """A template value for ``org``: the template org's id and the connector's replaced."""
    return value.replace(TEMPLATE_ORG, org).replace(old_id, new_id) if isinstance(value, str) else value


def _restored(template: Mapping[str, Any], copy: dict[str, Any], org: str) -> dict[str, Any]:
    """A connector document for ``org``: the template's values, its org id and connector id
    replaced (the JSON round trip copies the nested state; dates are put back as dates)."""
    text = _renamed(json.dumps(copy), org, template["state"]["id"], uuid.uuid4().hex)
    doc: dict[str, Any] = json.loads(text)
    for k, v in template.items():
        if isinstance(v, datetime):
            doc[k] = v
    return doc
