"""Contract: IdentityAccess (is this user an admin of their org?). Ids are ObjectId hex strings,
as the existing deployment's tokens carry them; each adapter learns "admin" its own way."""

from __future__ import annotations

from bson import ObjectId

from connector_core.ports.iam import Principal
from tests.contract.backends import IamUnderTest


def new_id() -> str:
    return str(ObjectId())


async def test_an_admin_is_an_admin(iam: IamUnderTest) -> None:
    org = new_id()
    alice = await iam.make_admin(org, new_id())
    assert await iam.iam.is_admin(alice) is True


async def test_a_member_is_not_an_admin(iam: IamUnderTest) -> None:
    org = new_id()
    bob = await iam.make_member(org, new_id())
    assert await iam.iam.is_admin(bob) is False


async def test_each_user_gets_their_own_verdict(iam: IamUnderTest) -> None:
    org = new_id()
    alice = await iam.make_admin(org, new_id())
    bob = await iam.make_member(org, new_id())
    for _ in range(2):  # asked again (a cache, if any, keeps each verdict apart)
        assert await iam.iam.is_admin(alice) is True
        assert await iam.iam.is_admin(bob) is False


async def test_a_service_caller_administers_nothing(iam: IamUnderTest) -> None:
    org = new_id()
    await iam.make_admin(org, new_id())
    service = Principal(user_id=None, org_id=org, scopes=frozenset({"fetch:config"}))
    assert await iam.iam.is_admin(service) is False
