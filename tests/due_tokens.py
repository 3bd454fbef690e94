"""A custom provider on the fake OAuth provider, and connectors holding tokens that are due."""

from __future__ import annotations

from datetime import timedelta

from connector_core.services.connectors import ConfigUpdate
from connector_core.tokens import TokenRecord, TokenSet
from entrypoints.bootstrap import Container
from tests.fakes.oauth_provider import FakeOAuthProvider

SCOPES = ("offline_access", "files.read")


def provider_toml(idp: FakeOAuthProvider, key: str = "fakeIdp", app: str = "FAKE") -> str:
    """A ``[[providers]]`` table for a settings file: ``key`` on ``idp``, granting ``app``."""
    return f"""
[[providers]]
key = "{key}"
displayName = "{key}"
apps = ["{app}"]
tokenServiceType = "{app}"

[providers.oauth]
authorizeUrl = "{idp.authorize_url}"
tokenUrl = "{idp.token_url}"
revocationUrl = "{idp.revocation_url}"
defaultScopes = {list(SCOPES)!r}

[providers.oauth.scopeApps]
"files.read" = "{app}"
"""


async def seed_due_token(
    container: Container,
    idp: FakeOAuthProvider,
    org: str,
    *,
    client: tuple[str, str] = ("cid", "sec"),
    key: str = "fakeIdp",
    app: str = "FAKE",
) -> str:
    """Configure ``key`` for ``org`` with ``client`` (id, secret), authorize it and store a
    token minted by ``idp`` that expires in a minute (inside every refresh margin: due now).
    Returns the refresh token stored."""
    ctx = container.ctx
    client_id, client_secret = client
    update = ConfigUpdate(
        base_url="http://localhost:3000",
        auth={"clientId": client_id, "clientSecret": client_secret},
        sync={},
        filters={},
    )
    await container.connectors.update_configuration(org, "seeder", key, update)
    refresh = idp.mint_refresh_token(client_id, list(SCOPES))
    now = ctx.clock.now()
    tokens = TokenSet(
        access_token=f"stale-{org}",
        obtained_at=now - timedelta(hours=1),
        refresh_token=refresh,
        expires_at=now + timedelta(seconds=60),
        scopes=frozenset(SCOPES),
    )
    async with ctx.uow() as uow:
        connector = await uow.connectors.get(org, key)
        assert connector is not None
        connector.record_authorization(container.catalog.get(key), [app], by="seeder", now=now, ids=ctx.ids)
        record = TokenRecord.create(
            token_id=ctx.ids.new_id(),
            org_id=org,
            connector_key=key,
            account_id="seeder",
            service_type=app,
            tokens=tokens,
            lifecycle=ctx.lifecycle,
            now=now,
            ids=ctx.ids,
        )
        await uow.connectors.save(connector)
        await uow.tokens.add(record)
        await uow.commit()
    return refresh
