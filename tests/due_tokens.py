"""A custom provider on the fake OAuth provider, and connectors holding tokens that are due."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path

from connector_core.services.connectors import ConfigUpdate
from connector_core.tokens import TokenRecord, TokenSet
from entrypoints.bootstrap import Container, build_container
from entrypoints.settings import load_settings
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
    client_id, client_secret = client
    update = ConfigUpdate(
        base_url="http://localhost:3000",
        auth={"clientId": client_id, "clientSecret": client_secret},
        sync={},
        filters={},
    )
    await container.connectors.update_configuration(org, "seeder", key, update)
    refresh = idp.mint_refresh_token(client_id, list(SCOPES))
    await store_due_token(container, org, refresh, key=key, app=app)
    return refresh


async def store_due_token(container: Container, org: str, refresh: str, *, key: str, app: str) -> None:
    """Authorize ``org``'s configured ``key`` for ``app`` and store a token holding ``refresh``
    that expires in a minute (inside every refresh margin: due now)."""
    ctx = container.ctx
    now = ctx.clock.now()
    tokens = TokenSet(
        access_token=f"stale-{org}",
        obtained_at=now - timedelta(hours=1),
        refresh_token=refresh,
        expires_at=now + timedelta(seconds=60),
        scopes=frozenset(SCOPES),
    )
    await store_token(container, org, tokens, key=key, app=app)


async def store_token(container: Container, org: str, tokens: TokenSet, *, key: str, app: str) -> None:
    """Authorize ``org``'s configured ``key`` for ``app`` and store ``tokens`` as its token."""
    ctx = container.ctx
    now = ctx.clock.now()
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


async def seed_due_tokens(
    config: Path,
    data_dir: Path,
    env: dict[str, str],
    idp: FakeOAuthProvider,
    orgs: Iterable[str],
    *,
    client: tuple[str, str] = ("cid", "sec"),
) -> list[str]:
    """:func:`seed_due_token` for each of ``orgs``, in the store a process started with
    ``config``, ``data_dir`` and ``env`` uses. Returns the refresh tokens stored."""
    container = await build_container(load_settings(config, env=env, data_dir=data_dir), env=env)
    try:
        return [await seed_due_token(container, idp, org, client=client) for org in orgs]
    finally:
        await container.aclose()
