"""``iam = "mongo-user-groups"``: admin status from the existing deployment's user groups, on the
real MongoDB server. What makes an admin (and what does not), ObjectId and string ids, the
short-lived bounded cache, custom collection and field names, and a seed-signed token without any
admin claim managing connectors through the HTTP API; MongoDB down is a 503, never a 403."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from adapters.iam.mongo_user_groups import MongoUserGroupsIam, UserGroupsSchema
from adapters.mongo import make_client
from connector_core.errors import Unavailable
from connector_core.ports.iam import Principal
from entrypoints.bootstrap import build_container
from entrypoints.http.app import create_app
from entrypoints.settings import SettingsError, load_settings
from tests.fakes.pipeshub import SeedDeployment
from tests.servers import collect_driver_sockets, free_port

pytestmark = pytest.mark.mongo

Doc = dict[str, object]
P = "/api/v1/connectors"


@pytest.fixture
async def client(mongo_url: str) -> AsyncIterator[AsyncMongoClient[Doc]]:
    c: AsyncMongoClient[Doc] = make_client(mongo_url)
    yield c
    await c.close()


@pytest.fixture
async def db(client: AsyncMongoClient[Doc]) -> AsyncIterator[AsyncDatabase[Doc]]:
    database = client[f"es_{uuid.uuid4().hex}"]
    yield database
    await client.drop_database(database.name)


@pytest.fixture
def seed(db: AsyncDatabase[Doc]) -> SeedDeployment:
    return SeedDeployment(None, db)  # MongoDB only


def who(org: ObjectId, user: ObjectId) -> Principal:
    return Principal(user_id=str(user), org_id=str(org), claims={"userId": str(user), "orgId": str(org)})


class Ticking:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_only_a_live_admin_group_of_the_users_own_org_makes_an_admin(
    seed: SeedDeployment, db: AsyncDatabase[Doc]
) -> None:
    org, other_org = await seed.org(), await seed.org()
    admin, named_admins, deleted, elsewhere, standard = (ObjectId() for _ in range(5))
    await seed.group(org, "admin", [admin])
    await seed.group(org, "custom", [named_admins], name="Admins")  # a name is not a type
    await seed.group(org, "admin", [deleted], deleted=True)
    await seed.group(other_org, "admin", [elsewhere])  # admin of another org only
    await seed.group(org, "standard", [standard, elsewhere])
    await seed.group(org, "everyone", [admin, named_admins, deleted, elsewhere, standard])
    iam = MongoUserGroupsIam(db["userGroups"])

    assert await iam.is_admin(who(org, admin)) is True
    assert await iam.is_admin(who(org, named_admins)) is False
    assert await iam.is_admin(who(org, deleted)) is False
    assert await iam.is_admin(who(org, elsewhere)) is False
    assert await iam.is_admin(who(other_org, elsewhere)) is True
    assert await iam.is_admin(who(org, standard)) is False
    assert await iam.is_admin(who(org, ObjectId())) is False  # unknown user


async def test_ids_stored_as_strings_match_too(seed: SeedDeployment, db: AsyncDatabase[Doc]) -> None:
    org, user = await seed.org(), ObjectId()
    await seed.group(org, "admin", [user], ids_as_strings=True)
    assert await MongoUserGroupsIam(db["userGroups"]).is_admin(who(org, user)) is True


async def test_ids_that_are_not_object_ids_are_matched_as_they_are(db: AsyncDatabase[Doc]) -> None:
    await db["userGroups"].insert_one({"orgId": "org-a", "users": ["alice"], "type": "admin", "isDeleted": False})
    iam = MongoUserGroupsIam(db["userGroups"])
    assert await iam.is_admin(Principal(user_id="alice", org_id="org-a")) is True
    assert await iam.is_admin(Principal(user_id="alice", org_id="org-b")) is False


async def test_collection_and_field_names_are_configurable(db: AsyncDatabase[Doc]) -> None:
    org, user = ObjectId(), ObjectId()
    await db["teams"].insert_one({"tenant": org, "members": [user], "kind": "owners", "removed": False})
    await db["teams"].insert_one({"tenant": org, "members": [user], "kind": "owners", "removed": True})
    schema = UserGroupsSchema(
        collection="teams",
        org_field="tenant",
        users_field="members",
        type_field="kind",
        deleted_field="removed",
        admin_type="owners",
    )
    iam = MongoUserGroupsIam(db[schema.collection], schema)
    assert await iam.is_admin(who(org, user)) is True
    assert await iam.is_admin(who(ObjectId(), user)) is False


async def test_a_verdict_is_kept_for_its_ttl_then_asked_again(seed: SeedDeployment, db: AsyncDatabase[Doc]) -> None:
    org, user = await seed.org(), ObjectId()
    group = await seed.group(org, "admin", [user])
    clock = Ticking()
    iam = MongoUserGroupsIam(db["userGroups"], ttl_seconds=30, monotonic=clock)
    assert await iam.is_admin(who(org, user)) is True

    await db["userGroups"].update_one({"_id": group}, {"$pull": {"users": user}})  # no longer an admin
    clock.now += 29
    assert await iam.is_admin(who(org, user)) is True  # the cached verdict, within its TTL
    clock.now += 2
    assert await iam.is_admin(who(org, user)) is False  # asked again after it


async def test_the_cache_is_bounded(seed: SeedDeployment, db: AsyncDatabase[Doc]) -> None:
    org = await seed.org()
    iam = MongoUserGroupsIam(db["userGroups"], max_entries=3)
    for _ in range(10):
        await iam.is_admin(who(org, ObjectId()))
    assert iam.cached == 3


async def test_mongodb_down_is_unavailable_and_not_cached() -> None:
    dead: AsyncMongoClient[Doc] = make_client(f"mongodb://127.0.0.1:{free_port()}/", timeout_seconds=0.3)
    iam = MongoUserGroupsIam(dead["es"]["userGroups"])
    try:
        for _ in range(2):  # a failure is never remembered as a "no"
            with pytest.raises(Unavailable) as caught:
                await iam.is_admin(who(ObjectId(), ObjectId()))
            assert caught.value.metadata == {"dependency": "iam"}
        assert iam.cached == 0
    finally:
        await dead.close()
        await collect_driver_sockets()


# -- through the HTTP API, wired from settings ---------------------------------------------------


@contextlib.asynccontextmanager
async def api(
    tmp_path: Path, seed: SeedDeployment, mongo_url: str, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    env = {"CM_JWT_SECRET": seed.jwt_secret, "CM_SCOPED_JWT_SECRET": seed.scoped_jwt_secret}
    settings = load_settings(
        env={},
        storage="memory",
        secrets="memory",
        data_dir=tmp_path,
        iam="mongo-user-groups",
        iam_mongo_url=mongo_url,
        iam_mongo_database=seed.db.name,
        **overrides,
    )
    container = await build_container(settings, env=env)
    transport = httpx.ASGITransport(app=create_app(container))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://cm") as http:
            yield http
    finally:
        await container.aclose()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_seed_signed_token_without_admin_claim_is_an_admin_through_user_groups(
    tmp_path: Path, seed: SeedDeployment, mongo_url: str
) -> None:
    org = await seed.org(account_type="business")
    alice = await seed.user(org, "alice@acme.example")
    bob = await seed.user(org, "bob@acme.example")
    await seed.group(org, "admin", [alice])
    await seed.group(org, "custom", [bob], name="Admins")
    await seed.group(org, "everyone", [alice, bob])
    alice_token = seed.user_token(alice, org, "alice@acme.example")
    bob_token = seed.user_token(bob, org, "bob@acme.example")
    body = {
        "baseUrl": "https://acme.atlassian.net",
        "auth": {"authType": "API_TOKEN", "email": "ops@acme.example", "apiToken": "PLANTED-API-TOKEN"},
    }
    async with api(tmp_path, seed, mongo_url) as http:
        saved = await http.put(f"{P}/config/confluence", json=body, headers=bearer(alice_token))
        assert saved.status_code == 200, saved.text
        toggled = await http.post(f"{P}/toggle/confluence", json={"enabled": True}, headers=bearer(alice_token))
        assert toggled.status_code == 200, toggled.text
        assert toggled.json()["connector"]["isEnabled"] is True

        refused = await http.get(f"{P}/config/confluence", headers=bearer(bob_token))
        assert refused.status_code == 403
        active = await http.get(f"{P}/active", headers=bearer(bob_token))  # any user of the org
        assert [c["key"] for c in active.json()] == ["confluence"]


async def test_mongodb_down_answers_503_not_403(tmp_path: Path, seed: SeedDeployment, mongo_url: str) -> None:
    org = await seed.org()
    alice = await seed.user(org, "alice@acme.example")
    await seed.group(org, "admin", [alice])
    async with api(tmp_path, seed, mongo_url) as http:
        container = http._transport.app.state.holder.current().container  # type: ignore[attr-defined]
        dead: AsyncMongoClient[Doc] = make_client(f"mongodb://127.0.0.1:{free_port()}/", timeout_seconds=0.3)
        container.iam = MongoUserGroupsIam(dead["es"]["userGroups"])  # the user groups' server went away
        try:
            answer = await http.get(f"{P}/", headers=bearer(seed.user_token(alice, org, "alice@acme.example")))
        finally:
            await dead.close()
            await collect_driver_sockets()
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert "user groups" in answer.json()["error"]["message"]


async def test_start_up_names_the_setting_when_the_user_groups_server_is_down(
    tmp_path: Path, seed: SeedDeployment
) -> None:
    with pytest.raises(SettingsError) as caught:
        async with api(
            tmp_path,
            seed,
            f"mongodb://127.0.0.1:{free_port()}/",
            mongo_timeout_seconds=0.3,
            start_up_timeout_seconds=0.5,
        ):
            pass
    await collect_driver_sockets()
    assert caught.value.errors[0]["path"] == "iam_mongo_url"
