"""OAuth 2.0 / OpenID Connect authorization of connectors (use cases).

``authorization_url`` → the person consents at the provider → ``handle_callback`` exchanges the
code, verifies the ID token, stores the tokens and enables the connector. ``token_from_code`` is
the legacy Google route (the front end ran the consent itself), ``revoke`` disconnects.

Decisions worth knowing:

* ``state`` is 256 random bits; only its SHA-256 is stored, bound to org, user, connector and
  redirect URI, usable once. A state presented by another org/user/connector is **consumed**
  (and refused): whoever holds it has already leaked it, so it must not stay replayable.
* ``state`` is always required, also with ``error``: an error callback changes the connector,
  and only a state proves the person started that authorization.
* A provider ``error`` (the person cancelled, ...) marks the connector NOT_AUTHENTICATED with the
  reason, **unless** it is authenticated with a live token: cancelling a re-consent must not
  break a connector that works.
* Tokens received but not stored (ID token invalid, no app granted) are revoked at the provider
  when it offers revocation, so no orphan grant lives on.
* Replacing tokens on re-authorization does not revoke the old ones: at Google, revoking any
  token of a grant revokes the whole grant, the new tokens included.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import re
import string
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

from attrs import evolve, field, frozen

from connector_core.catalog import CatalogEntry, OAuthSpec
from connector_core.errors import (
    Conflict,
    ConnectorManagerError,
    DomainRuleViolation,
    IdTokenInvalid,
    InvalidState,
    NotConfigured,
    OAuthError,
    PermissionDenied,
    ProviderError,
    ReauthorizationRequired,
    ValidationError,
)
from connector_core.model.connector import AuthState, Connector
from connector_core.model.events import DomainEvent, SyncAction
from connector_core.ports.lock import Lease, LeaseLock
from connector_core.ports.oauth_provider import ClientCredentials, OAuthProviderClient
from connector_core.ports.oauth_state import OAuthStateStore, PendingAuthorization
from connector_core.scopes import ScopeMapper
from connector_core.services.connectors import ConnectorView
from connector_core.services.context import ServiceContext, read_secrets
from connector_core.services.revocation import revoke_at_provider
from connector_core.services.staging import stage_connector
from connector_core.tokens import TokenRecord, TokenSet, TokenStatus

__all__ = [
    "LEGACY_CONNECTOR",
    "CallbackResult",
    "OAuthService",
    "OAuthSettings",
    "ResolvedProvider",
    "pkce_challenge",
    "state_hash",
]

log = logging.getLogger(__name__)

#: The connector of the legacy ``POST /getTokenFromCode`` route.
LEGACY_CONNECTOR = "googleWorkspace"
WELL_KNOWN_SUFFIX = "/.well-known/openid-configuration"

_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_URL_PARAM_VALUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_ERROR_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_PRINTABLE = frozenset(string.printable) - frozenset("\t\n\r\x0b\x0c")


def state_hash(state: str) -> str:
    """What the state store keys a pending authorization by (the state itself is not stored)."""
    return hashlib.sha256(state.encode("utf-8")).hexdigest()


def pkce_challenge(verifier: str) -> str:
    """RFC 7636 S256 code challenge."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


# -- redirect origins ------------------------------------------------------------------------

_Origin = tuple[str, str, int]


def _origin(url: str, path: str, *, allow_path: bool = True) -> _Origin:
    """``(scheme, host, port)`` of an absolute http(s) URL, else :class:`ValidationError`."""

    def bad(why: str) -> ValidationError:
        return ValidationError.for_field(path, why)

    if not isinstance(url, str) or not url or len(url) > 2048:
        raise bad("must be an absolute http(s) URL of at most 2048 characters")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F or c == "\\" for c in url):
        raise bad("must not contain whitespace, control characters or backslashes")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.netloc:
        raise bad("must be an absolute http(s) URL")
    if "@" in parts.netloc:
        raise bad("must not contain user information")
    if "#" in url:
        raise bad("must not contain a fragment")
    if "?" in url:
        raise bad("must not contain a query")
    if not allow_path and parts.path not in ("", "/"):
        raise bad("must be an origin (scheme://host[:port]) without a path")
    host = parts.hostname
    if not host:
        raise bad("must name a host")
    try:
        port = parts.port
    except ValueError:
        raise bad("has an invalid port") from None
    return scheme, host, port or _DEFAULT_PORTS[scheme]


