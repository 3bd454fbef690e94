"""OAuth 2.0 / OpenID Connect authorization of connectors (use cases).

``authorization_url`` → the person consents at the provider → ``handle_callback`` exchanges the
code, verifies the ID token, stores the tokens and enables the connector. ``token_from_code`` is
the legacy Google route (the front end ran the consent itself), ``revoke`` disconnects
(:mod:`~connector_core.services.revocation`). Where the browser may be sent is the
:mod:`~connector_core.services.redirects` policy; the provider's URLs and the org's client come
from :mod:`~connector_core.services.providers`.

Decisions worth knowing:

* ``state`` is 256 random bits; only its SHA-256 is stored, bound to org, user, connector and
  redirect URI, usable once. A state presented by another org/user/connector is **consumed**
  (and refused): whoever holds it has already leaked it, so it must not stay replayable.
* Where the browser goes after the callback is bound to the state too: the ``baseUrl`` given to
  authorize. A callback's own ``baseUrl`` is optional here and, when given, must have that
  origin (else 400 ``baseUrl``, the state spent).
* ``state`` is always required, also with ``error``: an error callback changes the connector,
  and only a state proves the person started that authorization.
* A provider ``error`` (the person cancelled, ...) marks the connector NOT_AUTHENTICATED with the
  reason, **unless** it is authenticated with a live token: cancelling a re-consent must not
  break a connector that works.
* Tokens received but not stored (ID token invalid, no app granted) are revoked at the provider
  when it offers revocation, so no orphan grant lives on. A rejected ID token is logged at
  WARNING with the connector and the reason (never the token).
* Replacing tokens on re-authorization does not revoke the old ones: at Google, revoking any
  token of a grant revokes the whole grant, the new tokens included.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import string
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from attrs import frozen

from connector_core.catalog import CatalogEntry, OAuthSpec
from connector_core.errors import (
    DomainRuleViolation,
    IdTokenInvalid,
    InvalidState,
    OAuthError,
    PermissionDenied,
    ProviderError,
    ReauthorizationRequired,
    ValidationError,
)
from connector_core.ports.lock import LeaseLock
from connector_core.ports.oauth_provider import ClientCredentials, OAuthProviderClient
from connector_core.ports.oauth_state import OAuthStateStore, PendingAuthorization
from connector_core.scopes import ScopeMapper
from connector_core.services.authorization_outcomes import AuthorizationOutcomes
from connector_core.services.connectors import ConnectorView
from connector_core.services.context import ServiceContext
from connector_core.services.providers import ProviderResolver, ResolvedProvider
from connector_core.services.redirects import OAuthSettings, origin_of, with_query
from connector_core.services.revocation import TokenRevocation, revoke_at_provider
from connector_core.services.token_lease import BackgroundReleases, TokenLeases
from connector_core.tokens import TokenSet

__all__ = ["LEGACY_CONNECTOR", "CallbackResult", "OAuthService", "pkce_challenge", "state_hash"]

log = logging.getLogger(__name__)

#: The connector of the legacy ``POST /getTokenFromCode`` route.
LEGACY_CONNECTOR = "googleWorkspace"

_ERROR_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_PRINTABLE = frozenset(string.printable) - frozenset("\t\n\r\x0b\x0c")

#: What verifies the tokens a code exchange granted before they are stored (raises to refuse).
Verify = Callable[[TokenSet, ResolvedProvider], Awaitable[None]]


def state_hash(state: str) -> str:
    """What the state store keys a pending authorization by (the state itself is not stored)."""
    return hashlib.sha256(state.encode("utf-8")).hexdigest()


def pkce_challenge(verifier: str) -> str:
    """RFC 7636 S256 code challenge."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@frozen
class CallbackResult:
    """What the callback did. ``redirect_url`` is where the front end sends the person next
    (with ``?error=<code>`` when the provider reported an error)."""

    redirect_url: str
    authenticated: bool
    connector: ConnectorView
    reason: str | None = None


def _required(path: str) -> ValidationError:
    return ValidationError("Code and state are required", errors=[{"path": path, "message": "is required"}])


