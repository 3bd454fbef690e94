"""The identity-and-access backend of ``iam = "mongo-user-groups"``: admin status from the
existing deployment's user groups, on a client of its own (often another database, even another
server, than the storage's)."""

from __future__ import annotations

from typing import Any

from attrs import frozen
from pymongo import AsyncMongoClient

from adapters.factories.sections import UserGroupsIamSettings
from adapters.health import require
from adapters.iam.mongo_user_groups import MongoUserGroupsIam
from adapters.mongo import make_client
from adapters.redaction import redact_url


@frozen
class UserGroupsIamBackend:
    iam: MongoUserGroupsIam
    client: AsyncMongoClient[dict[str, Any]]

    async def aclose(self) -> None:
        await self.client.close()


async def open_user_groups_iam(settings: UserGroupsIamSettings) -> UserGroupsIamBackend:
    """A user-groups IAM whose MongoDB answers (else :class:`Unavailable` naming the server)."""
    client = make_client(settings.url, timeout_seconds=settings.timeout_seconds)
    iam = MongoUserGroupsIam(
        client[settings.database][settings.schema.collection],
        settings.schema,
        ttl_seconds=settings.cache_ttl_seconds,
        max_entries=settings.cache_size,
        timeout_seconds=settings.timeout_seconds,
    )
    try:
        await require(
            iam.check,
            f"MongoDB (user groups) at {redact_url(settings.url)}",
            within=settings.start_up_timeout_seconds,
        )
    except BaseException:
        await client.close()
        raise
    return UserGroupsIamBackend(iam, client)