def _check_origins(instance: Any, attribute: Any, value: tuple[str, ...]) -> None:
    for i, origin in enumerate(value):
        _origin(origin, f"allowed_redirect_origins[{i}]", allow_path=False)


def _to_tuple(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


@frozen
class OAuthSettings:
    """Where the OAuth dance sends the browser.

    ``redirect_path`` and ``post_auth_path`` are appended to the caller's ``baseUrl``
    (``{connector}`` becomes the catalog key). ``allowed_redirect_origins`` lists the origins
    (``scheme://host[:port]``) a ``baseUrl`` may have; empty allows only ``http://localhost``
    and ``http://127.0.0.1`` on any port. ``legacy_redirect_uri`` is the redirect URI the front
    end used for ``POST /getTokenFromCode`` (e.g. Google's ``postmessage``); when unset, the
    caller's ``baseUrl`` + ``redirect_path`` is used.
    """

    redirect_path: str = "/connectors/oauth/callback/{connector}"
    allowed_redirect_origins: tuple[str, ...] = field(default=(), converter=_to_tuple, validator=_check_origins)
    state_ttl: timedelta = timedelta(minutes=10)
    post_auth_path: str = "/connectors/{connector}"
    legacy_redirect_uri: str | None = None

    def allows(self, origin: _Origin) -> bool:
        scheme, host, _ = origin
        if not self.allowed_redirect_origins:
            return scheme == "http" and host in _LOCAL_HOSTS
        return any(
            _origin(o, "allowed_redirect_origins", allow_path=False) == origin for o in self.allowed_redirect_origins
        )


# -- results ---------------------------------------------------------------------------------


@frozen
class CallbackResult:
    """What the callback did. ``redirect_url`` is where the front end sends the person next
    (with ``?error=<code>`` when the provider reported an error)."""

    redirect_url: str
    authenticated: bool
    connector: ConnectorView
    reason: str | None = None


@frozen
class ResolvedProvider:
    """One org's view of a provider: URLs filled in (tenant, discovery) and its client."""

    spec: OAuthSpec
    client: ClientCredentials


def _required(path: str) -> ValidationError:
    return ValidationError("Code and state are required", errors=[{"path": path, "message": "is required"}])


def _clean_error_code(error: str) -> str:
    return error if _ERROR_CODE.match(error) else "authorization_failed"


def _clean_text(text: str | None, limit: int = 200) -> str | None:
    if not text:
        return None
    cleaned = "".join(c for c in text if c in _PRINTABLE).strip()
    return cleaned[:limit] or None


def _with_query(url: str, params: dict[str, str]) -> str:
    return f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"


class OAuthService:
    """Authorization flows of every OAuth connector of the catalog."""

    def __init__(
        self,
        ctx: ServiceContext,
        provider: OAuthProviderClient,
        states: OAuthStateStore,
        settings: OAuthSettings | None = None,
        *,
        lock: LeaseLock | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        lease_wait: float = 10.0,
    ) -> None:
        self.ctx = ctx
        self.provider = provider
        self.states = states
        self.settings = settings or OAuthSettings()
        #: the refresher's leases: revocation holds a token's lease, so no refresh can mint a
        #: token between the provider's revocation and the local delete
        self.lock = lock
        self._sleep = sleep
        self.lease_wait = lease_wait

    # -- authorize ---------------------------------------------------------------------------

    async def authorization_url(self, org_id: str, user_id: str, name: str, base_url: str) -> str:
        """The provider URL to send the person to. Stores a single-use pending authorization
        (state hash, PKCE verifier, nonce) that expires after ``settings.state_ttl``."""
        entry = self._oauth_entry(name)
        redirect_uri = self._base(base_url) + self._path(self.settings.redirect_path, entry)
        connector = await self._load_connector(org_id, entry)
        self._require_oauth(entry, connector)
        resolved = await self._resolve(org_id, entry, connector)
        spec = resolved.spec
        scopes = ScopeMapper(entry).default_scopes()
        state = self.ctx.ids.secret_token(32)
        verifier = self.ctx.ids.secret_token(48) if spec.pkce else None
        nonce = self.ctx.ids.secret_token(32) if "openid" in scopes else None
        await self.states.put(
            PendingAuthorization(
                state_hash=state_hash(state),
                org_id=org_id,
                user_id=user_id,
                connector_key=entry.key,
                redirect_uri=redirect_uri,
                expires_at=self.ctx.clock.now() + self.settings.state_ttl,
                code_verifier=verifier,
                nonce=nonce,
                scopes=tuple(scopes),
            )
        )
        params: dict[str, str] = {
            "response_type": "code",
            "client_id": resolved.client.client_id,
            "redirect_uri": redirect_uri,
        }
        if scopes:
            params["scope"] = spec.scope_separator.join(scopes)
        params["state"] = state
        if verifier is not None:
            params["code_challenge"] = pkce_challenge(verifier)
            params["code_challenge_method"] = "S256"
        if nonce is not None:
            params["nonce"] = nonce
        for key, value in spec.extra_authorize_params.items():
            params.setdefault(key, value)  # never let catalog data override the core params
        log.info("OAuth authorization started: org=%s connector=%s", org_id, entry.key)
        return _with_query(spec.authorize_url, params)

    # -- callback ----------------------------------------------------------------------------

    async def handle_callback(
        self,
        org_id: str,
        user_id: str,
        name: str,
        *,
        code: str | None = None,
        state: str | None = None,
        error: str | None = None,
        error_description: str | None = None,
        base_url: str | None = None,
    ) -> CallbackResult:
        """Finish an authorization. ``state`` is required; ``code`` unless ``error`` is given.

        Unknown, expired, reused or foreign state → :class:`InvalidState` (and the state is
        spent). The code exchange runs once, outside any retry; the connector, its token
        record and all their events are stored in one unit of work.
        """
        entry = self._oauth_entry(name)
        if not state:
            raise _required("state")
        if not error and not code:
            raise _required("code")
        base = self._base(base_url) if base_url else None
        pending = await self._take_pending(state, org_id, user_id, entry)
        base = base or self._base_of(pending.redirect_uri, entry)
        target = base + self._path(self.settings.post_auth_path, entry)
        if error:
            return await self._record_refusal(entry, org_id, user_id, error, error_description, target)
        assert code is not None
        connector = await self._load_connector(org_id, entry)
        self._require_oauth(entry, connector)
        resolved = await self._resolve(org_id, entry, connector)
        spec, client = resolved.spec, resolved.client
        response = await _exchange(
            self.provider.exchange_code(
                spec,
                client,
                code=code,
                redirect_uri=pending.redirect_uri,
                code_verifier=pending.code_verifier,
            )
        )
        tokens = self._token_set(response, spec, pending.scopes)
        try:
            if tokens.id_token is not None:
                await self.provider.verify_id_token(
                    spec, id_token=tokens.id_token, client_id=client.client_id, nonce=pending.nonce
                )
            elif pending.nonce is not None:
                raise IdTokenInvalid("the provider returned no ID token although 'openid' was requested")
            apps = self._granted_apps(entry, tokens)
            view, _ = await self._store_authorization(entry, org_id, user_id, tokens, apps)
        except (IdTokenInvalid, DomainRuleViolation):  # refused before anything was stored
            await self._revoke_at_provider(spec, client, tokens, org_id, entry.key)
            raise
        log.info(
            "OAuth authorization completed: org=%s connector=%s apps=%s",
            org_id,
            entry.key,
            ",".join(apps),
        )
        return CallbackResult(redirect_url=target, authenticated=True, connector=view)

    # -- legacy Google route -----------------------------------------------------------------

    async def token_from_code(
        self,
        org_id: str,
        user_id: str,
        email: str,
        temp_code: str,
        base_url: str | None = None,
    ) -> tuple[ConnectorView, bool]:
        """``POST /getTokenFromCode``: exchange a Google code the front end obtained itself.

        The redirect URI is ``settings.legacy_redirect_uri`` when set, else ``base_url`` +
        ``redirect_path`` (``base_url`` is then required and must pass the origin allow-list).
        The ID token is verified (signature, ``iss``, ``aud``, ``exp``) and its ``email`` must
        equal ``email`` (case-insensitively), else :class:`PermissionDenied`. Returns the view
        and whether the connector had no stored token before (201 vs 200).
        """
        if not temp_code:
            raise ValidationError.for_field("tempCode", "is required")
        entry = self._oauth_entry(LEGACY_CONNECTOR)
        if self.settings.legacy_redirect_uri:
            redirect_uri = self.settings.legacy_redirect_uri
        elif base_url:
            redirect_uri = self._base(base_url) + self._path(self.settings.redirect_path, entry)
        else:
            raise ValidationError.for_field("baseUrl", "is required (no legacy redirect URI is configured)")
        connector = await self._load_connector(org_id, entry)
        self._require_oauth(entry, connector)
        resolved = await self._resolve(org_id, entry, connector)
        spec, client = resolved.spec, resolved.client
        response = await _exchange(
            self.provider.exchange_code(spec, client, code=temp_code, redirect_uri=redirect_uri, code_verifier=None)
        )
        tokens = self._token_set(response, spec, ScopeMapper(entry).default_scopes())
        try:
            if tokens.id_token is None:
                raise IdTokenInvalid("the provider returned no ID token, so the account cannot be checked")
            claims = await self.provider.verify_id_token(
                spec, id_token=tokens.id_token, client_id=client.client_id, nonce=None
            )
            claimed = claims.get("email")
            if (
                not isinstance(claimed, str)
                or claimed.strip().casefold() != email.strip().casefold()
                or claims.get("email_verified") is False
            ):
                raise PermissionDenied("Account email is different from the consent-giving mail.")
            apps = self._granted_apps(entry, tokens)
            view, created = await self._store_authorization(entry, org_id, user_id, tokens, apps)
        except (IdTokenInvalid, PermissionDenied, DomainRuleViolation):
            await self._revoke_at_provider(spec, client, tokens, org_id, entry.key)
            raise
        log.info(
            "OAuth code exchanged (legacy route): org=%s connector=%s created=%s",
            org_id,
            entry.key,
            created,
        )
        return view, created

    # -- revoke ------------------------------------------------------------------------------

    async def revoke(self, org_id: str, user_id: str, name: str) -> ConnectorView:
        """Disconnect: revoke at the provider (RFC 7009, when offered: refresh token, then
        access token; failures are logged and do not stop the rest), delete the token record
        (TOKEN_REVOKED) and mark the connector NOT_AUTHENTICATED (which disables it)."""
        entry = self._oauth_entry(name)
        async with self.ctx.uow() as uow:
            connector = await uow.connectors.get(org_id, entry.key)
            record = await uow.tokens.get_for_connector(org_id, entry.key)
        if connector is None and record is None:
            return ConnectorView(entry, self._blank(entry, org_id))
        lease = None
        if record is not None and self.lock is not None:
            lease = await self._refresh_lease(record.id)
        try:
            return await self._revoke(org_id, user_id, entry, connector, record)
        finally:
            if lease is not None and self.lock is not None:
                with contextlib.suppress(ConnectorManagerError):
                    await self.lock.release(lease)

    async def _refresh_lease(self, token_id: str) -> Lease:
        assert self.lock is not None
        waited = 0.0
        while True:
            lease = await self.lock.acquire(f"token-refresh:{token_id}", max(30.0, self.lease_wait * 3))
            if lease is not None:
                return lease
            if waited >= self.lease_wait:
                raise Conflict("a refresh of this token is running; retry the revocation shortly")
            await self._sleep(0.2)
            waited += 0.2

    async def _revoke(
        self,
        org_id: str,
        user_id: str,
        entry: CatalogEntry,
        connector: Connector | None,
        record: TokenRecord | None,
    ) -> ConnectorView:
        if record is not None:
            # under the lease: the tokens as they are now (a refresh may have rotated them)
            async with self.ctx.uow() as uow:
                record = await uow.tokens.get_for_connector(org_id, entry.key)
        if record is not None:
            try:
                resolved = await self._resolve(org_id, entry, connector)
            except ConnectorManagerError as exc:
                log.warning(
                    "cannot revoke at the provider: org=%s connector=%s (%s: %s)",
                    org_id,
                    entry.key,
                    type(exc).__name__,
                    exc.message,
                )
            else:
                await self._revoke_at_provider(resolved.spec, resolved.client, record.tokens, org_id, entry.key)
        reason = f"revoked by {user_id}"

        async def op() -> ConnectorView:
            async with self.ctx.uow() as uow:
                now = self.ctx.clock.now()
                events: list[DomainEvent] = []
                connector = await uow.connectors.get(org_id, entry.key)
                if connector is not None:
                    connector.mark_not_authenticated(reason, now=now, ids=self.ctx.ids, by=user_id)
                    events += await stage_connector(uow, connector, self.ctx)
                record = await uow.tokens.get_for_connector(org_id, entry.key)
                if record is not None:
                    record.revoke(now=now, ids=self.ctx.ids)
                    events += record.pull_events()
                    await uow.tokens.delete(record)
                await uow.outbox.add(events)
                await uow.commit()
            return ConnectorView(entry, connector or self._blank(entry, org_id))

        view = await self.ctx.retry_on_conflict(op)
        log.info("OAuth tokens revoked: org=%s connector=%s", org_id, entry.key)
        return view

    # -- provider access (also used by the refresher) -----------------------------------------

    async def client_credentials(self, org_id: str, key: str) -> ClientCredentials:
        """The org's OAuth client of connector ``key``, else :class:`NotConfigured`."""
        entry = self._oauth_entry(key)
        connector = await self._load_connector(org_id, entry)
        return await self._client(org_id, entry, connector)

    async def resolve_provider(self, org_id: str, key: str) -> ResolvedProvider:
        """The provider's URLs for this org (tenant filled in, OIDC discovery applied) and the
        org's client credentials."""
        entry = self._oauth_entry(key)
        connector = await self._load_connector(org_id, entry)
        return await self._resolve(org_id, entry, connector)

    # -- helpers -----------------------------------------------------------------------------

    def _oauth_entry(self, name: str) -> CatalogEntry:
        entry = self.ctx.catalog.get(name)
        if entry.oauth is None:
            raise ValidationError.for_field("connector", f"{entry.display_name} does not support OAuth authorization")
        return entry

    @staticmethod
    def _require_oauth(entry: CatalogEntry, connector: Connector | None) -> None:
        if connector is not None and not connector.uses_oauth:
            raise DomainRuleViolation(
                f"{entry.display_name} is configured for {connector.auth_type} authentication;"
                " set authType to OAUTH to authorize it with OAuth",
                metadata={"connector": entry.key},
            )

    def _base(self, base_url: str) -> str:
        """The caller's base URL, checked against the origin allow-list (no open redirects)."""
        origin = _origin(base_url, "baseUrl")
        if not self.settings.allows(origin):
            raise ValidationError.for_field("baseUrl", "origin is not allowed as an OAuth redirect target")
        return base_url.rstrip("/")

    def _base_of(self, redirect_uri: str, entry: CatalogEntry) -> str:
        suffix = self._path(self.settings.redirect_path, entry)
        return redirect_uri[: -len(suffix)] if redirect_uri.endswith(suffix) else redirect_uri

    @staticmethod
    def _path(template: str, entry: CatalogEntry) -> str:
        path = template.replace("{connector}", entry.key)
        return path if path.startswith("/") else f"/{path}"

    async def _load_connector(self, org_id: str, entry: CatalogEntry) -> Connector | None:
        async with self.ctx.uow() as uow:
            return await uow.connectors.get(org_id, entry.key)

    async def _client(self, org_id: str, entry: CatalogEntry, connector: Connector | None) -> ClientCredentials:
        assert entry.oauth is not None
        auth = connector.config.auth if connector is not None else {}
        client_id = auth.get("clientId")
        secrets = await read_secrets(self.ctx.secrets, entry.key, org_id)
        client_secret = secrets.get("auth.clientSecret")
        missing = [
            path
            for path, present in (
                ("auth.clientId", isinstance(client_id, str) and bool(client_id)),
                ("auth.clientSecret", bool(client_secret)),
                *((f"auth.{p}", bool(auth.get(p))) for p in entry.oauth.url_params),
            )
            if not present
        ]
        # Every catalog requirement of OAuth (e.g. SharePoint's domain) is checked before the
        # person is sent to the provider, not after their consent.
        if connector is not None:
            missing += [
                p
                for p in entry.requirements_for("OAUTH")
                if p not in missing and not connector.config.has(p) and p != "auth.clientSecret"
            ]
        if missing:
            raise NotConfigured(
                f"{entry.display_name} cannot be authorized: missing {', '.join(missing)}",
                metadata={"connector": entry.key, "missing": missing},
            )
        for param in entry.oauth.url_params:
            if not _URL_PARAM_VALUE.match(str(auth.get(param))):
                raise ValidationError.for_field(f"auth.{param}", "has characters not allowed")
        assert client_secret is not None
        return ClientCredentials(client_id=str(client_id), client_secret=client_secret)

    async def _resolve(self, org_id: str, entry: CatalogEntry, connector: Connector | None) -> ResolvedProvider:
        assert entry.oauth is not None
        client = await self._client(org_id, entry, connector)
        auth = connector.config.auth if connector is not None else {}
        spec = await self._discovered(entry.oauth.resolve(auth))
        return ResolvedProvider(spec=spec, client=client)

    async def _discovered(self, spec: OAuthSpec) -> OAuthSpec:
        """Fill the endpoints the catalog leaves empty from the OIDC discovery document."""
        if not spec.discovery_url:
            return spec
        issuer = spec.issuer or spec.discovery_url.removesuffix(WELL_KNOWN_SUFFIX)
        doc = await self.provider.discover(issuer)

        def pick(current: str | None, key: str) -> str | None:
            found = doc.get(key)
            return current or (found if isinstance(found, str) and found else None)

        filled = evolve(
            spec,
            authorize_url=pick(spec.authorize_url, "authorization_endpoint") or "",
            token_url=pick(spec.token_url, "token_endpoint") or "",
            revocation_url=pick(spec.revocation_url, "revocation_endpoint"),
            jwks_uri=pick(spec.jwks_uri, "jwks_uri"),
            issuer=pick(spec.issuer, "issuer"),
        )
        if not filled.authorize_url or not filled.token_url:
            raise ProviderError("the provider's discovery document lacks its endpoints")
        return filled

    async def _take_pending(self, state: str, org_id: str, user_id: str, entry: CatalogEntry) -> PendingAuthorization:
        pending = await self.states.take(state_hash(state))
        refused = InvalidState("The authorization request is unknown, expired or was already used; start again.")
        if pending is None:
            raise refused
        if pending.expires_at <= self.ctx.clock.now():
            raise refused
        # Not secrets (ids), so a plain comparison; the state itself was matched by its hash.
        if (pending.org_id, pending.user_id, pending.connector_key) != (org_id, user_id, entry.key):
            log.warning(
                "OAuth state presented outside its binding (consumed): org=%s connector=%s",
                org_id,
                entry.key,
            )
            raise refused
        return pending

    def _token_set(self, response: Mapping[str, Any], spec: OAuthSpec, requested: Iterable[str]) -> TokenSet:
        try:
            return TokenSet.from_token_response(
                response,
                now=self.ctx.clock.now(),
                scope_separator=spec.scope_separator,
                requested_scopes=requested,
            )
        except ValidationError:
            raise ProviderError("the token endpoint answered without an access token") from None

    @staticmethod
    def _granted_apps(entry: CatalogEntry, tokens: TokenSet) -> tuple[str, ...]:
        apps = ScopeMapper(entry).apps_for(tokens.scopes)
        if not apps:
            raise DomainRuleViolation(
                f"none of the granted scopes gives access to an app of {entry.display_name}",
                metadata={"connector": entry.key, "grantedScopes": sorted(tokens.scopes)},
            )
        return apps

    async def _store_authorization(
        self,
        entry: CatalogEntry,
        org_id: str,
        user_id: str,
        tokens: TokenSet,
        apps: tuple[str, ...],
    ) -> tuple[ConnectorView, bool]:
        async def op() -> tuple[ConnectorView, bool]:
            async with self.ctx.uow() as uow:
                now = self.ctx.clock.now()
                connector = await uow.connectors.get(org_id, entry.key) or Connector.create(
                    entry,
                    org_id=org_id,
                    connector_id=self.ctx.ids.new_id(),
                    now=now,
                    by=user_id,
                )
                connector.record_authorization(
                    entry,
                    apps,
                    by=user_id,
                    now=now,
                    ids=self.ctx.ids,
                    sync_action=SyncAction.IMMEDIATE,
                    routes=self.ctx.routes(entry.key),
                )
                record = await uow.tokens.get_for_connector(org_id, entry.key)
                created = record is None
                if record is None:
                    record = TokenRecord.create(
                        token_id=self.ctx.ids.new_id(),
                        org_id=org_id,
                        connector_key=entry.key,
                        account_id=user_id,
                        service_type=entry.token_service_type,
                        tokens=tokens,
                        lifecycle=self.ctx.lifecycle,
                        now=now,
                        ids=self.ctx.ids,
                    )
                    await uow.tokens.add(record)
                else:
                    record.replace_tokens(
                        tokens,
                        lifecycle=self.ctx.lifecycle,
                        now=now,
                        ids=self.ctx.ids,
                        account_id=user_id,
                    )
                    await uow.tokens.save(record)
                events = await stage_connector(uow, connector, self.ctx)
                await uow.outbox.add([*events, *record.pull_events()])
                await uow.commit()
            return ConnectorView(entry, connector), created

        return await self.ctx.retry_on_conflict(op)

    async def _record_refusal(
        self,
        entry: CatalogEntry,
        org_id: str,
        user_id: str,
        error: str,
        description: str | None,
        target: str,
    ) -> CallbackResult:
        code = _clean_error_code(error)
        detail = _clean_text(description)
        reason = f"authorization failed: {code}" + (f" ({detail})" if detail else "")

        async def op() -> ConnectorView:
            async with self.ctx.uow() as uow:
                connector = await uow.connectors.get(org_id, entry.key)
                if connector is None:
                    return ConnectorView(entry, self._blank(entry, org_id))
                record = await uow.tokens.get_for_connector(org_id, entry.key)
                working = (
                    connector.auth_status.state == AuthState.AUTHENTICATED
                    and record is not None
                    and record.status == TokenStatus.ACTIVE
                )
                if not working:
                    connector.mark_not_authenticated(reason, now=self.ctx.clock.now(), ids=self.ctx.ids, by=user_id)
                    await uow.outbox.add(await stage_connector(uow, connector, self.ctx))
                    await uow.commit()
            return ConnectorView(entry, connector)

        view = await self.ctx.retry_on_conflict(op)
        log.info("OAuth authorization refused: org=%s connector=%s error=%s", org_id, entry.key, code)
        return CallbackResult(
            redirect_url=_with_query(target, {"error": code}),
            authenticated=False,
            connector=view,
            reason=reason,
        )

    async def _revoke_at_provider(
        self,
        spec: OAuthSpec,
        client: ClientCredentials,
        tokens: TokenSet,
        org_id: str,
        key: str,
    ) -> None:
        await revoke_at_provider(self.provider, spec, client, tokens, org_id=org_id, key=key)

    def _blank(self, entry: CatalogEntry, org_id: str) -> Connector:
        return Connector.create(entry, org_id=org_id, connector_id="", now=self.ctx.clock.now(), by=None)


async def _exchange(call: Awaitable[Mapping[str, Any]]) -> Mapping[str, Any]:
    """A code the provider refuses (invalid_grant: expired, reused, wrong redirect or verifier)
    is the caller's input at fault (400), not a grant that needs re-authorization."""
    try:
        return await call
    except ReauthorizationRequired as exc:
        raise OAuthError(
            f"the provider refused the authorization code ({exc.error_code or 'error'}); start the authorization again",
            metadata={"providerError": exc.error_code} if exc.error_code else None,
        ) from None