def _clean_text(text: str | None, limit: int = 200) -> str | None:
    if not text:
        return None
    cleaned = "".join(c for c in text if c in _PRINTABLE).strip()
    return cleaned[:limit] or None


class OAuthService:
    """Authorization flows of every OAuth connector of the catalog. ``lock`` holds the tokens'
    refresh leases (shared with the refresher): revocation takes a token's lease, for up to
    ``lease_wait`` seconds, and renews it (``lease_ttl``) while it works."""

    def __init__(
        self,
        ctx: ServiceContext,
        provider: OAuthProviderClient,
        states: OAuthStateStore,
        settings: OAuthSettings | None = None,
        *,
        lock: LeaseLock,
        lease_ttl: float = 60.0,
        lease_wait: float = 10.0,
    ) -> None:
        self.ctx = ctx
        self.provider = provider
        self.states = states
        self.settings = settings or OAuthSettings()
        self.providers = ProviderResolver(ctx, provider)
        self.outcomes = AuthorizationOutcomes(ctx)
        leases = TokenLeases(lock, ttl=lease_ttl, wait=lease_wait, releases=BackgroundReleases(ctx.clock))
        self.revocation = TokenRevocation(ctx, provider, self.providers, leases)

    # -- authorize ---------------------------------------------------------------------------

    async def authorization_url(self, org_id: str, user_id: str, name: str, base_url: str) -> str:
        """The provider URL to send the person to. Stores a single-use pending authorization
        (state hash, PKCE verifier, nonce) that expires after ``settings.state_ttl``."""
        entry = self.providers.oauth_entry(name)
        redirect_uri = self.settings.redirect_uri(self.settings.checked_base(base_url), entry.key)
        resolved = await self._resolve(org_id, entry)
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
        return with_query(spec.authorize_url, params)

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
        entry = self.providers.oauth_entry(name)
        if not state:
            raise _required("state")
        if not error and not code:
            raise _required("code")
        if base_url:
            self.settings.checked_base(base_url)  # a malformed or foreign one spends no state
        pending = await self._take_pending(state, org_id, user_id, entry)
        # Where the person goes next is bound to the state: the base the authorization was
        # started with. A caller's baseUrl (the existing clients send one) may only repeat it.
        base = self.settings.base_of(pending.redirect_uri, entry.key)
        if base_url and origin_of(base_url) != origin_of(base):
            log.warning(
                "OAuth callback with another baseUrl than its state's (state spent): org=%s connector=%s",
                org_id,
                entry.key,
            )
            raise ValidationError.for_field(
                "baseUrl",
                "is not the origin the authorization was started from; send the baseUrl given to authorize"
                " (or none), and start the authorization again: this state is spent",
            )
        target = self.settings.post_auth_url(base, entry.key)
        if error:
            return await self._refused(entry, org_id, user_id, error, error_description, target)
        assert code is not None

        async def verify(tokens: TokenSet, resolved: ResolvedProvider) -> None:
            if tokens.id_token is not None:
                await self.provider.verify_id_token(
                    resolved.spec, id_token=tokens.id_token, client_id=resolved.client.client_id, nonce=pending.nonce
                )
            elif pending.nonce is not None:
                raise IdTokenInvalid("the provider returned no ID token although 'openid' was requested")

        view, _, apps = await self._complete(
            entry, org_id, user_id, code, pending.redirect_uri, pending.code_verifier, pending.scopes, verify
        )
        log.info("OAuth authorization completed: org=%s connector=%s apps=%s", org_id, entry.key, ",".join(apps))
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
        entry = self.providers.oauth_entry(LEGACY_CONNECTOR)
        if self.settings.legacy_redirect_uri:
            redirect_uri = self.settings.legacy_redirect_uri
        elif base_url:
            redirect_uri = self.settings.redirect_uri(self.settings.checked_base(base_url), entry.key)
        else:
            raise ValidationError.for_field("baseUrl", "is required (no legacy redirect URI is configured)")

        async def verify(tokens: TokenSet, resolved: ResolvedProvider) -> None:
            if tokens.id_token is None:
                raise IdTokenInvalid("the provider returned no ID token, so the account cannot be checked")
            claims = await self.provider.verify_id_token(
                resolved.spec, id_token=tokens.id_token, client_id=resolved.client.client_id, nonce=None
            )
            claimed = claims.get("email")
            if (
                not isinstance(claimed, str)
                or claimed.strip().casefold() != email.strip().casefold()
                or claims.get("email_verified") is False
            ):
                raise PermissionDenied("Account email is different from the consent-giving mail.")

        scopes = ScopeMapper(entry).default_scopes()
        view, created, _ = await self._complete(entry, org_id, user_id, temp_code, redirect_uri, None, scopes, verify)
        log.info("OAuth code exchanged (legacy route): org=%s connector=%s created=%s", org_id, entry.key, created)
        return view, created

    # -- revoke and provider access (also used by the refresher) -------------------------------

    async def revoke(self, org_id: str, user_id: str, name: str) -> ConnectorView:
        """See :meth:`TokenRevocation.revoke`."""
        return await self.revocation.revoke(org_id, user_id, name)

    async def client_credentials(self, org_id: str, key: str) -> ClientCredentials:
        return await self.providers.client_credentials(org_id, key)

    async def resolve_provider(self, org_id: str, key: str) -> ResolvedProvider:
        return await self.providers.resolve_provider(org_id, key)

    # -- helpers -----------------------------------------------------------------------------

    async def _resolve(self, org_id: str, entry: CatalogEntry) -> ResolvedProvider:
        connector = await self.providers.load_connector(org_id, entry)
        self.providers.require_oauth(entry, connector)
        return await self.providers.resolve(org_id, entry, connector)

    async def _complete(
        self,
        entry: CatalogEntry,
        org_id: str,
        user_id: str,
        code: str,
        redirect_uri: str,
        code_verifier: str | None,
        requested: Iterable[str],
        verify: Verify,
    ) -> tuple[ConnectorView, bool, tuple[str, ...]]:
        """Exchange ``code`` (once, outside any retry) → ``verify`` → store. Tokens received
        but refused are revoked at the provider. Returns the view, whether the token record is
        new, and the granted apps."""
        resolved = await self._resolve(org_id, entry)
        spec, client = resolved.spec, resolved.client
        response = await _exchange(
            self.provider.exchange_code(spec, client, code=code, redirect_uri=redirect_uri, code_verifier=code_verifier)
        )
        tokens = self._token_set(response, spec, requested)
        try:
            await verify(tokens, resolved)
            apps = ScopeMapper(entry).apps_for(tokens.scopes)
            if not apps:
                raise DomainRuleViolation(
                    f"none of the granted scopes gives access to an app of {entry.display_name}",
                    metadata={"connector": entry.key, "grantedScopes": sorted(tokens.scopes)},
                )
            view, created = await self.outcomes.granted(entry, org_id, user_id, tokens, apps)
        except (IdTokenInvalid, PermissionDenied, DomainRuleViolation) as refused:  # nothing was stored
            if isinstance(refused, IdTokenInvalid):
                log.warning("ID token rejected: org=%s connector=%s (%s)", org_id, entry.key, refused.message)
            await revoke_at_provider(self.provider, spec, client, tokens, org_id=org_id, key=entry.key)
            raise
        return view, created, apps

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

    async def _refused(
        self, entry: CatalogEntry, org_id: str, user_id: str, error: str, description: str | None, target: str
    ) -> CallbackResult:
        code = error if _ERROR_CODE.match(error) else "authorization_failed"
        detail = _clean_text(description)
        reason = f"authorization failed: {code}" + (f" ({detail})" if detail else "")
        view = await self.outcomes.refused(entry, org_id, user_id, reason)
        log.info("OAuth authorization refused: org=%s connector=%s error=%s", org_id, entry.key, code)
        return CallbackResult(
            redirect_url=with_query(target, {"error": code}), authenticated=False, connector=view, reason=reason
        )


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
