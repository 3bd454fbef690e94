"""OAuth provider client port: the HTTP side of OAuth 2.0 / OpenID Connect."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from attrs import field, frozen

from connector_core.catalog import OAuthSpec


@frozen
class ClientCredentials:
    client_id: str
    client_secret: str = field(repr=False)


class OAuthProviderClient(Protocol):
    async def exchange_code(
        self,
        spec: OAuthSpec,
        client: ClientCredentials,
        *,
        code: str,
        redirect_uri: str,
        code_verifier: str | None,
    ) -> Mapping[str, Any]:
        """The token endpoint's JSON for an authorization code. Failures raise what
        :func:`connector_core.tokens.classify_token_error` returns."""
        ...

    async def refresh(
        self,
        spec: OAuthSpec,
        client: ClientCredentials,
        *,
        refresh_token: str,
        scopes: Sequence[str] = (),
    ) -> Mapping[str, Any]:
        """One refresh_token grant (no retries here; the service retries). Errors as above."""
        ...

    async def revoke(self, spec: OAuthSpec, client: ClientCredentials, *, token: str, token_type_hint: str) -> None:
        """RFC 7009 revocation at ``spec.revocation_url``."""
        ...

    async def verify_id_token(
        self, spec: OAuthSpec, *, id_token: str, client_id: str, nonce: str | None
    ) -> Mapping[str, Any]:
        """Verified claims: signature by the provider's JWKS, ``iss``, ``aud``, ``exp``, and
        ``nonce`` when given. Raises :class:`IdTokenInvalid`."""
        ...

    async def discover(self, issuer: str) -> Mapping[str, Any]:
        """The issuer's OpenID discovery document."""
        ...
