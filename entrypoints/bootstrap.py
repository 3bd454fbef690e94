"""The composition root: builds adapters from settings and hands out the services.

Tests and embedding applications call :func:`build_container` with their own adapters;
nothing connects at import time.
"""

from __future__ import annotations

import json
import logging
import os
import secrets as pysecrets
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from attrs import define, field

from adapters.crypto import Aead, EncryptedKeyValueStore, Keyring
from adapters.http.oauth_client import HttpxOAuthClient
from adapters.memory import (
    MemoryKeyValueStore,
    MemoryLeaseLock,
    MemoryOAuthStateStore,
    MemoryOutboxReader,
    MemoryStorage,
)
from adapters.sqlite import (
    SQLiteDatabase,
    SQLiteKeyValueStore,
    SQLiteLeaseLock,
    SQLiteOAuthStateStore,
    SQLiteOutboxReader,
    SQLiteUnitOfWork,
)
from adapters.system import SecureIds, SystemClock, SystemRandom
from connector_core.catalog import Catalog, load_default_catalog
from connector_core.errors import Conflict
from connector_core.model.connector import EventRoutes
from connector_core.ports.clock import Clock
from connector_core.ports.health import HealthCheck
from connector_core.ports.iam import IdentityAccess, Principal
from connector_core.ports.kv_store import KeyValueStore
from connector_core.ports.lock import LeaseLock
from connector_core.ports.oauth_state import OAuthStateStore
from connector_core.ports.outbox import OutboxReader
from connector_core.ports.unit_of_work import UnitOfWorkFactory
from connector_core.services.connectors import ConnectorService
from connector_core.services.context import ServiceContext
from connector_core.services.oauth import OAuthService, OAuthSettings
from connector_core.services.refresh import TokenRefresher
from connector_core.tokens import RefreshPolicy
from entrypoints.settings import Settings, SettingsError

log = logging.getLogger("connector_manager")

SECRET_KEYS_PATH = "/services/secretKeys"
KEYRING_FILE = "master.key"


class ServiceSecrets:
    """Signing secrets of the API. Never printed (a plain class, so no pretty-printer that
    walks attrs fields can show them either)."""

    __slots__ = ("cookie_secret", "jwt_secret", "scoped_jwt_secret")

    def __init__(self, jwt_secret: str, scoped_jwt_secret: str, cookie_secret: str) -> None:
        self.jwt_secret = jwt_secret
        self.scoped_jwt_secret = scoped_jwt_secret
        self.cookie_secret = cookie_secret

    def __repr__(self) -> str:
        return "ServiceSecrets(<hidden>)"


class ClaimAdminIam:
    """Default IAM adapter: admin when the user token says so (``isAdmin: true`` or a role)."""

    async def is_admin(self, principal: Principal) -> bool:
        claims = principal.claims
        if claims.get("isAdmin") is True:
            return True
        role = claims.get("role")
        roles = claims.get("roles")
        return role == "admin" or (isinstance(roles, list) and "admin" in roles)


@define
class NamedCheck:
    name: str
    required: bool
    probe: Callable[[], Awaitable[bool]]

    async def check(self) -> bool:
        try:
            return bool(await self.probe())
        except Exception:  # a health probe reports; it never raises
            return False


@define
class Storage:
    """What one storage backend provides."""

    uow: UnitOfWorkFactory
    outbox: OutboxReader
    states: OAuthStateStore
    raw_kv: KeyValueStore
    lock: LeaseLock
    check: Callable[[], Awaitable[bool]]
    close: Callable[[], Awaitable[None]]


@define
class Container:
    settings: Settings
    catalog: Catalog
    ctx: ServiceContext
    storage: Storage
    secrets_store: KeyValueStore
    service_secrets: ServiceSecrets
    iam: IdentityAccess
    health_checks: list[HealthCheck]
    connectors: ConnectorService
    extras: dict[str, Any] = field(factory=dict)
    generation: int = 1

    async def aclose(self) -> None:
        for closer in reversed(self.extras.get("closers", [])):
            await closer()
        await self.storage.close()


def _keyring(settings: Settings, env: dict[str, str]) -> Keyring:
    legacy = env.get("CM_LEGACY_SECRET_KEY") or None
    if env.get("CM_ENCRYPTION_KEYS"):
        return Keyring.parse(env["CM_ENCRYPTION_KEYS"], legacy_secret=legacy)
    if env.get("CM_MASTER_KEY"):
        return Keyring.from_master_secret(env["CM_MASTER_KEY"], legacy_secret=legacy)
    if settings.storage == "memory" and settings.secrets == "memory":
        return Keyring.generate(legacy_secret=legacy)
    path = settings.data_dir / KEYRING_FILE
    return Keyring.parse(
        _read_or_create_secret_file(path, lambda: Keyring.generate().to_spec()),
        legacy_secret=legacy,
    )


