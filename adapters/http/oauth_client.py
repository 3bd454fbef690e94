"""The OAuth provider client port over HTTP with httpx: token, revocation, JWKS, discovery.

Every failure is translated here, in one place (``_send`` for every httpx error, ``_failure``
for answers), into the core's errors: network errors, timeouts, answers httpx cannot decode,
5xx and 429 become :class:`RetryableProviderError` (``Retry-After`` parsed),
``invalid_grant`` and kin :class:`ReauthorizationRequired`, other answers
:class:`ProviderError` (see :func:`connector_core.tokens.classify_token_error`). ID tokens are
verified with PyJWT against the provider's JWKS (RS256/ES256 only). No message and no log line
carries a token, a code or a client secret: form bodies are never logged, and provider error
texts are reduced to their ``error`` code.
"""

from __future__ import annotations

import base64
import email.utils
import hmac
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote_plus, urlsplit

import httpx
import jwt

from adapters.http.httpx_errors import HTTPX_ERRORS
from adapters.http.provider_client import ProviderHttpClient
from adapters.lru import LruCache, SingleFlight
from connector_core.catalog import OAuthSpec
from connector_core.errors import (
    IdTokenInvalid,
    ProviderError,
    RetryableProviderError,
    ValidationError,
)
from connector_core.ports.oauth_provider import ClientCredentials
from connector_core.services.providers import WELL_KNOWN_SUFFIX
from connector_core.tokens import classify_token_error

__all__ = ["ACCEPTED_ID_TOKEN_ALGORITHMS", "POOL_LIMITS", "HttpxOAuthClient", "parse_retry_after"]

log = logging.getLogger(__name__)

#: the owned client's pool keeps as many idle connections as it may open: httpcore 1.0 closes an
#: idle one whenever the pool holds more than ``max_keepalive_connections`` (default 20) in all,
#: so refreshing at a higher concurrency reconnected all the time. Idle ones close after 5 s.
POOL_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=100, keepalive_expiry=5.0)

#: Asymmetric signatures only: never ``none``, never HS* (a client secret is not a signing key).
#: in an issuer, stands for the tenant id the token itself names (claim ``tid``)
TENANT_PLACEHOLDER = "{tenantid}"

ACCEPTED_ID_TOKEN_ALGORITHMS = {"RS256": "RSA", "ES256": "EC"}
MAX_RETRY_AFTER_SECONDS = 24 * 3600.0
_ERROR_CODE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or HTTP-date), capped at a
    day; ``None`` when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _safe_url(url: str) -> str:
    """Scheme, host and path only: what may appear in logs and messages."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"


def _error_code(body: Mapping[str, Any] | None) -> str | None:
    """The OAuth ``error`` field when it looks like one (provider text is not echoed)."""
    if not body:
        return None
    code = body.get("error")
    if isinstance(code, str) and _ERROR_CODE.match(code):
        return code
    return "invalid_error_field" if code else None


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


class HttpxOAuthClient:
    """:class:`~connector_core.ports.oauth_provider.OAuthProviderClient` over httpx.

    ``client``: a shared :class:`httpx.AsyncClient` (not closed by :meth:`aclose`); by default
    one is created and owned. ``timeout`` applies to every request. JWKS and discovery
    documents are cached per URL for ``jwks_ttl`` seconds; an unknown ``kid`` refetches the
    JWKS once (at most every ``jwks_refetch_interval`` seconds). At most
    ``max_cached_documents`` JWKS and as many discovery documents are kept (one per tenant for
    Microsoft; the least recently used goes first). ``leeway`` seconds of clock skew are
    tolerated on ``exp``/``iat``.
    """

    def __init__(
        self,
        client: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
        jwks_ttl: float = 3600.0,
        *,
        jwks_refetch_interval: float = 10.0,
        leeway: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
        max_cached_documents: int = 256,
    ) -> None:
        self._owns_client = client is None
        self._http = client or ProviderHttpClient(timeout=timeout, limits=POOL_LIMITS)
        self._timeout = timeout
        self._jwks_ttl = jwks_ttl
        self._refetch_interval = jwks_refetch_interval
        self._leeway = leeway
        self._monotonic = monotonic
        # per issuer / JWKS URL, i.e. per Microsoft tenant: bounded, least recently used dropped
        self._jwks: LruCache[str, tuple[float, jwt.PyJWKSet]] = LruCache(max_cached_documents)
        self._discovery: LruCache[str, tuple[float, dict[str, Any]]] = LruCache(max_cached_documents)
        self._fetching: SingleFlight[str] = SingleFlight()

    def __repr__(self) -> str:
        return f"HttpxOAuthClient(timeout={self._timeout})"

    async def aclose(self) -> None:
        if self._owns_client:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- token endpoint ------------------------------------------------------------------------

    async def exchange_code(
        self,
        spec: OAuthSpec,
        client: ClientCredentials,
        *,
        code: str,
        redirect_uri: str,
        code_verifier: str | None,
    ) -> Mapping[str, Any]:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        if code_verifier:
            form["code_verifier"] = code_verifier
        return await self._token_request(spec, client, form)

    async def refresh(
        self,
        spec: OAuthSpec,
        client: ClientCredentials,
        *,
        refresh_token: str,
        scopes: Sequence[str] = (),
    ) -> Mapping[str, Any]:
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        if scopes:
            form["scope"] = spec.scope_separator.join(scopes)
        return await self._token_request(spec, client, form)

    async def _token_request(
        self, spec: OAuthSpec, client: ClientCredentials, form: dict[str, str]
    ) -> Mapping[str, Any]:
        headers = {"Accept": "application/json"}
        self._authenticate(spec, client, form, headers)
        response = await self._send("POST", spec.token_url, data=form, headers=headers)
        body = _json_object(response)
        access = body.get("access_token") if body else None
        if response.is_success and body is not None and isinstance(access, str) and access:
            return body
        # Some providers (Slack) answer errors with 200 and an ``error`` field.
        raise self._failure(response, body)

    # -- revocation (RFC 7009) -------------------------------------------------------------------

    async def revoke(self, spec: OAuthSpec, client: ClientCredentials, *, token: str, token_type_hint: str) -> None:
        if not spec.revocation_url:
            raise ProviderError("the provider offers no revocation endpoint")
        form = {"token": token, "token_type_hint": token_type_hint}
        headers = {"Accept": "application/json"}
        self._authenticate(spec, client, form, headers)
        response = await self._send("POST", spec.revocation_url, data=form, headers=headers)
        if not response.is_success:
            raise self._failure(response, _json_object(response))

    # -- ID tokens -------------------------------------------------------------------------------

    async def verify_id_token(
        self, spec: OAuthSpec, *, id_token: str, client_id: str, nonce: str | None
    ) -> Mapping[str, Any]:
        jwks_uri = spec.jwks_uri
        if not jwks_uri and spec.issuer:
            found = (await self.discover(spec.issuer)).get("jwks_uri")
            jwks_uri = found if isinstance(found, str) else None
        if not jwks_uri:
            raise IdTokenInvalid("no key set is configured to verify the provider's ID tokens")
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError:
            raise IdTokenInvalid("the ID token is malformed") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ACCEPTED_ID_TOKEN_ALGORITHMS:
            raise IdTokenInvalid("the ID token is not signed with an accepted algorithm")
        kid = header.get("kid")
        key = await self._signing_key(jwks_uri, kid if isinstance(kid, str) else None, alg)
        # Multi-tenant issuers (Microsoft: ".../{tenantid}/v2.0") name the tenant of the token:
        # the issuer is checked below, after the signature, with the token's own ``tid``.
        tenant_template = bool(spec.issuer and TENANT_PLACEHOLDER in spec.issuer)
        try:
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key=key.key,
                algorithms=[alg],
                audience=client_id,
                issuer=None if tenant_template else (spec.issuer or None),
                leeway=self._leeway,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise IdTokenInvalid("the ID token has expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise IdTokenInvalid("the ID token was issued for another client (aud)") from exc
        except jwt.InvalidIssuerError as exc:
            raise IdTokenInvalid("the ID token was issued by another issuer (iss)") from exc
        except jwt.InvalidSignatureError as exc:
            raise IdTokenInvalid("the ID token's signature is invalid") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise IdTokenInvalid(f"the ID token lacks the {exc.claim!r} claim") from exc
        except jwt.ImmatureSignatureError as exc:
            raise IdTokenInvalid("the ID token is not valid yet (iat/nbf)") from exc
        except jwt.PyJWTError as exc:
            raise IdTokenInvalid(f"the ID token is invalid ({type(exc).__name__})") from exc
        if tenant_template:
            assert spec.issuer is not None
            tid = claims.get("tid")
            if not isinstance(tid, str) or not tid or "/" in tid:
                raise IdTokenInvalid("the ID token lacks the 'tid' claim its issuer needs")
            if claims.get("iss") != spec.issuer.replace(TENANT_PLACEHOLDER, tid):
                raise IdTokenInvalid("the ID token was issued by another issuer (iss)")
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        azp = claims.get("azp")
        if (azp is not None or len(audiences) > 1) and azp != client_id:
            raise IdTokenInvalid("the ID token was issued for another client (azp)")
        if nonce is not None and not _same(claims.get("nonce"), nonce):
            raise IdTokenInvalid("the ID token's nonce does not match the authorization request")
        return claims

    async def _signing_key(self, jwks_uri: str, kid: str | None, alg: str) -> jwt.PyJWK:
        keyset = await self._keyset(jwks_uri, force=False)
        key = _pick_key(keyset, kid, alg)
        if key is None and self._may_refetch(jwks_uri):
            key = _pick_key(await self._keyset(jwks_uri, force=True), kid, alg)
        if key is None:
            raise IdTokenInvalid("no key of the provider matches the ID token's signature key")
        return key

    def _may_refetch(self, uri: str) -> bool:
        cached = self._jwks.get(uri)
        return cached is None or self._monotonic() - cached[0] >= self._refetch_interval

    async def _keyset(self, uri: str, *, force: bool) -> jwt.PyJWKSet:
        async with self._fetching.hold(f"jwks:{uri}"):
            cached = self._jwks.get(uri)
            now = self._monotonic()
            fresh_enough = cached is not None and (
                now - cached[0] < (self._refetch_interval if force else self._jwks_ttl)
            )
            if cached is not None and fresh_enough:
                return cached[1]
            response = await self._send("GET", uri, headers={"Accept": "application/json"})
            if not response.is_success:
                raise self._failure(response, None)
            body = _json_object(response)
            try:
                keyset = jwt.PyJWKSet.from_dict(body or {})
            except jwt.PyJWTError:
                raise IdTokenInvalid("the provider's key set (JWKS) is unusable") from None
            self._jwks.put(uri, (now, keyset))
            return keyset

    # -- discovery -------------------------------------------------------------------------------

    async def discover(self, issuer: str) -> Mapping[str, Any]:
        """The issuer's OpenID configuration; its ``issuer`` must be the one asked for."""
        issuer = issuer.rstrip("/")
        async with self._fetching.hold(f"discovery:{issuer}"):
            cached = self._discovery.get(issuer)
            now = self._monotonic()
            if cached is not None and now - cached[0] < self._jwks_ttl:
                return dict(cached[1])
            response = await self._send("GET", issuer + WELL_KNOWN_SUFFIX, headers={"Accept": "application/json"})
            if not response.is_success:
                raise self._failure(response, None)
            doc = _json_object(response)
            if doc is None:
                raise ProviderError("the provider's discovery document is not a JSON object")
            named = doc.get("issuer")
            if not isinstance(named, str) or named.rstrip("/") != issuer:
                raise ProviderError("the discovery document names another issuer than the one configured")
            self._discovery.put(issuer, (now, doc))
            return dict(doc)

    # -- plumbing --------------------------------------------------------------------------------

    @staticmethod
    def _authenticate(
        spec: OAuthSpec, client: ClientCredentials, form: dict[str, str], headers: dict[str, str]
    ) -> None:
        method = spec.token_auth_method
        if method == "client_secret_basic":
            # RFC 6749 §2.3.1: form-encode id and secret before joining them.
            pair = f"{quote_plus(client.client_id)}:{quote_plus(client.client_secret)}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        elif method == "client_secret_post":
            form["client_id"] = client.client_id
            form["client_secret"] = client.client_secret
        elif method == "none":
            form["client_id"] = client.client_id
        else:
            raise ValidationError.for_field("oauth.tokenAuthMethod", f"unsupported client authentication {method!r}")

    async def _send(
        self,
        method: str,
        url: str,
        *,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        try:
            response = await self._http.request(method, url, data=data, headers=headers, timeout=self._timeout)
        except httpx.TimeoutException as exc:
            log.info("%s %s timed out after %.1fs", method, _safe_url(url), self._timeout)
            error = classify_token_error(None, None)
            error.metadata["reason"] = "timeout"
            raise error from exc
        except HTTPX_ERRORS as exc:  # transport, an undecodable answer, a redirect loop, ...
            log.info("%s %s failed (%s)", method, _safe_url(url), type(exc).__name__)
            error = classify_token_error(None, None)
            error.metadata["reason"] = type(exc).__name__
            raise error from exc
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s -> %d", method, _safe_url(url), response.status_code)
        return response

    @staticmethod
    def _failure(response: httpx.Response, body: Mapping[str, Any] | None) -> ProviderError:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        error = classify_token_error(response.status_code, _error_code(body), retry_after=retry_after)
        if isinstance(error, RetryableProviderError) and retry_after is not None:
            error.metadata["retryAfter"] = retry_after
        return error


def _pick_key(keyset: jwt.PyJWKSet, kid: str | None, alg: str) -> jwt.PyJWK | None:
    kty = ACCEPTED_ID_TOKEN_ALGORITHMS[alg]
    usable = [
        k
        for k in keyset.keys
        if k.key_type == kty and k.public_key_use in (None, "sig") and getattr(k, "algorithm_name", alg) == alg
    ]
    if kid is not None:
        usable = [k for k in usable if k.key_id == kid]
    elif len(usable) != 1:
        return None
    return usable[0] if usable else None


def _same(a: object, b: str) -> bool:
    return isinstance(a, str) and hmac.compare_digest(a.encode(), b.encode())