def _read_or_create_secret_file(path: Path, make: Callable[[], str]) -> str:
    """Read a 0600 file, creating it atomically (O_EXCL) on first start."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise SettingsError.for_field("data_dir", f"{path} must not be readable by others (chmod 600)") from None
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(make() + "\n")
    return path.read_text(encoding="utf-8").strip()


def _storage(settings: Settings, aead: Aead, clock: Clock) -> Storage:
    if settings.storage == "memory":
        mem = MemoryStorage()

        async def true() -> bool:
            return True

        async def nothing() -> None:
            return None

        return Storage(
            uow=mem.unit_of_work,
            outbox=MemoryOutboxReader(mem),
            states=MemoryOAuthStateStore(mem),
            raw_kv=MemoryKeyValueStore(),
            lock=MemoryLeaseLock(clock),
            check=true,
            close=nothing,
        )
    db = SQLiteDatabase(settings.database_path, sealer=aead)
    return Storage(
        uow=lambda: SQLiteUnitOfWork(db),
        outbox=SQLiteOutboxReader(db),
        states=SQLiteOAuthStateStore(db),
        raw_kv=SQLiteKeyValueStore(db),
        lock=SQLiteLeaseLock(db, clock),
        check=db.check,
        close=db.aclose,
    )


async def load_service_secrets(store: KeyValueStore, env: dict[str, str]) -> ServiceSecrets:
    """From the environment, else from ``/services/secretKeys`` (encrypted), generated once.
    Two processes starting together agree: the first compare-and-swap wins."""
    for _ in range(3):
        found = await store.get(SECRET_KEYS_PATH)
        if found is not None:
            data = json.loads(found.value)
            break
        data = {
            "jwtSecret": pysecrets.token_urlsafe(48),
            "scopedJwtSecret": pysecrets.token_urlsafe(48),
            "cookieSecret": pysecrets.token_urlsafe(48),
        }
        try:
            await store.put(SECRET_KEYS_PATH, json.dumps(data), expected_revision=0)
            break
        except Conflict:
            continue
    return ServiceSecrets(
        jwt_secret=env.get("CM_JWT_SECRET") or data["jwtSecret"],
        scoped_jwt_secret=env.get("CM_SCOPED_JWT_SECRET") or data["scopedJwtSecret"],
        cookie_secret=data.get("cookieSecret", ""),
    )


def event_routes(settings: Settings) -> Callable[[str], EventRoutes]:
    base = settings.base_url.rstrip("/") + "/api/v1/connectors"

    def routes(key: str) -> EventRoutes:
        return EventRoutes(
            credentials_route=f"{base}/internal/credentials/{key}",
            refresh_token_route=f"{base}/internal/refreshIndividualConnectorToken",
        )

    return routes


async def build_container(
    settings: Settings,
    *,
    env: dict[str, str] | None = None,
    clock: Clock | None = None,
    catalog: Catalog | None = None,
    storage: Storage | None = None,
    iam: IdentityAccess | None = None,
) -> Container:
    """Build every adapter and service the settings ask for. Pass adapters to override."""
    env = dict(os.environ if env is None else env)
    clock = clock or SystemClock()
    aead = Aead(_keyring(settings, env))
    storage = storage or _storage(settings, aead, clock)
    secrets_store = EncryptedKeyValueStore(storage.raw_kv, aead)
    catalog = (catalog or load_default_catalog()).with_custom_providers(settings.custom_providers)
    ctx = ServiceContext(
        catalog=catalog,
        uow=storage.uow,
        secrets=secrets_store,
        clock=clock,
        ids=SecureIds(),
        random=SystemRandom(),
        policy=_policy(settings),
        routes=event_routes(settings),
    )
    service_secrets = await load_service_secrets(secrets_store, env)
    checks: list[HealthCheck] = [NamedCheck("storage", True, storage.check)]
    provider = HttpxOAuthClient(timeout=settings.oauth_http_timeout_seconds)
    oauth = OAuthService(
        ctx,
        provider,
        storage.states,
        OAuthSettings(
            redirect_path=settings.oauth_redirect_path,
            allowed_redirect_origins=settings.oauth_allowed_origins,
            state_ttl=timedelta(seconds=settings.oauth_state_ttl_seconds),
            post_auth_path=settings.oauth_post_auth_path,
            legacy_redirect_uri=settings.oauth_legacy_redirect_uri,
        ),
    )
    refresher = TokenRefresher(ctx, provider, storage.lock, oauth=oauth, states=storage.states)
    container = Container(
        settings=settings,
        catalog=catalog,
        ctx=ctx,
        storage=storage,
        secrets_store=secrets_store,
        service_secrets=service_secrets,
        iam=iam or ClaimAdminIam(),
        health_checks=checks,
        connectors=ConnectorService(ctx),
        extras={"aead": aead, "closers": [provider.aclose], "oauth": oauth, "refresher": refresher},
    )
    return container


def _policy(settings: Settings) -> RefreshPolicy:
    return RefreshPolicy(margin=timedelta(seconds=settings.refresh_margin_seconds))
